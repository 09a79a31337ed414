"""Shared test helpers: the accuracy contract of API.md as one assertion."""

from __future__ import annotations

import numpy as np

#: Relative tolerance per computation dtype (API.md "Accuracy").
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

DTYPES = (np.float32, np.float64)
SIMD_ORDER = ("scalar", "avx2", "avx512")


def tolerance(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype=None, *, rtol=None, err_msg=""):
    """Assert `actual` meets API.md's accuracy contract against `expected`.

    ``|actual - expected| <= rtol * |expected| + rtol * max|expected[finite]|``
    with ``rtol`` 1e-5 for float32 and 1e-12 for float64 (the absolute part
    scaled by the largest finite magnitude of the expected array).  NaN
    positions must match, and infinities must match exactly (value and sign).
    `dtype` defaults to ``actual.dtype``.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if dtype is None:
        dtype = actual.dtype
    if rtol is None:
        rtol = tolerance(dtype)
    assert actual.shape == expected.shape, (
        f"shape mismatch: actual {actual.shape}, expected {expected.shape} {err_msg}"
    )
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        idx = np.argwhere(nan_a != nan_e)[:5].tolist()
        raise AssertionError(f"NaN positions differ (first at {idx}) {err_msg}")
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    if not np.array_equal(inf_a, inf_e) or not np.array_equal(a[inf_a], e[inf_e]):
        idx = np.argwhere((inf_a != inf_e) | (inf_e & (a != e)))[:5].tolist()
        raise AssertionError(f"infinities differ (first at {idx}) {err_msg}")
    fin = np.isfinite(e)
    if not fin.any():
        return
    scale = float(np.max(np.abs(e[fin])))
    diff = np.abs(a[fin] - e[fin])
    bound = rtol * np.abs(e[fin]) + rtol * scale
    if not np.all(diff <= bound):
        k = int(np.argmax(diff - bound))
        where = np.argwhere(fin)[k].tolist()
        raise AssertionError(
            f"not close at {where}: actual {a[fin][k]!r}, expected {e[fin][k]!r}, "
            f"|diff| {diff[k]:.3e} > bound {bound[k]:.3e} (rtol {rtol}, scale {scale:.3e}) "
            f"{err_msg}"
        )


def max_ulp_error(actual, expected_ld, dtype) -> float:
    """Largest error of `actual` in units of the last place of the true result.

    `expected_ld` is the (long double) true value; the ulp is the spacing of
    `dtype` just below the true value's magnitude (so an error straddling a
    power of two is not under-counted).  Infinities and NaN are excluded.
    """
    dtype = np.dtype(dtype)
    t = np.abs(np.asarray(expected_ld, dtype=np.longdouble))
    with np.errstate(over="ignore"):
        r = t.astype(dtype)  # rounded to the target type (may overflow to inf)
    ok = np.isfinite(r) & np.isfinite(actual)
    r, t, a = r[ok], t[ok], np.asarray(actual)[ok]
    below = np.nextafter(r, dtype.type(0))
    ulp = np.minimum(np.spacing(r), np.spacing(below))
    tiny = np.finfo(dtype).smallest_subnormal
    ulp = np.where(ulp > 0, ulp, tiny).astype(np.longdouble)
    err = np.abs(a.astype(np.longdouble) - t) / ulp
    return float(err.max()) if err.size else 0.0


# ---- input generators shared by the primitive and loss tests ----

#: Class counts around every vector width (1/4/8/16 lanes) and chunk boundary.
N_COLS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1023, 1025, 2049, 32000)
N_ROWS = (0, 1, 2, 13, 257)


def shape_grid():
    """(n_rows, n_cols) pairs: every small C with every row count, big C with fewer rows."""
    out = []
    for c in N_COLS:
        if c <= 65:
            rows = N_ROWS
        elif c <= 2049:
            rows = (0, 1, 2, 13) + ((257,) if c == 1025 else ())
        else:
            rows = (1, 2)
        out.extend((r, c) for r in rows)
    return out


def make_logits(rng, shape, dtype, scale=5.0, spread=50.0):
    """Gaussian logits with a random offset per row (so the max shift matters)."""
    x = rng.standard_normal(shape) * scale
    if len(shape) >= 1 and x.size:
        x += rng.uniform(-spread, spread, size=shape[:-1] + (1,))
    return x.astype(dtype)


def special_rows(c, dtype):
    """Rows holding -inf / +inf / NaN at positions in the vector body and the tail."""
    rows = []
    base = np.linspace(-3.0, 3.0, c)
    idx = sorted({0, c // 2, c - 1})
    for pos in idx:
        for val in (np.inf, -np.inf, np.nan):
            r = base.copy()
            r[pos] = val
            rows.append(r)
    rows.append(np.full(c, -np.inf))
    rows.append(np.full(c, np.inf))
    rows.append(np.full(c, np.nan))
    r = base.copy()
    r[::2] = -np.inf  # masked vocabulary
    rows.append(r)
    r = base.copy()
    r[0], r[-1] = np.inf, -np.inf
    rows.append(r)
    r = base.copy()
    r[0], r[-1] = np.nan, np.inf
    rows.append(r)
    r = base.copy()
    r[0], r[-1] = np.inf, np.inf
    rows.append(r)
    return np.array(rows).astype(dtype)
