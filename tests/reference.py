"""Independent NumPy oracles (long double internally, float64 results).

Written from API.md and PyTorch's documented formulas, not from xent's code:

* ``ref_logsumexp`` / ``ref_softmax`` / ``ref_log_softmax``: max-shifted, with
  torch's NaN/inf semantics (a row holding NaN gives NaN, ``+inf`` gives
  ``+inf`` for logsumexp and NaN for the softmaxes, an all ``-inf`` row gives
  ``-inf`` / NaN), an empty axis gives ``-inf`` / an empty result.
* ``ref_cross_entropy`` / ``ref_cross_entropy_grad``: softmax cross-entropy with
  class-index or probability targets, ``weight``, ``ignore_index``,
  ``reduction``, ``label_smoothing`` (PyTorch's formula), ``z_loss``,
  ``softcap`` and ``sample_weight`` (API.md "Softmax cross-entropy"); the
  gradient is the closed form, with respect to the raw logits.

These are validated against torch in ``test_reference.py``.
"""

from __future__ import annotations

import numpy as np

LD = np.longdouble

__all__ = [
    "ref_cross_entropy",
    "ref_cross_entropy_grad",
    "ref_log_softmax",
    "ref_logsumexp",
    "ref_softmax",
]


def _ld(x) -> np.ndarray:
    return np.asarray(x).astype(LD)


def _lse_last(z: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis of a long double array, torch's semantics."""
    if z.shape[-1] == 0:
        return np.full(z.shape[:-1], -np.inf, dtype=LD)
    with np.errstate(all="ignore"):
        m = np.max(z, axis=-1)  # NaN if the row holds NaN
        s = np.sum(np.exp(z - m[..., None]), axis=-1)
        out = m + np.log(s)
    # A non-finite max: +inf row -> +inf, all -inf row -> -inf, NaN row -> NaN.
    return np.where(np.isfinite(m), out, m)


def ref_logsumexp(x, axis=-1, keepdims=False) -> np.ndarray:
    """float64 logsumexp along `axis` (torch.logsumexp semantics; empty axis -> -inf)."""
    z = np.moveaxis(_ld(x), axis, -1)
    out = _lse_last(z)
    if keepdims:
        out = np.expand_dims(out, axis)
    return out.astype(np.float64)


def _log_softmax_last(z: np.ndarray) -> np.ndarray:
    if z.shape[-1] == 0:
        return z.copy()
    with np.errstate(all="ignore"):
        m = np.max(z, axis=-1, keepdims=True)
        d = z - m  # IEEE: inf - inf and -inf - -inf are NaN, as in torch
        return d - np.log(np.sum(np.exp(d), axis=-1, keepdims=True))


def ref_log_softmax(x, axis=-1) -> np.ndarray:
    """float64 log_softmax along `axis` (IEEE on ``x - max``, as torch)."""
    z = np.moveaxis(_ld(x), axis, -1)
    return np.moveaxis(_log_softmax_last(z), -1, axis).astype(np.float64)


def ref_softmax(x, axis=-1) -> np.ndarray:
    """float64 softmax along `axis` (IEEE on ``x - max``, as torch)."""
    z = np.moveaxis(_ld(x), axis, -1)
    if z.shape[-1] == 0:
        return np.moveaxis(z, -1, axis).astype(np.float64)
    with np.errstate(all="ignore"):
        m = np.max(z, axis=-1, keepdims=True)
        e = np.exp(z - m)
        p = e / np.sum(e, axis=-1, keepdims=True)
    return np.moveaxis(p, -1, axis).astype(np.float64)


# --------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------


def _ce_parts(logits, target, weight, ignore_index, label_smoothing, z_loss, softcap,
              sample_weight):
    """Per-row losses, the mean's denominator and everything the gradient needs."""
    x = _ld(logits)
    if x.ndim == 0:
        raise ValueError("logits must have a class axis")
    c = x.shape[-1]
    x = x.reshape(-1, c)
    n = x.shape[0]
    t = np.asarray(target)
    soft = t.dtype.kind == "f"
    eps = LD(label_smoothing)
    w = np.ones(c, dtype=LD) if weight is None else _ld(weight).reshape(c)
    sw = np.ones(n, dtype=LD) if sample_weight is None else _ld(sample_weight).reshape(n)
    with np.errstate(all="ignore"):
        if softcap is not None:
            s = LD(softcap)
            th = np.tanh(x / s)
            z = s * th
            dz = 1 - th * th  # d z / d x
        else:
            z, dz = x, np.ones_like(x)
        lse = _lse_last(z)
        logp = _log_softmax_last(z)  # (z - max) - log(sum): NaN rows for +inf, as torch
        p = np.exp(logp)
        if soft:
            q = t.astype(LD).reshape(n, c) * (1 - eps) + eps / c
            keep = np.ones(n, dtype=bool)
            w_row = np.ones(n, dtype=LD)
            row = -np.sum(w * q * logp, axis=1)
            # d row / d z_k = -(w_k q_k - (sum_c w_c q_c) p_k)
            g = -(w * q - np.sum(w * q, axis=1, keepdims=True) * p)
        else:
            ti = t.astype(np.int64).reshape(n)
            keep = ti != ignore_index
            if np.any(keep & ((ti < 0) | (ti >= c))):
                raise IndexError(f"target out of range for {c} classes")
            safe = np.where(keep, ti, 0)
            w_row = np.where(keep, w[safe], LD(0))
            logp_t = logp[np.arange(n), safe]
            nll = -w_row * logp_t
            row = (1 - eps) * nll
            if eps:  # as torch: no smoothing term when eps == 0 (0 * inf for -inf logits)
                row = row + (eps / c) * -np.sum(w * logp, axis=1)
            onehot = np.zeros((n, c), dtype=LD)
            onehot[np.arange(n), safe] = 1
            g = (-(1 - eps) * w_row[:, None] * (onehot - p)
                 - (eps / c) * (w - np.sum(w) * p))
        if z_loss:
            zl = LD(z_loss)
            row = row + zl * w_row * lse * lse
            g = g + (2 * zl * w_row * lse)[:, None] * p
        row = sw * row
        g = sw[:, None] * g * dz
        denom = np.sum(np.where(keep, sw * w_row, LD(0)))
        if soft and sample_weight is None:
            denom = LD(n)
    row = np.where(keep, row, LD(0))
    g = np.where(keep[:, None], g, LD(0))
    return row, g, denom, x.shape


def ref_cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None):
    """Softmax cross-entropy (API.md semantics); float64 array or scalar.

    Class targets: row loss ``(1-eps) * w[y] * (-logp[y]) + eps/C * sum_c w[c] * (-logp[c])``
    (PyTorch's label smoothing), plus ``z_loss * w[y] * lse**2``, times
    ``sample_weight``; ignored rows are exactly 0.  ``"mean"`` divides the sum
    by ``sum(sample_weight * w[y])`` over non-ignored rows (NaN if that is 0
    rows).  Probability targets: ``q = t*(1-eps) + eps/C``, row loss
    ``-sum_c w[c] q[c] logp[c] + z_loss * lse**2``, ``"mean"`` divides by the
    number of rows (or by ``sum(sample_weight)`` when given).
    """
    row, _, denom, _ = _ce_parts(logits, target, weight, ignore_index, label_smoothing,
                                 z_loss, softcap, sample_weight)
    lead = np.shape(logits)[:-1]
    if reduction == "none":
        return row.reshape(lead).astype(np.float64)
    total = np.sum(row)
    if reduction == "sum":
        return np.float64(total)
    if reduction == "mean":
        with np.errstate(all="ignore"):
            return np.float64(total / denom)  # 0 / 0 = NaN: a mean over nothing
    raise ValueError(f"unknown reduction {reduction!r}")


def ref_cross_entropy_grad(logits, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
                           sample_weight=None):
    """d(loss)/d(logits) times `grad_output`, as float64 of ``logits.shape``.

    Closed form per non-ignored row (``z`` the softcapped logits, ``p`` their
    softmax): class targets
    ``-(1-eps) w[y] (onehot_y - p) - eps/C (w - sum(w) p) + 2 z_loss w[y] lse p``;
    probability targets ``-(w q - sum(w q) p) + 2 z_loss lse p``; then times
    ``sample_weight``, times ``1 - tanh(x/s)**2`` for the softcap, times the
    reduction's scale (``grad_output`` / denominator for ``"mean"``).  Ignored
    rows are exactly zero.
    """
    _, g, denom, shape2 = _ce_parts(logits, target, weight, ignore_index, label_smoothing,
                                    z_loss, softcap, sample_weight)
    go = np.asarray(grad_output).astype(LD)
    n = shape2[0]
    with np.errstate(all="ignore"):
        if reduction == "none":
            scale = np.broadcast_to(go.reshape(-1) if go.ndim else go, (n,))
            out = g * scale[:, None]
        elif reduction == "sum":
            out = g * go
        elif reduction == "mean":
            out = g * (go / denom)
        else:
            raise ValueError(f"unknown reduction {reduction!r}")
    t = np.asarray(target)
    if t.dtype.kind != "f":
        keep = (t.reshape(-1) != ignore_index)[:, None]
        out = np.where(keep, out, LD(0))
    return out.reshape(np.shape(logits)).astype(np.float64)
