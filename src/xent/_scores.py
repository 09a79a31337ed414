"""token_scores: everything a serving stack reports per token, in one pass."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._docs import fill_doc
from ._half import compute_dtype, kernel_array
from ._kernels import _core
from ._threads import _resolve
from ._validation import (
    as_float_array,
    class_targets,
    integer_scalar,
    raise_target_error,
    real_scalar,
)

__all__ = ["TokenScores", "token_scores"]


class TokenScores(NamedTuple):
    """Per-token scores returned by `xent.token_scores`.

    Every field has leading shape ``logits.shape[:-1]`` and is computed on
    ``logits / temperature``.

    Attributes
    ----------
    logsumexp : ndarray
        Log of the softmax normaliser of each row.
    entropy : ndarray
        Entropy of the softmax of each row, in nats.
    logprob : ndarray or None
        ``log_softmax(x)[target]``; NaN for ignored targets. None without `target`.
    rank : ndarray of int64 or None
        ``1 +`` the number of classes whose logit is strictly greater than the
        target's (the greedy token has rank 1); -1 for ignored targets. None
        without `target`.
    top_logprobs : ndarray
        Shape ``(..., top_k)``: the `top_k` largest log-probabilities, descending.
    top_indices : ndarray of int64
        Shape ``(..., top_k)``: their class indices (ties: lower index first).
    """

    logsumexp: NDArray[np.floating]
    entropy: NDArray[np.floating]
    logprob: Optional[NDArray[np.floating]]  # noqa: UP045 - NamedTuple on Python 3.9
    rank: Optional[NDArray[np.int64]]  # noqa: UP045
    top_logprobs: NDArray[np.floating]
    top_indices: NDArray[np.int64]


def token_scores(
    logits: ArrayLike,
    target: ArrayLike | None = None,
    *,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    num_threads: int | None = None,
) -> TokenScores:
    r"""Per-token log-probabilities, ranks, entropy and top-k, from one pass per row.

    For every row ``x`` of ``logits / temperature`` (classes on the last axis)
    this computes what an inference server reports per generated or scored
    token -- the row's log-sum-exp, the entropy of its softmax, the target's
    log-probability and rank, and the `top_k` most likely classes -- reading
    the row from memory once.  No ``log_softmax`` of the full vocabulary is
    materialised.

    Parameters
    ----------
    logits : array_like, shape (..., C)
        Unnormalised scores, ``C >= 1``. float32 and float64 are computed
        natively; float16 and ``ml_dtypes.bfloat16`` are read as they are,
        computed in float32, and the floating results returned in the input
        dtype (within 1 ulp).
        Any number of leading axes (a ``(B, T, V)`` batch needs no reshape).
    target : array_like of int, shape ``logits.shape[:-1]``, optional
        Class index of each token (any integer dtype), or `ignore_index`.
        Without it, `logprob` and `rank` are None.
    top_k : int, optional
        Number of most likely classes to return per row, ``0 <= top_k <= C``
        (default 0: empty arrays of last dimension 0).
    temperature : float, optional
        Every field is computed on ``logits / temperature``, evaluated in the
        computation dtype as NumPy and PyTorch do. Must be positive and finite.
    ignore_index : int, optional
        Target value marking tokens to skip: their `logprob` is NaN and their
        `rank` is -1 (default -100).
    {num_threads}

    Returns
    -------
    TokenScores
        A named tuple ``(logsumexp, entropy, logprob, rank, top_logprobs,
        top_indices)``: `logsumexp`, `entropy`, `logprob` (computation dtype)
        and `rank` (int64) of shape ``logits.shape[:-1]``; `top_logprobs`
        (computation dtype, sorted descending) and `top_indices` (int64) of
        shape ``logits.shape[:-1] + (top_k,)``.

    Raises
    ------
    TypeError
        If `logits` is not real floating point, `target` is not integer
        (floating targets included), or an option has the wrong type.
    ValueError
        If `logits` is 0-d or has ``C == 0`` classes, `target` has the wrong
        shape, ``top_k < 0`` or ``top_k > C``, or `temperature` is not a
        positive finite number in the computation dtype.
    IndexError
        If a target is outside ``[0, C)`` and not `ignore_index` (the message
        names the value, its flat position and ``C``).

    See Also
    --------
    log_softmax, logsumexp

    Notes
    -----
    With ``x = logits / temperature``, ``m = max(x)`` and ``S = sum(exp(x - m))``:

    .. math::

        \mathrm{lse} = m + \log S, \qquad
        H = \log S - \frac{1}{S} \sum_j e^{x_j - m} (x_j - m), \qquad
        \log p_t = (x_t - m) - \log S

    ``rank = 1 + #{j : x_j > x_t}`` (strict IEEE comparison, so tied classes
    share the better rank, and a NaN target has rank 1).  Masked (``-inf``)
    classes are impossible tokens: they add 0 to the entropy
    (:math:`0 \log 0 = 0`); a ``-inf`` target has ``logprob = -inf``.
    `top_indices` orders classes by logit, ties by the lower index, and NaN
    above everything (as ``torch.topk``).  A row whose maximum is ``+inf``,
    that is all ``-inf``, or that holds NaN follows PyTorch: `logsumexp` is
    ``+inf``, ``-inf`` or NaN as ``torch.logsumexp`` gives, and `entropy`,
    `logprob` and `top_logprobs` are NaN, as ``torch.log_softmax`` gives.

    Each row is read from memory once, in chunks of 2048 classes: the first
    pass over a chunk takes its maximum, counts the classes above the target
    and offers only classes above the current k-th best to a per-row heap;
    the second pass (from cache) accumulates ``S`` and the entropy sum,
    rescaled in float64 when the running maximum grows.  float32 sums use
    float32 lanes within a chunk and float64 across chunks; all per-row
    results are combined and rounded once in float64.  Rows are split between
    the threads; results are bitwise identical for any thread count.

    Examples
    --------
    OpenAI-style ``logprobs`` for a toy vocabulary:

    >>> import numpy as np
    >>> import xent
    >>> vocab = ["the", "cat", "sat", "on", "mat"]
    >>> logits = np.array([[2.0, 0.5, 0.1, -1.0, 1.0],
    ...                    [0.3, 3.0, 0.2, -np.inf, 1.5]])
    >>> chosen = np.array([0, 4])
    >>> s = xent.token_scores(logits, chosen, top_k=2)
    >>> for t in range(len(chosen)):
    ...     top = {vocab[j]: round(float(lp), 4)
    ...            for j, lp in zip(s.top_indices[t], s.top_logprobs[t])}
    ...     print(f"{vocab[chosen[t]]!r}: logprob={s.logprob[t]:.4f} "
    ...           f"rank={s.rank[t]} top_logprobs={top}")
    'the': logprob=-0.5824 rank=1 top_logprobs={'the': -0.5824, 'mat': -1.5824}
    'mat': logprob=-1.8010 rank=2 top_logprobs={'cat': -0.301, 'mat': -1.801}
    >>> s.entropy.round(4)
    array([1.217, 0.809])
    >>> xent.token_scores(logits, top_k=1, temperature=0.5).top_indices
    array([[0],
           [1]])
    """
    arr = as_float_array(logits, "logits", half=True)
    if arr.ndim == 0:
        raise ValueError(
            "logits must have at least one axis (classes on the last axis), got a 0-d array"
        )
    c = arr.shape[-1]
    lead = arr.shape[:-1]
    if c == 0:
        raise ValueError(
            f"token_scores needs at least one class; logits has shape {arr.shape} (C == 0)"
        )
    k = integer_scalar(top_k, "top_k")
    if k < 0 or k > c:
        raise ValueError(f"top_k must be in [0, C] = [0, {c}], got {k}")
    temp = real_scalar(temperature, "temperature")
    if not (temp > 0 and math.isfinite(temp)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    dt = compute_dtype(arr.dtype)  # float32 for 16-bit logits
    with np.errstate(all="ignore"):
        temp_dt = dt.type(temp)
    if not (temp_dt > 0 and np.isfinite(temp_dt)):
        raise ValueError(
            f"temperature {temperature!r} is not a positive finite {dt} "
            f"(logits / temperature is computed in {dt})"
        )
    ign = integer_scalar(ignore_index, "ignore_index")
    nt = _resolve(num_threads)
    t = None if target is None else class_targets(target, lead)

    lse = np.empty(lead, dtype=dt)
    ent = np.empty(lead, dtype=dt)
    lp = None if t is None else np.empty(lead, dtype=dt)
    rank = None if t is None else np.empty(lead, dtype=np.int64)
    top_lp = np.empty(lead + (k,), dtype=dt)
    top_ix = np.empty(lead + (k,), dtype=np.int64)
    opt = _core.ScoresOptions(top_k=k, temperature=temp, ignore_index=ign)
    bad = _core.token_scores_rows(kernel_array(arr.reshape(-1, c)),
                                  None if t is None else t.reshape(-1),
                                  lse, ent, lp, rank, top_lp, top_ix, opt, nt)
    if bad:
        raise_target_error(t, c, ign)
    if dt != arr.dtype:  # 16-bit logits: the float results in their dtype, rounded once
        with np.errstate(over="ignore"):
            lse, ent = lse.astype(arr.dtype), ent.astype(arr.dtype)
            top_lp = top_lp.astype(arr.dtype)
            lp = None if lp is None else lp.astype(arr.dtype)
    return TokenScores(lse, ent, lp, rank, top_lp, top_ix)


fill_doc(token_scores)
