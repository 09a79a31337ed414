"""Scoring arrays bigger than one machine with Dask: token scores, log-likelihoods, perplexity.

Optional: requires ``dask[distributed]`` (``pip install "xent[dask]"``); ``import xent``
never imports Dask, ``import xent.dask`` does.

Every function takes a Dask array (or anything ``dask.array.asarray`` accepts) of
logits ``(..., V)`` chunked along the leading (row) axes, or -- without ever forming
the logits -- hidden states ``(..., D)`` chunked the same way with the output layer's
``weight (V, D)`` broadcast to the workers once.  Each chunk is one task running
xent's kernels (which release the GIL, so threaded workers run chunks in parallel).

Exact reductions: the per-token log-probabilities (float32 or float64) of each
chunk are summed *exactly* (each float64 value split into its integer mantissa and
exponent, summed in Python integers), and the per-chunk sums and token counts are
combined exactly, so a log-likelihood or perplexity does not depend on the
chunking, the number of workers or the order the tasks finish in; the result is
the correctly rounded float64 of the exact sum of the per-token values.  (From
hidden states, the per-token values themselves come from BLAS products whose
rounding may depend on the size of the row block: a different chunking of the
hidden states may then change the last bits; the number of workers does not,
with the same BLAS thread count per task.)

Threads: a task uses `num_threads` when given; otherwise, inside a Dask worker,
the ``OMP_NUM_THREADS`` of the worker's environment (Dask's nanny sets it to 1 for
worker processes, which then share the cores between them), or else the cores of
the process divided by the threads of the workers running in it (the threaded
``processes=False`` cluster); outside a worker, xent's default.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.delayed import Delayed
except ImportError as exc:  # pragma: no cover - exercised by the import-skip of the tests
    raise ImportError('xent.dask requires Dask; install it with pip install "xent[dask]"'
                      ) from exc

from ._cross_entropy import cross_entropy as _cross_entropy
from ._linear import linear_cross_entropy as _linear_cross_entropy
from ._linear import linear_token_scores as _linear_token_scores
from ._scores import TokenScores
from ._scores import token_scores as _token_scores
from ._validation import integer_scalar

__all__ = [
    "linear_perplexity",
    "linear_sequence_log_likelihood",
    "linear_token_scores",
    "perplexity",
    "sequence_log_likelihood",
    "token_scores",
]

# ---------------------------------------------------------------------------- threads


def _process_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS / Windows


def task_threads(num_threads: int | None) -> int | None:
    """The thread count of one task (see the module notes); None: xent's default."""
    if num_threads is not None:
        return num_threads
    try:
        from distributed import get_worker
        from distributed.worker import Worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:  # the workers of a threaded (processes=False) cluster share this process
        running = sum(w.state.nthreads for w in list(Worker._instances)
                      if w.status.name in ("running", "paused"))
    except AttributeError:  # pragma: no cover - another distributed version
        running = 0
    running = running or worker.state.nthreads
    return max(1, _process_cores() // running)


# ---------------------------------------------------------------------------- exact sums

#: float64 values are ``mantissa * 2**(exponent - 53)`` with ``exponent >= -1073``: as
#: integers they are multiples of ``2**-_SHIFT``.
_SHIFT = 1126
_LOW = 26


class ExactSums:
    """Exact sums of float64 values per segment (Python ints scaled by ``2**-1126``).

    Non-finite values are counted apart, so the sum is NaN, +inf or -inf as IEEE
    addition in any order would make it.
    """

    __slots__ = ("acc", "count", "nan", "neg_inf", "pos_inf")

    def __init__(self, n: int):
        self.acc = [0] * n
        self.count = np.zeros(n, dtype=np.int64)
        self.nan = np.zeros(n, dtype=np.int64)
        self.pos_inf = np.zeros(n, dtype=np.int64)
        self.neg_inf = np.zeros(n, dtype=np.int64)

    @classmethod
    def of(cls, values: np.ndarray, segment: np.ndarray, n: int) -> ExactSums:
        """The sums of `values` (float64) grouped by `segment` (ints in ``[0, n)``)."""
        out = cls(n)
        out.count += np.bincount(segment, minlength=n)
        out.nan += np.bincount(segment[np.isnan(values)], minlength=n)
        out.pos_inf += np.bincount(segment[values == np.inf], minlength=n)
        out.neg_inf += np.bincount(segment[values == -np.inf], minlength=n)
        finite = np.isfinite(values)
        v, s = values[finite], segment[finite]
        if v.size == 0:
            return out
        m, e = np.frexp(v)
        mant = (m * 2.0**53).astype(np.int64)  # exact: |m| < 1 has 53 bits
        order = np.lexsort((e, s))
        s, e, mant = s[order], e[order], mant[order]
        starts = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (e[1:] != e[:-1])])
        # two int64 sums that cannot overflow below 2**36 values per group
        hi = np.add.reduceat(mant >> _LOW, starts)
        lo = np.add.reduceat(mant & ((1 << _LOW) - 1), starts)
        for seg, exp, h, low in zip(s[starts].tolist(), e[starts].tolist(), hi.tolist(),
                                    lo.tolist()):
            out.acc[seg] += ((h << _LOW) + low) << (exp - 53 + _SHIFT)
        return out

    def values(self) -> np.ndarray:
        """The correctly rounded float64 of each exact sum (int / int rounds correctly)."""
        out = np.array([a / (1 << _SHIFT) for a in self.acc], dtype=np.float64)
        out[self.neg_inf > 0] = -np.inf
        out[self.pos_inf > 0] = np.inf
        out[(self.nan > 0) | ((self.pos_inf > 0) & (self.neg_inf > 0))] = np.nan
        return out


# ---------------------------------------------------------------------------- blocks


def _as_dask(a, name: str):
    x = a if isinstance(a, da.Array) else da.asarray(a)
    if x.ndim < 2:
        raise ValueError(f"xent.dask: {name} must have a row axis and a class/feature axis, "
                         f"got shape {x.shape}")
    if x.numblocks[-1] != 1:  # a row's classes (features) in one task
        x = x.rechunk({x.ndim - 1: -1})
    return x


def _aligned(target, chunks, name="target"):
    t = target if isinstance(target, da.Array) else da.asarray(target)
    shape = tuple(sum(c) for c in chunks)
    if t.shape != shape:
        raise ValueError(f"xent.dask: {name} has shape {t.shape}, expected {shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"xent.dask: {name} must hold integer class indices, got {t.dtype}")
    return t.rechunk(chunks)


def _shared(a):
    """A constant every task reads: scattered once to every worker when a distributed
    client is active, else one node of the graph."""
    if a is None or isinstance(a, Delayed) or _is_future(a):
        return a
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return dask.delayed(np.asarray(a), pure=True)
    # hash=False: a fresh key per call (a content-hashed key released by the previous
    # call while this one scatters it again would be lost)
    return client.scatter(np.asarray(a), broadcast=True, hash=False)


class _Source:
    """The row blocks of logits, or of hidden states with a broadcast output layer."""

    def __init__(self, x, target, linear=None):
        self.x = x
        self.lead_chunks = x.chunks[:-1]
        self.t = None if target is None else _aligned(target, self.lead_chunks)
        self.linear = linear  # None or (weight, bias, chunk_size) as graph nodes
        self.x_blocks = x.to_delayed()[..., 0]
        self.t_blocks = None if self.t is None else _target_blocks(target, self.t)

    def blocks(self):
        for idx in np.ndindex(self.x_blocks.shape):
            yield idx, self.x_blocks[idx], None if self.t is None else self.t_blocks[idx]


def _target_blocks(target, t):
    """The target's blocks: a NumPy target is sliced here and each slice travels with
    its task (no extra task per block); a Dask target keeps its own tasks."""
    if isinstance(target, da.Array):
        return t.to_delayed()
    a = np.asarray(target)
    offsets = [np.r_[0, np.cumsum(c)] for c in t.chunks]
    out = np.empty(t.numblocks, dtype=object)
    for idx in np.ndindex(t.numblocks):
        out[idx] = np.ascontiguousarray(
            a[tuple(slice(o[i], o[i + 1]) for o, i in zip(offsets, idx))])
    return out


# The tasks' keys are unique per call (pure=False): two calls with equal inputs would
# otherwise share keys, and the second could ask for results the first just released.


def _score_block(x, t, linear, top_k, temperature, ignore_index, num_threads):
    nt = task_threads(num_threads)
    if linear is None:
        return _token_scores(x, t, top_k=top_k, temperature=temperature,
                             ignore_index=ignore_index, num_threads=nt)
    w, b, chunk = linear
    return _linear_token_scores(x, w, t, bias=b, top_k=top_k, temperature=temperature,
                                ignore_index=ignore_index, chunk_size=chunk, num_threads=nt)


def _token_nll(x, t, linear, ignore_index, nt):
    """``-log p(target)`` per token: the one-pass cross-entropy kernel, not token_scores
    (whose ranks and entropies cost a second pass)."""
    if linear is None:
        return _cross_entropy(x, t, ignore_index=ignore_index, reduction="none",
                              num_threads=nt)
    w, b, chunk = linear
    return _linear_cross_entropy(x, w, t, b, ignore_index=ignore_index, reduction="none",
                                 chunk_size=chunk, num_threads=nt)


def _loglik_block(x, t, linear, ignore_index, num_threads):
    nll = _token_nll(x, t, linear, ignore_index, task_threads(num_threads))
    n_seq = int(np.prod(t.shape[:-1]))
    keep = (t != ignore_index).reshape(-1)
    seg = np.repeat(np.arange(n_seq), t.shape[-1])[keep]
    return ExactSums.of(-nll.reshape(-1)[keep].astype(np.float64), seg, n_seq)


# ---------------------------------------------------------------------------- token scores


def _field(parts, chunks, i, dtype, trail):
    """Field `i` of the blocks' TokenScores, as one Dask array."""
    arrays = np.empty(parts.shape, dtype=object)
    for idx in np.ndindex(parts.shape):
        shape = tuple(c[j] for c, j in zip(chunks, idx)) + trail
        arrays[idx] = da.from_delayed(parts[idx][i], shape=shape, dtype=dtype)

    def cat(nested, axis):
        if axis == len(chunks) - 1:
            return da.concatenate(list(nested), axis=axis)
        return da.concatenate([cat(sub, axis + 1) for sub in nested], axis=axis)

    return cat(arrays.tolist() if arrays.ndim > 1 else list(arrays), 0)


def _token_scores_graph(src: _Source, dt, v, top_k, temperature, ignore_index, num_threads):
    # option errors now, not in a worker: score an empty block
    probe = _token_scores(np.empty((0, v), dtype=dt),
                          None if src.t is None else np.empty(0, dtype=np.int64), top_k=top_k,
                          temperature=temperature, ignore_index=ignore_index)
    out_dt, k = probe.logsumexp.dtype, probe.top_indices.shape[-1]
    parts = np.empty(src.x_blocks.shape, dtype=object)
    for idx, xb, tb in src.blocks():
        parts[idx] = dask.delayed(_score_block, pure=False, nout=6)(
            xb, tb, src.linear, k, temperature, ignore_index, num_threads)
    ch = src.lead_chunks
    has_t = src.t is not None
    return TokenScores(
        _field(parts, ch, 0, out_dt, ()), _field(parts, ch, 1, out_dt, ()),
        _field(parts, ch, 2, out_dt, ()) if has_t else None,
        _field(parts, ch, 3, np.int64, ()) if has_t else None,
        _field(parts, ch, 4, out_dt, (k,)), _field(parts, ch, 5, np.int64, (k,)))


def _dtype(x) -> np.dtype:
    if x.dtype.kind != "f":
        raise TypeError(f"xent.dask: logits must be real floating point, got dtype {x.dtype}")
    return np.dtype(np.float64 if x.dtype == np.float64 else np.float32)


def token_scores(logits, target=None, *, top_k: int = 0, temperature: float = 1.0,
                 ignore_index: int = -100, num_threads: int | None = None) -> TokenScores:
    """:func:`xent.token_scores` of a Dask array of logits, lazily, one task per chunk.

    Parameters
    ----------
    logits : dask.array.Array of shape (..., V)
        Logits chunked along the leading axes (a chunked class axis is merged
        first, so that each task holds whole rows).
    target : array_like of int, shape ``logits.shape[:-1]``, optional
        Token ids (rechunked like the logits' leading axes), or `ignore_index`.
    top_k, temperature, ignore_index
        As in :func:`xent.token_scores`.
    num_threads : int, optional
        Threads per task (default: from the worker, see the module notes).

    Returns
    -------
    xent.TokenScores
        Its fields are Dask arrays (not yet computed) chunked as the logits' leading
        axes; ``dask.compute(*scores)`` computes them together (one task per chunk).

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent, xent.dask
    >>> x = np.random.default_rng(0).standard_normal((6, 10))
    >>> ids = np.array([1, 2, 3, 4, 5, 6])
    >>> s = xent.dask.token_scores(da.from_array(x, chunks=(4, 10)), ids, top_k=2)
    >>> logprob, = dask.compute(s.logprob, scheduler="synchronous")
    >>> bool(np.allclose(logprob, xent.token_scores(x, ids).logprob))
    True
    """
    x = _as_dask(logits, "logits")
    src = _Source(x, target)
    return _token_scores_graph(src, _dtype(x), x.shape[-1], top_k, temperature, ignore_index,
                               num_threads)


def linear_token_scores(hidden, weight, target=None, *, bias=None, top_k: int = 0,
                        temperature: float = 1.0, ignore_index: int = -100,
                        chunk_size: int | None = None,
                        num_threads: int | None = None) -> TokenScores:
    """:func:`xent.linear_token_scores` of a Dask array of hidden states, lazily.

    Parameters
    ----------
    hidden : dask.array.Array of shape (..., D)
        Hidden states chunked along the leading axes.
    weight : array_like of shape (V, D), or a distributed Future of one
        The output layer's weight, sent once to every worker (scattered with
        ``broadcast=True`` when a distributed client is active; a Future from
        ``client.scatter(weight, broadcast=True)`` is used as it is).
    target, bias, top_k, temperature, ignore_index, chunk_size
        As in :func:`xent.linear_token_scores`.
    num_threads : int, optional
        Threads per task (default: from the worker, see the module notes).

    Returns
    -------
    xent.TokenScores
        Of Dask arrays, as :func:`token_scores` returns.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent, xent.dask
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.standard_normal((6, 4)), rng.standard_normal((9, 4))
    >>> s = xent.dask.linear_token_scores(da.from_array(h, chunks=(3, 4)), w)
    >>> lse, = dask.compute(s.logsumexp, scheduler="synchronous")
    >>> bool(np.allclose(lse, xent.logsumexp(h @ w.T)))
    True
    """
    src, v, dt = _linear_source(hidden, weight, target, bias, chunk_size)
    return _token_scores_graph(src, dt, v, top_k, temperature, ignore_index, num_threads)


# ---------------------------------------------------------------------------- reductions


def _sums(src: _Source, ignore_index, num_threads) -> tuple[ExactSums, tuple]:
    """Per-sequence exact sums over the last axis of the target, computed."""
    ign = integer_scalar(ignore_index, "ignore_index")
    if src.t is None or src.t.ndim == 0:
        raise ValueError("xent.dask: a target is required")
    parts = {idx: dask.delayed(_loglik_block, pure=False)(xb, tb, src.linear, ign, num_threads)
             for idx, xb, tb in src.blocks()}
    done = dict(zip(parts, dask.compute(*parts.values())))
    seq_chunks = src.t.chunks[:-1]
    seq_shape = tuple(sum(c) for c in seq_chunks)
    offsets = [np.r_[0, np.cumsum(c)] for c in seq_chunks]
    total = ExactSums(int(np.prod(seq_shape)))
    flat = np.arange(total.count.size).reshape(seq_shape)
    for idx, part in done.items():
        lead = idx[:-1]
        at = flat[tuple(slice(o[i], o[i + 1]) for o, i in zip(offsets, lead))].reshape(-1)
        for pos, seg in enumerate(at.tolist()):
            total.acc[seg] += part.acc[pos]
        for name in ("count", "nan", "pos_inf", "neg_inf"):
            getattr(total, name)[at] += getattr(part, name)
    return total, seq_shape


def _log_likelihood(src, ignore_index, num_threads):
    total, shape = _sums(src, ignore_index, num_threads)
    return total.values().reshape(shape), total.count.reshape(shape)


def _perplexity(src, ignore_index, num_threads) -> np.float64:
    total, _ = _sums(src, ignore_index, num_threads)
    one = ExactSums(1)
    one.acc[0] = sum(total.acc)
    for name in ("count", "nan", "pos_inf", "neg_inf"):
        getattr(one, name)[0] = getattr(total, name).sum()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.exp(-one.values()[0] / np.float64(one.count[0]))


_RED_NOTES = """
    The per-token log-probabilities are minus the per-token losses of
    :func:`xent.cross_entropy` (``reduction="none"``; computation dtype: float32
    for float32 / float16 logits); their sums are
    exact and rounded once to float64, whatever the chunking and the number of
    workers (see the module notes)."""


def sequence_log_likelihood(logits, target, *, ignore_index: int = -100,
                            num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of each sequence, ``sum_t log_softmax(logits[..., t, :])[target]``.

    Parameters
    ----------
    logits : dask.array.Array of shape (..., T, V)
        Next-token logits chunked along the leading axes (the time axis ``T``
        may be chunked too).
    target : array_like of int, shape ``logits.shape[:-1]``
        Token ids; `ignore_index` marks padding (left out of sum and count).
    ignore_index : int, optional
        Padding value, default -100.
    num_threads : int, optional
        Threads per task (default: from the worker, see the module notes).

    Returns
    -------
    log_likelihood : ndarray of float64, shape ``target.shape[:-1]``
    n_tokens : ndarray of int64, shape ``target.shape[:-1]``
        The number of non-ignored tokens of each sequence.

    Notes
    -----
    Computed now (``dask.compute``, on the active scheduler or client).
    {notes}

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent.dask
    >>> x = da.zeros((2, 3, 10), chunks=(1, 2, 10))  # uniform over 10 tokens
    >>> ids = np.array([[1, 2, 3], [4, 5, -100]])
    >>> ll, n = xent.dask.sequence_log_likelihood(x, ids)
    >>> np.round(ll / np.log(10), 6).tolist(), n.tolist()
    ([-3.0, -2.0], [3, 2])
    """
    x = _as_dask(logits, "logits")
    _dtype(x)
    return _log_likelihood(_Source(x, target), ignore_index, num_threads)


def perplexity(logits, target, *, ignore_index: int = -100,
               num_threads: int | None = None) -> np.float64:
    """:func:`xent.perplexity` of a Dask array of logits, exactly reduced.

    ``exp(-sum(log p(target)) / n_tokens)`` over all non-ignored tokens; NaN
    when every target is ignored.

    Parameters
    ----------
    logits : dask.array.Array of shape (..., V)
        Logits chunked along the leading axes.
    target : array_like of int, shape ``logits.shape[:-1]``
        Token ids, or `ignore_index`.
    ignore_index : int, optional
        Padding value, default -100.
    num_threads : int, optional
        Threads per task (default: from the worker, see the module notes).

    Returns
    -------
    numpy.float64

    Notes
    -----
    Computed now (``dask.compute``).
    {notes}

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent.dask
    >>> x = da.zeros((2, 3, 10), dtype=np.float32, chunks=(1, 3, 10))
    >>> round(float(xent.dask.perplexity(x, np.array([[1, 2, 3], [4, 5, -100]]))), 4)
    10.0
    """
    x = _as_dask(logits, "logits")
    _dtype(x)
    return _perplexity(_Source(x, target), ignore_index, num_threads)


def _linear_source(hidden, weight, target, bias, chunk_size):
    """(source, V, computation dtype) of hidden states and an output layer."""
    h = _as_dask(hidden, "hidden")
    if _is_future(weight):  # already on the workers (client.scatter(w, broadcast=True))
        w = weight
        shape, kind, dtype = weight.client.submit(_meta, weight, pure=False).result()
    else:
        w = np.asarray(weight) if not isinstance(weight, da.Array) else weight.compute()
        shape, kind, dtype = _meta(w)
    if len(shape) != 2 or shape[1] != h.shape[-1]:
        raise ValueError(f"xent.dask: weight has shape {shape}, expected (V, {h.shape[-1]})")
    if kind != "f":
        raise TypeError(f"xent.dask: weight must be real floating point, got dtype {dtype}")
    dt = np.dtype(np.float64 if np.float64 in (_dtype(h), np.dtype(dtype)) else np.float32)
    b = None if bias is None or _is_future(bias) else np.asarray(bias)
    return _Source(h, target, linear=(_shared(w), _shared(b), chunk_size)), shape[0], dt


def _meta(a) -> tuple:
    return a.shape, a.dtype.kind, a.dtype.str


def _is_future(a) -> bool:
    return type(a).__name__ == "Future" and hasattr(a, "client")


def linear_sequence_log_likelihood(hidden, weight, target, *, bias=None,
                                   ignore_index: int = -100, chunk_size: int | None = None,
                                   num_threads: int | None = None
                                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sequence_log_likelihood` of ``hidden @ weight.T + bias``, without the logits.

    Parameters
    ----------
    hidden : dask.array.Array of shape (..., T, D)
        Hidden states chunked along the leading axes.
    weight : array_like of shape (V, D)
        The output layer's weight, sent once to every worker.
    target : array_like of int, shape ``hidden.shape[:-1]``
        Token ids, or `ignore_index`.
    bias : array_like of shape (V,), or a Future of one, optional
        The output layer's bias.
    ignore_index : int, optional
        Padding value, default -100.
    chunk_size : int, optional
        Rows of logits formed at a time inside a task (see
        :func:`xent.linear_token_scores`).
    num_threads : int, optional
        Threads per task (default: from the worker, see the module notes).

    Returns
    -------
    log_likelihood : ndarray of float64, shape ``target.shape[:-1]``
    n_tokens : ndarray of int64, shape ``target.shape[:-1]``

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent, xent.dask
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.standard_normal((2, 5, 4)), rng.standard_normal((9, 4))
    >>> ids = rng.integers(0, 9, (2, 5))
    >>> ll, n = xent.dask.linear_sequence_log_likelihood(da.from_array(h, chunks=2), w, ids)
    >>> ref = xent.token_scores(h @ w.T, ids).logprob.sum(-1)
    >>> bool(np.allclose(ll, ref)), n.tolist()
    (True, [5, 5])
    """
    return _log_likelihood(_linear_source(hidden, weight, target, bias, chunk_size)[0],
                           ignore_index, num_threads)


def linear_perplexity(hidden, weight, target, *, bias=None, ignore_index: int = -100,
                      chunk_size: int | None = None,
                      num_threads: int | None = None) -> np.float64:
    """:func:`perplexity` of ``hidden @ weight.T + bias``, without the logits.

    Parameters
    ----------
    hidden : dask.array.Array of shape (..., D)
        Hidden states chunked along the leading axes.
    weight : array_like of shape (V, D)
        The output layer's weight, sent once to every worker.
    target : array_like of int, shape ``hidden.shape[:-1]``
        Token ids, or `ignore_index`.
    bias, ignore_index, chunk_size, num_threads
        As in :func:`linear_sequence_log_likelihood`.

    Returns
    -------
    numpy.float64

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import xent, xent.dask
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.standard_normal((8, 4)), rng.standard_normal((9, 4))
    >>> ids = rng.integers(0, 9, 8)
    >>> p = xent.dask.linear_perplexity(da.from_array(h, chunks=3), w, ids)
    >>> bool(np.isclose(p, xent.perplexity(h @ w.T, ids)))
    True
    """
    return _perplexity(_linear_source(hidden, weight, target, bias, chunk_size)[0],
                       ignore_index, num_threads)


def _fill(*funcs: Any) -> None:
    for f in funcs:
        f.__doc__ = f.__doc__.replace("{notes}", _RED_NOTES.strip())


_fill(sequence_log_likelihood, perplexity)
