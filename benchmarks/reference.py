"""NumPy implementations of the benchmarked operations.

Each function computes in the dtype of its input, the way a NumPy user would
write it (max-shifted, vectorised over rows, classes on the last axis of a 2-D
array).  The harness uses them twice:

* as the ``numpy`` provider, on the benchmark's own float32/float64 arrays;
* as the oracle of the correctness check every provider passes before it is
  timed, on float64 copies of the inputs (see ``checks.py``).

They only need NumPy, so tests can import them too
(``tests/test_bench_references.py`` checks them against xent and against the
long-double oracles of ``tests/reference.py``).  Cross-entropy follows
PyTorch's formulas: mean reduction over the non-ignored rows, weighted by the
target's class weight; label smoothing ``eps`` mixes in ``eps / C`` of the
uniform distribution.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -100


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


def token_scores(x, t, top_k: int) -> dict:
    """Per-row serving scores: logsumexp, entropy, target logprob and rank, top-k logprobs.

    The rank is 1 + the number of classes whose logit is strictly greater than
    the target's; the top-k logprobs are sorted in descending order.
    """
    rows = np.arange(t.size)
    lp = log_softmax(x)
    top = -np.sort(-np.partition(lp, -top_k, axis=-1)[:, -top_k:], axis=-1)
    return {
        "logsumexp": logsumexp(x),
        "entropy": -(np.exp(lp) * lp).sum(axis=-1),
        "logprob": lp[rows, t],
        "rank": (x > x[rows, t][:, None]).sum(axis=-1) + 1,
        "top_logprobs": top,
    }
