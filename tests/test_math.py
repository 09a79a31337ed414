"""Accuracy sweeps of the vector exp, log and log1p (xent_math.h) on every SIMD path.

``_core.vmath(name, x, out)`` runs the active path's ``xv_<name>`` over an array.
The true value is NumPy's long double result for the same input (64-bit mantissa on
x86, far more precise than either tested type).  Contract: exp and log at most 2 ulp,
log1p at most 3, over the whole range, subnormal results included (ulp = the type's
spacing just below the true value, the smallest subnormal in the subnormal range).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import max_ulp_error

from xent._kernels import _core

MAX_ULP = 2.0

needs_long_double = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63, reason="needs an 80-bit long double oracle"
)


def vm(x, name="exp"):
    x = np.ascontiguousarray(x)
    out = np.full_like(x, 123.0)
    _core.vmath(name, x, out)
    return out


def _true(x, fn=np.exp):
    with np.errstate(all="ignore"):
        return fn(x.astype(np.longdouble))


def _round(true, dtype):
    with np.errstate(over="ignore"):
        return true.astype(dtype)


def _limits(dtype):
    fi = np.finfo(dtype)
    tiny = fi.smallest_subnormal
    return {
        "overflow": float(np.log(np.longdouble(fi.max))),
        "underflow": float(np.log(np.longdouble(tiny) / 2)),  # below: rounds to 0
        "subnormal": float(np.log(np.longdouble(fi.smallest_normal))),
    }


def _sweep_points(dtype, rng):
    lim = _limits(dtype)
    lo, hi = lim["underflow"] - 2.0, lim["overflow"] + 2.0
    n = 1_500_000
    parts = [
        np.linspace(lo, hi, n),
        rng.uniform(lo, hi, n // 3),
        rng.uniform(lim["underflow"], lim["subnormal"], 200_000),  # subnormal results
        rng.uniform(-1.0, 1.0, 100_000),
        rng.uniform(-1e-6, 1e-6, 20_000),
        np.linspace(-0.5, 0.5, 10_001) * np.log(2.0),  # the reduction interval
        np.arange(-200, 200) * np.log(2.0),            # reduction boundaries n*ln2 ...
        (np.arange(-200, 200) + 0.5) * np.log(2.0),   # ... and the rounding ties
    ]
    x = np.concatenate(parts).astype(dtype)
    return x[(x >= lo) & (x <= hi)]


@needs_long_double
def test_exp_ulp_sweep(simd, dtype, rng):
    x = _sweep_points(dtype, rng)
    got = vm(x)
    true = _true(x)
    expected = _round(true, dtype)
    # Overflowing results are +inf exactly; everything else is finite.
    assert np.array_equal(np.isinf(got), np.isinf(expected)), x[np.isinf(got) != np.isinf(
        expected)][:5]
    err = max_ulp_error(got, true, dtype)
    assert err <= MAX_ULP, f"max error {err:.3f} ulp on {simd}"


@needs_long_double
def test_exp_subnormal_results(simd, dtype, rng):
    lim = _limits(dtype)
    x = np.linspace(lim["underflow"] - 0.5, lim["subnormal"] + 0.5, 400_000).astype(dtype)
    got = vm(x)
    true = _true(x)
    sub = (true < np.finfo(dtype).smallest_normal) & (true > 0)
    assert sub.sum() > 100_000
    assert np.any((got > 0) & (got < np.finfo(dtype).smallest_normal))
    assert max_ulp_error(got, true, dtype) <= MAX_ULP
    assert not np.signbit(got).any()


@needs_long_double
def test_exp_thresholds(simd, dtype):
    """Dense neighbourhoods (in ulps) of the overflow and underflow thresholds."""
    lim = _limits(dtype)
    for t in (lim["overflow"], lim["underflow"]):
        centre = dtype.type(t)
        steps = np.arange(-3000, 3001)
        x = centre + steps.astype(dtype) * np.spacing(centre)
        got = vm(x.astype(dtype))
        true = _true(x.astype(dtype))
        expected = _round(true, dtype)
        assert np.array_equal(np.isinf(got), np.isinf(expected))
        assert max_ulp_error(got, true, dtype) <= MAX_ULP


@needs_long_double
def test_exp_special_values(simd, dtype):
    fi = np.finfo(dtype)
    x = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, fi.max, -fi.max, 1000.0,
                  -1000.0, 5000.0, -5000.0, fi.smallest_subnormal, -fi.smallest_subnormal,
                  fi.eps, -fi.eps], dtype=dtype)
    got = vm(x)
    assert got[0] == np.inf
    assert got[1] == 0 and not np.signbit(got[1])
    assert np.isnan(got[2]) and np.isnan(got[3])
    assert got[4] == 1 and got[5] == 1
    assert got[6] == np.inf and got[8] == np.inf and got[10] == np.inf
    for k in (7, 9, 11):
        assert got[k] == 0 and not np.signbit(got[k])
    assert got[12] == 1 and got[13] == 1
    assert max_ulp_error(got[14:], _true(x[14:]), dtype) <= MAX_ULP


@needs_long_double
def test_exp_below_underflow_is_zero(simd, dtype, rng):
    lim = _limits(dtype)
    x = rng.uniform(lim["underflow"] - 1000, lim["underflow"] - 1e-3 * abs(lim["underflow"]),
                    10_000).astype(dtype)
    got = vm(x)
    assert np.all(got == 0) and not np.signbit(got).any()


@pytest.mark.parametrize("n", list(range(1, 34)) + [63, 65, 1025])
@needs_long_double
def test_exp_every_tail_length(simd, dtype, rng, n):
    """Masked tail loads/stores: every length around the lane counts, NaN/inf in the tail."""
    x = rng.uniform(-80, 80, n).astype(dtype)
    x[-1] = np.inf if n % 3 == 0 else (np.nan if n % 3 == 1 else -np.inf)
    got = vm(x)
    true = _true(x)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    assert np.array_equal(got[np.isinf(x)], np.exp(x[np.isinf(x)]))
    fin = np.isfinite(x)
    assert max_ulp_error(got[fin], true[fin], dtype) <= MAX_ULP


def test_exp_array_length_check():
    with pytest.raises(ValueError, match="elements"):
        _core.vmath("exp", np.zeros(4), np.zeros(3))
    out = np.zeros(0)
    _core.vmath("exp", np.zeros(0), out)


@needs_long_double
def test_log_accuracy(simd, dtype):
    fi = np.finfo(dtype)
    with np.errstate(over="ignore"):
        x = np.geomspace(fi.smallest_subnormal, fi.max, 200_003).astype(dtype)
    x = np.concatenate([x, 1 + np.linspace(-0.3, 0.45, 20_001).astype(dtype)])
    assert max_ulp_error(vm(x, "log"), _true(x, np.log), dtype) <= MAX_ULP


@needs_long_double
def test_log1p_accuracy(simd, dtype):
    fi = np.finfo(dtype)
    with np.errstate(over="ignore"):
        pos = np.geomspace(fi.smallest_subnormal, fi.max, 100_003).astype(dtype)
    neg = -np.geomspace(fi.smallest_subnormal, 1.0, 100_003).astype(dtype)
    x = np.concatenate([pos, neg, np.linspace(-1, 1, 20_001).astype(dtype)])
    assert max_ulp_error(vm(x, "log1p"), _true(x, np.log1p), dtype) <= 3.0


def test_log_special_values(simd, dtype):
    fi = np.finfo(dtype)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1.0, fi.smallest_subnormal,
                  fi.tiny, fi.max], dtype)
    want = _true(x, np.log).astype(dtype)
    got = vm(x, "log")
    np.testing.assert_array_equal(got[:7], want[:7])  # -inf, -inf, inf, nan, nan, nan, 0
    np.testing.assert_allclose(got[7:], want[7:], rtol=2 * fi.eps)
    y = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -2.0, fi.smallest_subnormal,
                  -fi.smallest_subnormal, fi.max], dtype)
    got = vm(y, "log1p")
    np.testing.assert_array_equal(got, _true(y, np.log1p).astype(dtype))
    assert np.signbit(got[1])  # log1p(-0) = -0
    for n in range(1, 40):  # every tail length of the masked loads
        z = np.linspace(0.1, 5, n).astype(dtype)
        np.testing.assert_allclose(vm(z, "log"), np.log(z), rtol=2 * fi.eps)
