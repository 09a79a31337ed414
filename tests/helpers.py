"""Shared test helpers: API.md's accuracy contract as one assertion, exact-equality
checks, SIMD switching, input makers and the PyTorch calls the tests compare with.

The NumPy references live in ``reference.py``; the fixtures in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from xent._kernels import _core

DTYPES = (np.float32, np.float64)
SIMD_ORDER = ("scalar", "avx2", "avx512")
REDUCTIONS = ("mean", "sum", "none")

#: API.md "Accuracy": relative tolerance per computation dtype, against a float64
#: (float32 results) or exact (float64 results) reference; the absolute part of the
#: tolerance is the same factor times the largest finite magnitude expected.
#: float16/bfloat16 (xent.torch): xent rounds its float32 result once to the storage
#: type, PyTorch computes in half arithmetic: a few units of the format's epsilon.
RTOL = {"float32": 1e-5, "float64": 1e-12, "float16": 4 * 2.0**-10, "bfloat16": 4 * 2.0**-7}


def dtype_name(dtype) -> str:
    """"float32", ... for a NumPy dtype (or scalar type) or a torch dtype."""
    name = str(dtype)
    return name[len("torch."):] if name.startswith("torch.") else np.dtype(dtype).name


def tolerance(dtype) -> float:
    return RTOL[dtype_name(dtype)]


def _as_float64(a):
    """A NumPy float64 copy of an array or a torch tensor (any float dtype)."""
    if hasattr(a, "detach"):  # a torch tensor (bfloat16 has no NumPy dtype)
        return a.detach().cpu().double().numpy()
    return np.asarray(a).astype(np.float64)


def assert_close(actual, expected, dtype=None, *, rtol=None, scale=None, err_msg=""):
    """Assert `actual` meets API.md's accuracy contract against `expected`.

    ``|actual - expected| <= rtol * |expected| + max(rtol * scale, tiny)`` elementwise,
    with `rtol` from :data:`RTOL` for `dtype` (default: ``actual``'s dtype), `scale` the
    largest finite ``|expected|`` unless given (pass the natural scale of an expected
    value that is exactly 0, or the largest summand of a reduction) and `tiny` the
    dtype's smallest normal number (a smaller result may underflow to 0).  Shapes must
    be equal, NaN positions must match and infinities must match exactly.  NumPy arrays
    or torch tensors; two tensors must also have the same dtype.
    """
    if hasattr(actual, "detach") and hasattr(expected, "detach"):
        assert actual.dtype == expected.dtype, (
            f"dtype mismatch: actual {actual.dtype}, expected {expected.dtype} {err_msg}")
    name = dtype_name(actual.dtype if dtype is None else dtype)
    if rtol is None:
        rtol = RTOL[name]
    a = _as_float64(actual)
    e = _as_float64(expected)
    assert a.shape == e.shape, (
        f"shape mismatch: actual {a.shape}, expected {e.shape} {err_msg}")
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        idx = np.argwhere(nan_a != nan_e)[:5].tolist()
        raise AssertionError(f"NaN positions differ (first at {idx}) {err_msg}")
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    if not np.array_equal(inf_a, inf_e) or not np.array_equal(a[inf_a], e[inf_e]):
        idx = np.argwhere((inf_a != inf_e) | (inf_e & (a != e)))[:5].tolist()
        raise AssertionError(f"infinities differ (first at {idx}) {err_msg}")
    fin = np.isfinite(e)
    if scale is None:
        scale = float(np.max(np.abs(e[fin]))) if fin.any() else 0.0
    diff = np.abs(a[fin] - e[fin])
    tiny = _TINY.get(name, 0.0)
    bound = rtol * np.abs(e[fin]) + max(rtol * scale, tiny)
    if not np.all(diff <= bound):
        k = int(np.argmax(diff - bound))
        where = np.argwhere(fin)[k].tolist()
        raise AssertionError(
            f"not close at {where}: actual {a[fin][k]!r}, expected {e[fin][k]!r}, "
            f"|diff| {diff[k]:.3e} > bound {bound[k]:.3e} (rtol {rtol}, scale {scale:.3e}) "
            f"{err_msg}")


#: Smallest normal number per dtype name (bfloat16 has float32's exponent range).
_TINY = {name: float(np.finfo(name).tiny) for name in ("float16", "float32", "float64")}
_TINY["bfloat16"] = _TINY["float32"]


def assert_same(actual, expected, what="", *, rounding=False):
    """Same dtype, shape and bits; any NaN matches any NaN (IEEE leaves the sign and
    payload of a NaN to the operand order).  With ``rounding=True`` a 0-d result (a
    reduction, whose summation order may legitimately differ) need only agree to a few
    units of its dtype's rounding."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.dtype == e.dtype and a.shape == e.shape, (what, a.dtype, e.dtype, a.shape,
                                                       e.shape)
    if rounding and a.ndim == 0:
        rtol = 1e-6 if a.dtype == np.float32 else 1e-13
        assert np.isclose(a, e, rtol=rtol, atol=0, equal_nan=True), (what, a, e)
        return
    if a.tobytes() == e.tobytes():  # the common case, at memcpy speed
        return
    if a.dtype.kind in "fc":  # NaNs of other signs or payloads match
        nan = np.isnan(a) & np.isnan(e)
        a, e = np.where(nan, 0, a), np.where(nan, 0, e)
        if a.tobytes() == e.tobytes():
            return
    differ = (a != e) | (np.signbit(a) != np.signbit(e)) if a.dtype.kind == "f" else a != e
    raise AssertionError(f"{what}: {int(np.sum(differ))} of {a.size} values differ")


@contextlib.contextmanager
def use_simd(name):
    """Run the block on SIMD path `name` (skip if the CPU lacks it), then restore."""
    if SIMD_ORDER.index(name) > SIMD_ORDER.index(_core.simd_supported()):
        pytest.skip(f"CPU lacks the {name} path (best: {_core.simd_supported()})")
    before = _core.simd_active()
    assert _core.simd_select(name) == name
    try:
        yield name
    finally:
        _core.simd_select(before)


class Arena:
    """A zeroed, 64-byte aligned byte buffer; arrays are views into it (overlap tests)."""

    def __init__(self, nbytes: int):
        raw = np.zeros(nbytes + 64, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        self.buf = raw[start:start + nbytes]

    def at(self, byte_offset: int, shape, dtype) -> np.ndarray:
        """An array of `shape` and `dtype` starting `byte_offset` bytes into the arena."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        assert byte_offset + n <= self.buf.size
        return self.buf[byte_offset:byte_offset + n].view(dtype).reshape(shape)

    def assert_unchanged_outside(self, before: np.ndarray, arr: np.ndarray) -> None:
        """No byte of the arena outside `arr` differs from the copy `before`."""
        lo = arr.ctypes.data - self.buf.ctypes.data
        hi = lo + arr.nbytes
        assert np.array_equal(self.buf[:lo], before[:lo]), "bytes before `out` changed"
        assert np.array_equal(self.buf[hi:], before[hi:]), "bytes after `out` changed"


# ---------------------------------------------------------------------------- inputs

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


def make_targets(rng, shape, c, ignore_index=-100, frac_ignored=0.25):
    """Random class targets in [0, C) with about `frac_ignored` set to ignore_index."""
    t = rng.integers(0, c, size=shape)
    if frac_ignored:
        t[rng.random(shape) < frac_ignored] = ignore_index
    return t


def make_probs(rng, shape, dtype=np.float64):
    p = rng.random(shape) + 0.05
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def special_rows(c, dtype):
    """Rows holding -inf / +inf / NaN at positions in the vector body and the tail."""
    rows = []
    base = np.linspace(-3.0, 3.0, c)
    for pos in sorted({0, c // 2, c - 1}):
        for val in (np.inf, -np.inf, np.nan):
            r = base.copy()
            r[pos] = val
            rows.append(r)
    rows += [np.full(c, -np.inf), np.full(c, np.inf), np.full(c, np.nan)]
    r = base.copy()
    r[::2] = -np.inf  # masked vocabulary
    rows.append(r)
    for first, last in ((np.inf, -np.inf), (np.nan, np.inf), (np.inf, np.inf)):
        r = base.copy()
        r[0], r[-1] = first, last
        rows.append(r)
    return np.array(rows).astype(dtype)


#: Near-certain rows: the target (class 0) is each row's clear maximum, so the loss is
#: tiny and must keep its relative accuracy (nothing may round a quantity near 1).
CONFIDENT_ROWS = np.array([[12.0, 0.5, 1.0, -3.0, 2.0],
                           [9.0, 0.0, 0.25, 1.0, -1.0],
                           [20.0, 3.0, 2.0, 1.0, 0.0],
                           [1000.0, 980.0, 979.5, 990.0, 0.0],
                           [50.0, 20.0, 21.0, -50.0, 49.0]])


# ---------------------------------------------------------------------------- oracles


def finite_diff(f, x, h=1e-4):
    """Fourth-order central differences of the scalar function `f` at float64 `x`."""
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h)
    return g


def max_ulp_error(actual, expected_ld, dtype) -> float:
    """Largest error of `actual` in units of the last place of the true result.

    `expected_ld` is the (long double) true value; the ulp is the spacing of `dtype`
    just below the true value's magnitude (so an error straddling a power of two is
    not under-counted).  Infinities and NaN are excluded.
    """
    dtype = np.dtype(dtype)
    e = np.asarray(expected_ld, dtype=np.longdouble)
    with np.errstate(over="ignore"):
        r = np.abs(e).astype(dtype)  # rounded to the target type (may overflow to inf)
    ok = np.isfinite(r) & np.isfinite(actual)
    r, e, a = r[ok], e[ok], np.asarray(actual)[ok]
    below = np.nextafter(r, dtype.type(0))
    ulp = np.minimum(np.spacing(r), np.spacing(below))
    tiny = np.finfo(dtype).smallest_subnormal
    ulp = np.where(ulp > 0, ulp, tiny).astype(np.longdouble)
    err = np.abs(a.astype(np.longdouble) - e) / ulp
    return float(err.max()) if err.size else 0.0


# ---------------------------------------------------------------------------- PyTorch


def torch_f64(a, requires_grad=False):
    """A float64 torch tensor of `a` (the PyTorch side always computes in float64)."""
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def backward_numpy(loss, x_t, reduction, grad_output=1.0):
    """d(sum(loss * grad_output))/dx via autograd, as a float64 NumPy array."""
    torch = pytest.importorskip("torch")
    x_t.grad = None
    go = torch.as_tensor(np.asarray(grad_output, dtype=np.float64))
    (((loss * go).sum()) if reduction == "none" else loss * go).backward()
    return x_t.grad.numpy().copy()


def _torch_class_loss(fn_name, x, target, grad_output, kw):
    """torch.nn.functional.`fn_name` in float64 on the (-1, C) view -> (loss, grad)."""
    torch = pytest.importorskip("torch")
    x64 = np.asarray(x, dtype=np.float64)
    c = x64.shape[-1]
    xt = torch_f64(x64.reshape(-1, c), requires_grad=True)
    t = np.asarray(target)
    tt = (torch_f64(t.reshape(-1, c)) if t.dtype.kind == "f"
          else torch.as_tensor(t.astype(np.int64).reshape(-1)))
    if kw.get("weight") is not None:
        kw["weight"] = torch_f64(kw["weight"])
    loss = getattr(torch.nn.functional, fn_name)(xt, tt, **kw)
    red = kw.get("reduction", "mean")
    go = np.asarray(grad_output, dtype=np.float64)
    grad = backward_numpy(loss, xt, red, go.reshape(-1) if go.ndim else go)
    lv = loss.detach().numpy()
    return (lv.reshape(x64.shape[:-1]) if red == "none" else lv), grad.reshape(x64.shape)


def torch_ce(logits, target, *, grad_output=1.0, **kw):
    """F.cross_entropy in float64 on the (-1, C) view -> (loss, grad) as NumPy float64."""
    return _torch_class_loss("cross_entropy", logits, target, grad_output, kw)


def torch_nll(log_probs, target, *, grad_output=1.0, **kw):
    """F.nll_loss in float64 on the (-1, C) view -> (loss, grad) as NumPy float64."""
    return _torch_class_loss("nll_loss", log_probs, target, grad_output, kw)


def torch_focal(x, t, gamma, alpha, reduction, grad_output=1.0, ignore_index=-100):
    """`torch_focal_loss` in float64 on the (-1, C) view of NumPy inputs -> (loss, grad)."""
    torch = pytest.importorskip("torch")
    c = x.shape[-1]
    xt = torch_f64(np.reshape(x, (-1, c)), requires_grad=True)
    tt = torch.as_tensor(np.reshape(t, -1).astype(np.int64))
    a = alpha if alpha is None or np.ndim(alpha) == 0 else torch_f64(alpha)
    loss = torch_focal_loss(xt, tt, gamma, a, ignore_index, reduction)
    go = np.asarray(grad_output, np.float64)
    g = backward_numpy(loss, xt, reduction, go.reshape(-1) if go.ndim else go)
    lv = loss.detach().numpy()
    return (lv.reshape(np.shape(t)) if reduction == "none" else lv), g.reshape(x.shape)


def torch_bce_with_logits(x, t, weight, pos_weight, reduction, grad_output=1.0):
    """F.binary_cross_entropy_with_logits in float64 -> (loss, grad)."""
    torch = pytest.importorskip("torch")
    xt = torch_f64(x, requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, torch_f64(t), weight=None if weight is None else torch_f64(weight),
        pos_weight=None if pos_weight is None else torch_f64(pos_weight), reduction=reduction)
    return loss.detach().numpy(), backward_numpy(loss, xt, reduction, grad_output)


def torch_bce(p, t, weight, reduction, grad_output=1.0, native=False):
    """F.binary_cross_entropy in float64 (or the input's own dtype) -> (loss, grad)."""
    torch = pytest.importorskip("torch")
    conv = torch.tensor if native else torch_f64
    pt = conv(p).requires_grad_(True)
    w = None if weight is None else conv(weight)
    loss = torch.nn.functional.binary_cross_entropy(pt, conv(t), weight=w, reduction=reduction)
    return loss.detach().numpy(), backward_numpy(loss, pt, reduction, grad_output)


def torch_sigmoid_focal(x, t, alpha, gamma, reduction, grad_output=1.0):
    """`torch_sigmoid_focal_loss` in float64 on NumPy inputs -> (loss, grad)."""
    inputs = torch_f64(x, requires_grad=True)
    loss = torch_sigmoid_focal_loss(inputs, torch_f64(t), alpha, gamma, reduction)
    return loss.detach().numpy(), backward_numpy(loss, inputs, reduction, grad_output)


def torch_kl(s, t, temperature, reduction, grad_output=1.0, native=False):
    """`torch_kl_div_with_logits` on NumPy inputs, in float64 (or their own dtype)
    -> (loss, grad)."""
    torch = pytest.importorskip("torch")
    conv = torch.tensor if native else torch_f64
    st = conv(s).requires_grad_(True)
    loss = torch_kl_div_with_logits(st, conv(t), temperature, reduction)
    return loss.detach().numpy(), backward_numpy(loss, st, reduction, grad_output)


# ---------------------------------------------------------------------------- torch formulas
# API.md's losses written with torch ops on tensors (differentiable to any order: the
# references of xent.torch's double backward, forward-mode AD and torch.func tests).
# Classes on dim 1 (dim 0 for a 1-D input) as in PyTorch's class losses; the KL pair
# on the last dim.


def _class_dim(x) -> int:
    return 1 if x.dim() > 1 else 0


def torch_ce_ext(x, t, z_loss=0.0, softcap=None, **kw):
    """F.cross_entropy with API.md's softcap ``s tanh(x/s)`` of the logits and z-loss
    ``z w_y lse**2`` per row ("mean": over the summed target weights)."""
    import torch

    reduction = kw.pop("reduction", "mean")
    xc = x if softcap is None else softcap * torch.tanh(x / softcap)
    rows = torch.nn.functional.cross_entropy(xc, t, reduction="none", **kw)
    valid = t != kw.get("ignore_index", -100)
    w = kw["weight"][torch.where(valid, t, 0)] if kw.get("weight") is not None else 1.0
    if z_loss:
        rows = rows + torch.where(valid, z_loss * w * torch.logsumexp(xc, _class_dim(x)) ** 2,
                                  0.0)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / (w * valid).sum()


def torch_focal_loss(x, t, gamma=2.0, alpha=None, ignore_index=-100, reduction="mean"):
    """Lin et al.'s ``-alpha_y (1 - p_y)**gamma log p_y``; alpha None, a number or a
    per-class tensor; "mean" over the non-ignored targets."""
    import torch

    if x.dim() == 1:
        out = torch_focal_loss(x.unsqueeze(0), t.reshape(1), gamma, alpha, ignore_index,
                               reduction)
        return out.squeeze(0) if reduction == "none" else out
    logp = torch.log_softmax(x, 1)
    valid = t != ignore_index
    tt = torch.where(valid, t, torch.zeros_like(t))
    logpt = logp.gather(1, tt.unsqueeze(1)).squeeze(1)
    a = 1.0 if alpha is None else (alpha[tt] if isinstance(alpha, torch.Tensor) else alpha)
    loss = torch.where(valid, -a * (1 - logpt.exp()) ** gamma * logpt, torch.zeros_like(logpt))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum()


def torch_sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (its formula; alpha < 0 disables alpha)."""
    import torch

    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    loss = ce * ((1 - (p * y + (1 - p) * (1 - y))) ** gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def torch_kl_div_with_logits(s, t, temperature=1.0, reduction="batchmean"):
    """``F.kl_div(log_softmax(s/T), softmax(t/T)) * T**2`` over the last dim; "none"
    sums the class dim, "batchmean" divides by the number of rows (API.md)."""
    import torch

    F = torch.nn.functional
    terms = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1),
                     reduction="none") * temperature**2
    if reduction == "none":
        return terms.sum(-1)
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    return terms.sum() / math.prod(s.shape[:-1])
