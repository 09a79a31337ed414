"""Fixtures and references for the cross-entropy tests (imported, not a conftest).

- ``simd``: runs a test once per SIMD path the CPU supports.
- ``torch_ce`` / ``torch_nll``: PyTorch's own functional losses in float64 on the
  flattened ``(-1, C)`` view, loss and autograd gradient.
- ``manual_ce``: an explicit float64 autograd expression of the API.md definition
  (softcap, z-loss, sample_weight on top of PyTorch's formulas).
- ``assert_close``: API.md tolerances (relative, absolute part scaled by the
  largest magnitude in the expected array).
"""

from __future__ import annotations

import numpy as np
import pytest

SIMD_PATHS = ("scalar", "avx2", "avx512")


# The `simd` fixture (one run per SIMD path) comes from tests/conftest.py.


def rtol_for(dtype) -> float:
    return 1e-12 if np.dtype(dtype) == np.float64 else 1e-5


def assert_close(actual, expected, dtype, rtol=None, what="", scale=None):
    """Compare with API.md's tolerances; NaN must match NaN, inf must match inf.

    The absolute tolerance is ``rtol * scale``, `scale` defaulting to the largest
    finite magnitude in `expected` (pass it when `expected` is exactly zero but
    its natural scale is not, e.g. a one-class gradient).
    """
    rtol = rtol_for(dtype) if rtol is None else rtol
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    finite = np.isfinite(expected)
    if scale is None:
        scale = float(np.max(np.abs(expected[finite]))) if finite.any() else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale,
                               equal_nan=True, err_msg=what)


def _torch():
    return pytest.importorskip("torch")


def _go_tensor(torch, grad_output, shape):
    g = np.asarray(grad_output, dtype=np.float64)
    if g.ndim:
        g = g.reshape(shape)
    return torch.as_tensor(g)


def torch_ce(logits, target, *, grad_output=1.0, **kw):
    """F.cross_entropy in float64 on the (-1, C) view -> (loss, grad) as NumPy float64."""
    torch = _torch()
    F = torch.nn.functional
    x64 = np.asarray(logits, dtype=np.float64)
    c = x64.shape[-1]
    x = torch.tensor(x64.reshape(-1, c), requires_grad=True)
    t = np.asarray(target)
    if t.dtype.kind == "f":
        tt = torch.as_tensor(t.astype(np.float64).reshape(-1, c))
    else:
        tt = torch.as_tensor(t.astype(np.int64).reshape(-1))
    if kw.get("weight") is not None:
        kw["weight"] = torch.as_tensor(np.asarray(kw["weight"], dtype=np.float64))
    loss = F.cross_entropy(x, tt, **kw)
    if loss.ndim:
        (loss * _go_tensor(torch, grad_output, loss.shape)).sum().backward()
        lv = loss.detach().numpy().reshape(x64.shape[:-1])
    else:
        (loss * float(grad_output)).backward()
        lv = loss.detach().numpy()
    return lv, x.grad.numpy().reshape(x64.shape)


def torch_nll(log_probs, target, *, grad_output=1.0, **kw):
    """F.nll_loss in float64 on the (-1, C) view -> (loss, grad)."""
    torch = _torch()
    F = torch.nn.functional
    x64 = np.asarray(log_probs, dtype=np.float64)
    c = x64.shape[-1]
    x = torch.tensor(x64.reshape(-1, c), requires_grad=True)
    tt = torch.as_tensor(np.asarray(target).astype(np.int64).reshape(-1))
    if kw.get("weight") is not None:
        kw["weight"] = torch.as_tensor(np.asarray(kw["weight"], dtype=np.float64))
    loss = F.nll_loss(x, tt, **kw)
    if loss.ndim:
        (loss * _go_tensor(torch, grad_output, loss.shape)).sum().backward()
        lv = loss.detach().numpy().reshape(x64.shape[:-1])
    else:
        (loss * float(grad_output)).backward()
        lv = loss.detach().numpy()
    return lv, x.grad.numpy().reshape(x64.shape)


def manual_ce(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
              label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
              grad_output=1.0):
    """API.md's definition written out in float64 torch autograd -> (loss, grad).

    Per non-ignored row (x capped by ``s*tanh(x/s)`` first when softcap is set,
    lse = logsumexp, logp = x - lse, eps = label_smoothing):
      class target t:   sw * [(1-eps) w_t (-logp_t) + eps/C sum_j w_j (-logp_j) + z w_t lse^2]
      probabilities q:  sw * [sum_j w_j ((1-eps) q_j + eps/C) (-logp_j) + z lse^2]
    "mean" divides by sum(sw * w_t) over non-ignored rows (sum(sw) for probabilities).
    Ignored rows have their logits replaced by 0 before anything is computed, so
    they contribute exactly zero whatever they hold.
    """
    torch = _torch()
    x64 = np.asarray(logits, dtype=np.float64)
    c = x64.shape[-1]
    lead = x64.shape[:-1]
    n = int(np.prod(lead))
    tn = np.asarray(target)
    soft = tn.dtype.kind == "f"
    if soft:
        mask_np = np.ones(n, dtype=bool)
    else:
        tflat = tn.astype(np.int64).reshape(-1)
        mask_np = tflat != ignore_index
    x = torch.tensor(x64.reshape(n, c), requires_grad=True)
    mask = torch.as_tensor(mask_np)
    xc = torch.where(mask[:, None], x, torch.zeros_like(x))
    if softcap is not None:
        xc = _softcap(torch, xc, softcap)
    lse = torch.logsumexp(xc, dim=1)
    logp = xc - lse[:, None]
    w = (torch.as_tensor(np.asarray(weight, dtype=np.float64)) if weight is not None
         else torch.ones(c, dtype=torch.float64))
    sw = (torch.as_tensor(np.asarray(sample_weight, dtype=np.float64).reshape(n))
          if sample_weight is not None else torch.ones(n, dtype=torch.float64))
    eps = float(label_smoothing)
    if soft:
        q = torch.as_tensor(tn.astype(np.float64).reshape(n, c))
        q = (1 - eps) * q + eps / c
        row = -(logp * w[None, :] * q).sum(1) + z_loss * lse ** 2
        wt = torch.ones(n, dtype=torch.float64)
    else:
        tt = torch.as_tensor(np.where(mask_np, tflat, 0))
        wt = w[tt]
        nll = -logp.gather(1, tt[:, None])[:, 0]
        smooth = -(logp * w[None, :]).sum(1)
        row = (1 - eps) * wt * nll + eps / c * smooth + z_loss * wt * lse ** 2
    row = torch.where(mask, row * sw, torch.zeros_like(row))
    if reduction == "none":
        loss = row
        (loss * _go_tensor(torch, grad_output, (n,))).sum().backward()
        return loss.detach().numpy().reshape(lead), x.grad.numpy().reshape(x64.shape)
    total = row.sum()
    if reduction == "mean":
        total = total / torch.where(mask, sw * wt, torch.zeros_like(wt)).sum()
    (total * float(grad_output)).backward()
    return total.detach().numpy(), x.grad.numpy().reshape(x64.shape)


def _softcap(torch, x, cap):
    """cap * tanh(x / cap) whose backward uses sech^2(x / cap) = 1 / cosh^2(x / cap).

    (Autograd through tanh uses 1 - tanh^2, which cancels catastrophically when
    the cap saturates; the reference must stay exact there.)
    """

    class SoftCap(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return cap * torch.tanh(z / cap)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            return g / torch.cosh(z / cap) ** 2

    return SoftCap.apply(x)


def finite_diff(f, x, h=1e-6):
    """Central differences of the scalar function f at float64 array x."""
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    flat = x.reshape(-1)
    gf = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = float(f(x))
        flat[i] = old - h
        fm = float(f(x))
        flat[i] = old
        gf[i] = (fp - fm) / (2 * h)
    return g


def make_targets(rng, shape, c, ignore_index=-100, frac_ignored=0.25):
    """Random class targets in [0, C) with about `frac_ignored` set to ignore_index."""
    t = rng.integers(0, c, size=shape)
    if frac_ignored:
        t[rng.random(shape) < frac_ignored] = ignore_index
    return t


def make_probs(rng, shape, dtype=np.float64):
    p = rng.random(shape) + 0.05
    return (p / p.sum(-1, keepdims=True)).astype(dtype)
