"""Cross-entropy and token scores of a linear layer's output, without the N x V logits.

The logits ``hidden @ linear_weight.T + linear_bias`` of a language model's head are
computed a chunk of rows at a time into one reused buffer; xent's fused in-place
cross-entropy kernel turns each chunk into its gradient, which is multiplied back into
``grad_hidden`` (inner dimension V) and accumulated into ``grad_weight``.  Rows whose
target is `ignore_index` are dropped before any matrix product.  The matrix products
go through a small "products" object, so that the PyTorch adapter runs this very loop
with ``torch.mm`` / ``addmm_``.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ._cross_entropy import _CE_OPTIONS, _checked_options, _cross_entropy, _sample_weight
from ._docs import PIECES, fill_doc
from ._scores import TokenScores, token_scores
from ._threads import _resolve
from ._validation import (
    as_array,
    as_float_array,
    class_targets,
    class_vector,
    integer_scalar,
    raise_target_error,
    reduce_loss,
)

__all__ = ["linear_cross_entropy", "linear_cross_entropy_and_grad", "linear_token_scores"]

#: Bytes of logits one chunk may hold by default (one reused buffer).
CHUNK_BYTES = 64 << 20
#: Bytes of the temporary through which NumPy adds a chunk's grad_weight product.
_ACC_TILE_BYTES = 4 << 20


def default_chunk_rows(n_classes: int, itemsize: int, n_rows: int) -> int:
    """Rows per chunk: as many as fit `CHUNK_BYTES` of logits, at least 1, at most `n_rows`.

    The grad_weight product's inner dimension is the chunk's row count, so the
    chunk is as large as the memory bound allows (512 rows of a 32k float32
    vocabulary).
    """
    rows = CHUNK_BYTES // max(1, n_classes * itemsize)
    return int(max(1, min(rows, max(n_rows, 1))))


class NumpyProducts:
    """The matrix products of the chunk loop, by NumPy's BLAS (reused `out=` buffers)."""

    @staticmethod
    def take(a, idx, out):
        return np.take(a, idx, axis=0, out=out, mode="clip")  # idx valid: unbuffered

    @staticmethod
    def logits(h, w, b, out):
        np.matmul(h, w.T, out=out)
        if b is not None:
            out += b
        return out

    @staticmethod
    def grad_hidden(g, w, out):
        return np.matmul(g, w, out=out)

    @staticmethod
    def grad_weight(g, h, acc, first):
        """``acc = g.T @ h`` (first chunk) or ``acc += g.T @ h``.

        NumPy's matmul cannot accumulate into its output: the product of a later
        chunk is formed a tile of classes at a time in a small temporary and added.
        """
        if first:
            np.matmul(g.T, h, out=acc)
            return
        v, d = acc.shape
        tile = max(1, min(v, _ACC_TILE_BYTES // max(1, d * acc.itemsize)))
        tmp = np.empty((tile, d), dtype=acc.dtype)
        for lo in range(0, v, tile):
            hi = min(v, lo + tile)
            t = tmp[: hi - lo]
            np.matmul(g[:, lo:hi].T, h, out=t)
            acc[lo:hi] += t

    @staticmethod
    def grad_bias(g, acc, first):
        if first:
            np.sum(g, axis=0, out=acc)
        else:
            acc += g.sum(axis=0)


class LinearInputs(NamedTuple):
    """Validated, converted inputs of the linear cross-entropy (rows flattened)."""

    h: np.ndarray  # (N, D)
    w: np.ndarray  # (V, D)
    b: np.ndarray | None  # (V,)
    t: np.ndarray | None  # (N,) int64 class targets
    q: np.ndarray | None  # (N, V) probability targets
    cw: np.ndarray | None  # (V,) class weights
    sw: np.ndarray | None  # (N,) sample weights
    lead: tuple
    dtype: np.dtype


def _matrix_inputs(hidden, linear_weight, linear_bias, names=("hidden", "linear_weight",
                                                                 "linear_bias")):
    h = as_float_array(hidden, names[0])
    w = as_float_array(linear_weight, names[1])
    if h.ndim == 0:
        raise ValueError(f"{names[0]} is a 0-d array: it needs a feature axis, shape (..., D)")
    if w.ndim != 2:
        raise ValueError(f"{names[1]} must have shape (V, D), got {w.shape}")
    if w.shape[1] != h.shape[-1]:
        raise ValueError(
            f"{names[1]} has shape {w.shape}, expected (V, {h.shape[-1]}) for "
            f"{names[0]} of shape {h.shape} (features on the last axis)"
        )
    if w.shape[0] == 0:
        raise ValueError(f"{names[1]} has shape {w.shape}: zero classes (V == 0)")
    dt = np.promote_types(h.dtype, w.dtype)
    h = np.ascontiguousarray(h, dtype=dt)
    w = np.ascontiguousarray(w, dtype=dt)
    b = None if linear_bias is None else class_vector(linear_bias, w.shape[0], dt, names[2])
    return h, w, b, dt


def linear_inputs(hidden, linear_weight, target, linear_bias, weight, ignore_index,
                  sample_weight) -> LinearInputs:
    """Check and convert the arrays of a linear cross-entropy call."""
    h, w, b, dt = _matrix_inputs(hidden, linear_weight, linear_bias)
    lead, v = h.shape[:-1], w.shape[0]
    tt = as_array(target, "target")
    t = q = None
    if tt.dtype.kind == "f":
        if tt.shape != lead + (v,):
            raise ValueError(f"probability target has shape {tt.shape}, expected "
                             f"hidden.shape[:-1] + (V,) = {lead + (v,)}")
        if ignore_index != -100:
            raise ValueError(
                "ignore_index is only applicable when the target contains class indices "
                f"(got probability targets and ignore_index={ignore_index})")
        q = np.ascontiguousarray(tt, dtype=dt).reshape(-1, v)
    else:
        t = class_targets(tt, lead, n_classes=v).reshape(-1)
        bad = ((t < 0) | (t >= v)) & (t != ignore_index)
        if bad.any():
            raise_target_error(t, v, ignore_index)
    cw = class_vector(weight, v, dt, "weight")
    sw = _sample_weight(sample_weight, lead, dt)
    return LinearInputs(h.reshape(-1, h.shape[-1]), w, b, t, q, cw, sw, lead, dt)


def _chunk_size(chunk_size, v, itemsize, n):
    if chunk_size is None:
        return default_chunk_rows(v, itemsize, n)
    if isinstance(chunk_size, (bool, np.bool_)):
        raise TypeError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    try:
        c = operator.index(chunk_size)
    except TypeError:
        raise TypeError(
            f"chunk_size must be a positive integer or None, got {chunk_size!r}") from None
    if c < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return c


def _mean_denominator(a: LinearInputs, kept) -> float:
    """PyTorch's "mean" normaliser over the whole batch, in float64.

    ``sum_i sample_weight_i * weight[t_i]`` over the kept rows for class targets;
    the number of rows (or the summed sample weights) for probability targets.
    """
    if a.t is None:
        return float(a.h.shape[0]) if a.sw is None else float(np.sum(a.sw, dtype=np.float64))
    t = a.t if kept is None else a.t[kept]
    if a.cw is None and a.sw is None:
        return float(t.shape[0])
    w = np.ones(t.shape) if a.cw is None else a.cw[t].astype(np.float64)
    if a.sw is not None:
        w *= a.sw if kept is None else a.sw[kept]
    return float(np.sum(w))


def _inv(d: float) -> float:
    with np.errstate(divide="ignore"):
        return float(np.float64(1.0) / np.float64(d))


def run_linear_ce(a: LinearInputs, opts, chunk_size, nt, want_grad, grad_output=1.0,
                  products=NumpyProducts):
    """The chunk loop.  Returns ``(loss, grad_hidden, grad_weight, grad_bias)``.

    `opts` is ``(reduction, ignore_index, label_smoothing, z_loss, softcap)``
    (checked); `grad_output` is a scalar, or for "none" also an array of N rows.
    The gradients are None unless `want_grad` (grad_bias also without a bias).
    """
    red, ign, eps, z, cap = opts
    softcap = cap if cap else None
    n, d = a.h.shape
    v = a.w.shape[0]
    dt = a.dtype
    kept = None
    if a.t is not None:
        keep = a.t != ign
        if not keep.all():
            kept = np.flatnonzero(keep)
    n_kept = n if kept is None else kept.shape[0]
    rows = _chunk_size(chunk_size, v, dt.itemsize, n_kept)

    g_rows = None
    scale = 1.0
    if want_grad:
        g = np.asarray(grad_output)
        if g.ndim == 0:
            scale = float(g)
        else:
            g_rows = np.ascontiguousarray(g, dtype=dt).reshape(-1)
    if red == "mean":
        denom = _mean_denominator(a, kept)
        scale = scale * _inv(denom)
    if g_rows is not None and red != "none":
        raise ValueError(f"grad_output must be a scalar for reduction={red!r}")
    kernel_red = "none" if red == "none" else "total"
    rows_loss = np.zeros(n, dtype=dt) if red == "none" else None

    gh = gw = gb = None
    if want_grad:
        gh = np.zeros((n, d), dtype=dt)
        gw = np.zeros((v, d), dtype=dt)
        gb = np.zeros(v, dtype=dt) if a.b is not None else None
    logits = np.empty((min(rows, n_kept), v), dtype=dt)
    hbuf = np.empty((min(rows, n_kept), d), dtype=dt) if kept is not None else None
    ghbuf = hbuf  # the gathered hidden rows are dead once the chunk's logits exist
    total = 0.0
    first = True
    for lo in range(0, n_kept, rows):
        hi = min(n_kept, lo + rows)
        m = hi - lo
        if kept is None:
            sel = slice(lo, hi)
            h_c = a.h[sel]
        else:
            sel = kept[lo:hi]
            h_c = products.take(a.h, sel, hbuf[:m])
        x = products.logits(h_c, a.w, a.b, logits[:m])
        t_c = None if a.t is None else a.t[sel]
        q_c = None if a.q is None else a.q[sel]
        sw_c = None if a.sw is None else a.sw[sel]
        go = scale if g_rows is None else g_rows[sel] * dt.type(scale)
        loss_c, grad_c = _cross_entropy(
            x, t_c if q_c is None else q_c, a.cw, ign, kernel_red, eps, z, softcap, sw_c,
            nt, want_grad, go, x if want_grad else None)
        if red == "none":
            rows_loss[sel] = loss_c
        else:
            total += loss_c[0]  # "total": (sum of the chunk's row losses, its denominator)
        if not want_grad:
            continue
        products.grad_weight(grad_c, h_c, gw, first)
        if gb is not None:
            products.grad_bias(grad_c, gb, first)
        if kept is None:
            products.grad_hidden(grad_c, a.w, gh[sel])
        else:
            gh[sel] = products.grad_hidden(grad_c, a.w, ghbuf[:m])
        first = False
    if red == "none":
        loss = rows_loss.reshape(a.lead)
    else:
        loss = reduce_loss(None, total, denom if red == "mean" else 0.0, red, dt)
    if not want_grad:
        return loss, None, None, None
    return loss, gh.reshape(a.lead + (d,)), gw, gb


def _linear_ce(hidden, linear_weight, target, linear_bias, weight, ignore_index, reduction,
               label_smoothing, z_loss, softcap, sample_weight, chunk_size, num_threads,
               want_grad):
    opts = _checked_options(reduction, ignore_index, label_smoothing, z_loss, softcap)
    nt = _resolve(num_threads)
    a = linear_inputs(hidden, linear_weight, target, linear_bias, weight, opts[1],
                      sample_weight)
    return run_linear_ce(a, opts, chunk_size, nt, want_grad)


_LINEAR_PARAMS = """\
hidden : array_like of shape (..., D)
    Input of the linear layer (e.g. a language model's last hidden states),
    features on the last axis, any number of leading axes.  float32 and
    float64 are computed natively (float16 in float32); with `linear_weight`
    of another precision both are computed in the wider one.
linear_weight : array_like of shape (V, D)
    The layer's weight, one row per class (``torch.nn.Linear(D, V).weight``).
target : array_like
    Integer class indices of shape ``hidden.shape[:-1]`` (any integer dtype),
    or floating class probabilities of shape ``hidden.shape[:-1] + (V,)``.
linear_bias : array_like of shape (V,), optional
    The layer's bias."""

# cross_entropy's options, for logits hidden @ linear_weight.T (V classes)
_OPTIONS = (_CE_OPTIONS[: -len(PIECES["num_threads"])]
            .replace("shape (C,)", "shape (V,)")
            .replace("logits.shape[:-1]", "hidden.shape[:-1]"))

_CHUNK = """\
chunk_size : int, optional
    Rows of logits computed at a time (default: as many as fit 64 MiB of
    logits, e.g. 512 rows of a float32 32k vocabulary).  Peak memory grows
    with it; the ``grad_weight`` product's inner dimension is this many rows."""

_NOTES = """\
The logits are never materialised: for a chunk of rows at a time, they are
computed into one reused buffer (``hidden_chunk @ linear_weight.T``), turned
into their gradient in place by xent's fused cross-entropy kernel, and
multiplied back: ``grad_hidden_chunk = grad_logits @ linear_weight`` and
``grad_weight += grad_logits.T @ hidden_chunk``.  Rows whose target is
`ignore_index` are dropped before any product.  The ``"mean"`` normaliser
(PyTorch's, over the whole batch) is computed from the targets first, so the
chunks' gradients are scaled as the unfused computation's.  Extra memory:
one chunk of logits (and, when rows are ignored, one chunk of gathered
hidden rows), besides the gradients themselves.  The matrix products use
NumPy's BLAS (its own threads); `num_threads` sets the cross-entropy
kernel's.  Results equal ``cross_entropy(hidden @ linear_weight.T +
linear_bias, target, ...)`` up to the rounding of the products' summation
order.

Naming: PyTorch's ``torch.nn.functional.linear_cross_entropy`` calls the
layer's parameters `linear_weight` and `linear_bias` and keeps `weight` for
the class weights, as :func:`cross_entropy` does; so does xent (positionally
``(hidden, linear_weight, target, linear_bias)``)."""


def linear_cross_entropy(
    hidden: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    linear_bias: ArrayLike | None = None,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight: ArrayLike | None = None,
    chunk_size: int | None = None,
    num_threads: int | None = None,
):
    r"""Cross-entropy of a linear layer's output, without materialising the logits.

    Equals ``cross_entropy(hidden @ linear_weight.T + linear_bias, target, ...)``
    for every option of :func:`cross_entropy`, with memory bounded by one
    chunk of logits instead of ``hidden.shape[:-1] + (V,)``.

    Parameters
    ----------
    {linear_params}
    {options}
    {chunk}
    {num_threads}

    Returns
    -------
    loss : numpy scalar or ndarray
        A NumPy scalar of the computation dtype for ``"mean"``/``"sum"``; an
        array of shape ``hidden.shape[:-1]`` for ``"none"``.

    Raises
    ------
    TypeError
        Non-floating `hidden` or `linear_weight`; bool, complex or object
        targets; a non-integer `chunk_size`.
    ValueError
        Mismatched shapes (naming them), zero classes, bad option values.
    IndexError
        A class target outside ``[0, V)`` that is not `ignore_index`.

    See Also
    --------
    linear_cross_entropy_and_grad : the loss and the three gradients.
    cross_entropy : the same loss of materialised logits.

    Notes
    -----
    {notes}

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    >>> t = np.array([1, 2, 3, -100, 5, 9])
    >>> loss = xent.linear_cross_entropy(h, w, t, chunk_size=4)
    >>> bool(np.isclose(loss, xent.cross_entropy(h @ w.T, t)))
    True
    """
    return _linear_ce(hidden, linear_weight, target, linear_bias, weight, ignore_index,
                      reduction, label_smoothing, z_loss, softcap, sample_weight, chunk_size,
                      num_threads, False)[0]


def linear_cross_entropy_and_grad(
    hidden: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    linear_bias: ArrayLike | None = None,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight: ArrayLike | None = None,
    chunk_size: int | None = None,
    num_threads: int | None = None,
):
    r"""Linear cross-entropy and its gradients with respect to the layer and its input.

    One pass over chunks of rows computes the loss of
    :func:`linear_cross_entropy` and the gradients (for ``grad_output = 1``)
    with respect to `hidden`, `linear_weight` and `linear_bias`.

    Parameters
    ----------
    {linear_params}
    {options}
    {chunk}
    {num_threads}

    Returns
    -------
    loss : numpy scalar or ndarray
        As :func:`linear_cross_entropy` returns it.
    grad_hidden : ndarray
        Shape ``hidden.shape``; rows of ignored targets are exactly zero.
    grad_weight : ndarray
        Shape ``(V, D)``.
    grad_bias : ndarray
        Shape ``(V,)``; only returned when `linear_bias` is given.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`linear_cross_entropy`.

    Notes
    -----
    {notes}

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> rng = np.random.default_rng(0)
    >>> h, w, b = rng.standard_normal((5, 3)), rng.standard_normal((7, 3)), np.zeros(7)
    >>> t = np.array([0, 6, -100, 2, 2])
    >>> loss, gh, gw, gb = xent.linear_cross_entropy_and_grad(h, w, t, b, chunk_size=2)
    >>> gh.shape, gw.shape, gb.shape
    ((5, 3), (7, 3), (7,))
    >>> _, g = xent.cross_entropy_and_grad(h @ w.T + b, t)  # the unfused computation
    >>> bool(np.allclose(gh, g @ w) and np.allclose(gw, g.T @ h))
    True
    >>> gh[2]  # the ignored row
    array([0., 0., 0.])
    """
    loss, gh, gw, gb = _linear_ce(hidden, linear_weight, target, linear_bias, weight,
                                  ignore_index, reduction, label_smoothing, z_loss, softcap,
                                  sample_weight, chunk_size, num_threads, True)
    if linear_bias is None:
        return loss, gh, gw
    return loss, gh, gw, gb


def linear_token_scores(
    hidden: ArrayLike,
    weight: ArrayLike,
    target: ArrayLike | None = None,
    *,
    bias: ArrayLike | None = None,
    top_k: int = 0,
    temperature: float = 1.0,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> TokenScores:
    r""":func:`token_scores` of a linear layer's output, one chunk of logits at a time.

    Equals ``token_scores(hidden @ weight.T + bias, target, ...)`` (prompt
    log-probabilities, ranks, entropies and top-k for a server) with memory
    bounded by one chunk of logits.

    Parameters
    ----------
    hidden : array_like of shape (..., D)
        Hidden states, features on the last axis (float16 computes in float32;
        with `weight` of another precision both are computed in the wider one).
    weight : array_like of shape (V, D)
        The output layer's weight (``torch.nn.Linear(D, V).weight``).
    target : array_like of int, shape ``hidden.shape[:-1]``, optional
        Token ids, or `ignore_index`. Without it, `logprob` and `rank` are None.
    bias : array_like of shape (V,), optional
        The output layer's bias.
    top_k, temperature, ignore_index
        As in :func:`token_scores`.
    {chunk}
    {num_threads}

    Returns
    -------
    TokenScores
        As :func:`token_scores` returns it, leading shape ``hidden.shape[:-1]``.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`token_scores`; also for mismatched `hidden`, `weight` and
        `bias` shapes.

    Notes
    -----
    Every row is scored (ignored targets still get their log-sum-exp,
    entropy and top-k), so no row is dropped. The products use NumPy's BLAS.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((9, 4))
    >>> ids = np.array([[1, 2, 3], [4, 5, -100]])
    >>> s = xent.linear_token_scores(h, w, ids, top_k=2, chunk_size=4)
    >>> s.logprob.shape, s.top_indices.shape
    ((2, 3), (2, 3, 2))
    >>> ref = xent.token_scores(h @ w.T, ids, top_k=2)
    >>> bool(np.allclose(s.logprob[:, :2], ref.logprob[:, :2]))
    True
    """
    h, w, b, dt = _matrix_inputs(hidden, weight, bias, ("hidden", "weight", "bias"))
    lead, d, v = h.shape[:-1], h.shape[-1], w.shape[0]
    ign = integer_scalar(ignore_index, "ignore_index")
    t = None if target is None else class_targets(target, lead, n_classes=v).reshape(-1)
    if t is not None and (((t < 0) | (t >= v)) & (t != ign)).any():
        raise_target_error(t, v, ign)
    h2 = h.reshape(-1, d)
    n = h2.shape[0]
    rows = _chunk_size(chunk_size, v, dt.itemsize, n)
    # option errors (top_k, temperature...) before any product: score an empty chunk
    first = token_scores(np.empty((0, v), dtype=dt), None if t is None else t[:0],
                         top_k=top_k, temperature=temperature, ignore_index=ignore_index,
                         num_threads=num_threads)
    k = first.top_indices.shape[-1]
    out = TokenScores(
        np.empty(n, dtype=dt), np.empty(n, dtype=dt),
        None if t is None else np.empty(n, dtype=dt),
        None if t is None else np.empty(n, dtype=np.int64),
        np.empty((n, k), dtype=dt), np.empty((n, k), dtype=np.int64))
    logits = np.empty((min(rows, n), v), dtype=dt)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        x = NumpyProducts.logits(h2[lo:hi], w, b, logits[: hi - lo])
        try:
            s = token_scores(x, None if t is None else t[lo:hi], top_k=k,
                             temperature=temperature, ignore_index=ignore_index,
                             num_threads=num_threads)
        except IndexError:
            raise_target_error(t, v, ignore_index)
        for dst, src in zip(out, s):
            if dst is not None:
                dst[lo:hi] = src
    return TokenScores(*(None if f is None else f.reshape(lead + f.shape[1:]) for f in out))


fill_doc(linear_cross_entropy, linear_cross_entropy_and_grad, options=_OPTIONS,
         linear_params=_LINEAR_PARAMS, chunk=_CHUNK, notes=_NOTES)
fill_doc(linear_token_scores, chunk=_CHUNK)
