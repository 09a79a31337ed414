"""The ``numpy`` provider: the benchmarked operations as a NumPy user writes them.

Each function computes in the dtype of its input (max-shifted, vectorised over rows,
classes on the last axis of a 2-D array); this is a timed competitor, not an oracle:
like every provider it is checked against ``reference.py`` before it is timed, and
``tests/test_bench_references.py`` checks it against ``reference.py`` and xent.
``checks.py`` also sums the mean cross-entropy of a whole case with
`cross_entropy_terms` (chunks in the input dtype: a float64 oracle over 500 MB of
logits would cost more than the timed calls).  Cross-entropy follows PyTorch's
formulas: mean reduction over the non-ignored rows, weighted by the target's class
weight; label smoothing ``eps`` mixes in ``eps / C`` of the uniform distribution.
"""

from __future__ import annotations

import numpy as np

from .reference import IGNORE_INDEX


def logsumexp(x: np.ndarray) -> np.ndarray:
    """``m + log(sum(exp(x - m)))`` over the last axis, ``m`` the row maximum."""
    m = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``x - logsumexp(x)`` over the last axis."""
    s = x - x.max(axis=-1, keepdims=True)
    s -= np.log(np.exp(s).sum(axis=-1, keepdims=True))
    return s


def softmax(x: np.ndarray) -> np.ndarray:
    """``exp(x - m) / sum(exp(x - m))`` over the last axis."""
    s = x - x.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def _class_weight(weight, n_cols: int, dtype) -> np.ndarray:
    return np.ones(n_cols, dtype) if weight is None else np.asarray(weight, dtype)


def cross_entropy_terms(x, t, weight=None, label_smoothing=0.0, ignore_index=IGNORE_INDEX):
    """Per-row loss numerators and mean denominators of softmax cross-entropy.

    Returns ``(loss, w)``: the mean loss is ``loss.sum() / w.sum()``.  Row
    ``i`` contributes ``-(1 - eps) w[t_i] logp[i, t_i] - eps / C sum_j w_j
    logp[i, j]`` and the denominator ``w[t_i]``; ignored rows contribute 0.
    """
    n_cols = x.shape[-1]
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    w = _class_weight(weight, n_cols, x.dtype)
    lse = logsumexp(x)
    w_row = w[safe] * keep
    loss = -(1 - label_smoothing) * w_row * (x[np.arange(t.size), safe] - lse)
    if label_smoothing:
        weighted_logp = np.einsum("ij,j->i", x, w) - lse * w.sum()
        loss -= label_smoothing / n_cols * weighted_logp * keep
    return loss, w_row


def cross_entropy(x, t, weight=None, label_smoothing=0.0, ignore_index=IGNORE_INDEX):
    """Mean softmax cross-entropy of class targets (PyTorch's reduction)."""
    loss, w_row = cross_entropy_terms(x, t, weight, label_smoothing, ignore_index)
    return loss.sum() / w_row.sum()


def cross_entropy_grad(x, t, denom, weight=None, label_smoothing=0.0,
                       ignore_index=IGNORE_INDEX, out=None):
    """Gradient of the mean cross-entropy with respect to `x`, for some rows.

    `denom` is the mean's denominator over *all* rows (``w.sum()`` from
    `cross_entropy_terms`), so the gradient of a sample of rows can be
    computed alone.  Written to `out` when given.
    """
    n_cols = x.shape[-1]
    eps = label_smoothing
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    w = _class_weight(weight, n_cols, x.dtype)
    w_row = w[safe] * keep
    out = np.empty_like(x) if out is None else out
    np.subtract(x, logsumexp(x)[:, None], out=out)
    np.exp(out, out=out)  # the softmax p
    out *= ((1 - eps) * w_row + eps / n_cols * w.sum() * keep)[:, None]
    if eps:
        out -= eps / n_cols * w[None, :] * keep[:, None]
    out[np.arange(t.size), safe] -= (1 - eps) * w_row
    out /= denom
    return out


def cross_entropy_and_grad(x, t, weight=None, label_smoothing=0.0,
                           ignore_index=IGNORE_INDEX, out=None):
    """``(mean loss, gradient)`` of softmax cross-entropy; the gradient goes to `out`."""
    loss, w_row = cross_entropy_terms(x, t, weight, label_smoothing, ignore_index)
    denom = w_row.sum()
    grad = cross_entropy_grad(x, t, denom, weight, label_smoothing, ignore_index, out)
    return loss.sum() / denom, grad
