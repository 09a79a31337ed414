"""Softmax cross-entropy, negative log-likelihood and perplexity."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._docs import PIECES, fill_doc
from ._half import compute_dtype, in_float32, is_bfloat16, kernel_array
from ._kernels import _core
from ._threads import DEFAULT as _DEFAULT_THREADS
from ._threads import _resolve
from ._validation import (
    as_array,
    check_reduction,
    class_logits,
    class_targets,
    class_vector,
    finish_output,
    grad_output_rows,
    integer_scalar,
    output_for,
    raise_target_error,
    real_scalar,
    reduce_loss,
)

__all__ = [
    "cross_entropy",
    "cross_entropy_and_grad",
    "cross_entropy_grad",
    "nll_loss",
    "nll_loss_and_grad",
    "nll_loss_grad",
    "perplexity",
]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


def _checked_options(reduction, ignore_index, label_smoothing, z_loss, softcap):
    """The scalar options, validated; at the defaults each check is one comparison."""
    if type(reduction) is not str or reduction not in ("mean", "sum", "none"):
        reduction = check_reduction(reduction)
    if type(ignore_index) is not int:
        ignore_index = integer_scalar(ignore_index, "ignore_index")
    if type(label_smoothing) is not float or label_smoothing != 0.0:
        eps = real_scalar(label_smoothing, "label_smoothing")
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        label_smoothing = eps
    if type(z_loss) is not float or z_loss != 0.0:
        z = real_scalar(z_loss, "z_loss")
        if not (z >= 0.0 and math.isfinite(z)):
            raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
        z_loss = z
    cap = 0.0
    if softcap is not None:
        cap = real_scalar(softcap, "softcap")
        if not (cap > 0.0 and math.isfinite(cap)):
            raise ValueError(f"softcap must be a finite number > 0 (or None), got {softcap!r}")
    return reduction, ignore_index, label_smoothing, z_loss, cap


def _targets(target, x, ignore_index, soft_ok):
    """(class targets (N,), probability targets (N, C)): one of them is None."""
    c = x.shape[-1]
    t = as_array(target, "target")
    if t.dtype.kind != "f" and not is_bfloat16(t.dtype):
        return class_targets(t, x.shape[:-1], n_classes=c).reshape(-1), None
    if not soft_ok:
        raise TypeError(
            f"target must hold integer class indices for this function, got floating "
            f"dtype {t.dtype}"
        )
    if t.shape != x.shape:
        raise ValueError(
            f"probability target has shape {t.shape}, expected the logits' shape {x.shape}"
        )
    if ignore_index != -100:
        raise ValueError(
            "ignore_index is only applicable when the target contains class indices "
            f"(got probability targets and ignore_index={ignore_index})"
        )
    return None, np.ascontiguousarray(t, dtype=compute_dtype(x.dtype)).reshape(-1, c)


def _sample_weight(sample_weight, lead, dtype):
    if sample_weight is None:
        return None
    sw = as_array(sample_weight, "sample_weight")
    if sw.dtype.kind not in "iuf" or sw.dtype.kind == "b":
        raise TypeError(f"sample_weight must be real, got dtype {sw.dtype}")
    if sw.shape != lead:
        raise ValueError(f"sample_weight has shape {sw.shape}, expected logits.shape[:-1] = {lead}")
    return np.ascontiguousarray(sw, dtype=dtype).reshape(-1)


_DEFAULT_OPTIONS = {r: _core.CEOptions(reduction=r) for r in ("mean", "sum", "none")}


def _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                   softcap, sample_weight, num_threads, want_grad=False, grad_output=1.0,
                   out=None, nll=False, class_only=False, name="logits", grad_dtype=None):
    """The one call path of the family: validate, run the kernel, reduce.

    The arguments are positional, in the public functions' order (a keyword call
    costs more than the kernel on a small input).  Returns ``(loss, grad)``: the
    loss as `reduction` asks (``"total"`` also
    accepted: ``(sum, mean denominator)`` as float64, for perplexity), and the
    gradient (None unless `want_grad`), written to `out` under the overlap policy
    of :func:`xent._validation.output_for` (``out=logits`` works in place).
    `grad_dtype` float32 with 16-bit logits: a float32 gradient (xent.torch).

    Each argument is checked by one inline test for its common form (a C-contiguous
    float32/float64 array, int64 targets, default options) before its validation
    helper: a per-token serving call spends most of its time here, and after an
    idle pause every helper it touches costs microseconds of cold caches.
    """
    x = logits
    if (type(x) is not np.ndarray or (x.dtype is not _F32 and x.dtype is not _F64)
            or x.ndim == 0 or x.shape[-1] == 0 or not x.flags.c_contiguous):
        x = class_logits(logits, name, half=not nll)
    lead, c, dt = x.shape[:-1], x.shape[-1], x.dtype
    cdt = compute_dtype(dt)  # of every other floating array: float32 for 16-bit logits
    total_only = reduction == "total"
    if (type(reduction) is str and reduction in _DEFAULT_OPTIONS and type(ignore_index) is int
            and type(label_smoothing) is float and label_smoothing == 0.0
            and type(z_loss) is float and z_loss == 0.0 and softcap is None):
        red, ign, eps, z, cap = reduction, ignore_index, 0.0, 0.0, 0.0
    else:
        red, ign, eps, z, cap = _checked_options("sum" if total_only else reduction,
                                                 ignore_index, label_smoothing, z_loss, softcap)
    if type(target) is np.ndarray and target.dtype is _I64 and target.shape == lead:
        t, q = (target if target.flags.c_contiguous else np.ascontiguousarray(target)), None
    else:
        t, q = _targets(target, x, ign, soft_ok=not (nll or class_only))
    scale, g_rows = 1.0, None
    if want_grad and (type(grad_output) is not float or grad_output != 1.0):
        scale, g_rows = grad_output_rows(grad_output, red, lead, cdt)
    w = None if weight is None else class_vector(weight, c, cdt, "weight")
    sw = None if sample_weight is None else _sample_weight(sample_weight, lead, cdt)
    if scale == 1.0 and eps == 0.0 and z == 0.0 and cap == 0.0 and ign == -100:
        opt = _DEFAULT_OPTIONS[red]
    else:
        opt = _core.CEOptions(ignore_index=ign, label_smoothing=eps, z_loss=z, softcap=cap,
                              reduction=red, grad_scale=scale)
    nt = _DEFAULT_THREADS[0] if num_threads is None else _resolve(num_threads)
    dest = None
    if want_grad:
        dest, out, (t, q, w, sw, g_rows) = output_for(
            out, x.shape, dt if grad_dtype is None else grad_dtype, (x,), (t, q, w, sw, g_rows))
    loss_rows = np.empty(lead, dtype=np.float64)
    bad, total, denom = _core.ce_rows(
        kernel_array(x if x.ndim == 2 else x.reshape(-1, c)), t, q, w, sw, g_rows, loss_rows,
        kernel_array(dest if dest is None or dest.ndim == 2 else dest.reshape(-1, c)), opt, nt,
        nll)
    if bad:
        raise_target_error(t, c, ign)
    grad = dest if out is None or dest is out else finish_output(dest, out)
    if total_only:
        return (total, denom), grad
    return reduce_loss(loss_rows, total, denom, red, dt), grad


# The options (weight ... num_threads) of the three cross-entropy functions.
_CE_OPTIONS = """\
weight : array_like of shape (C,), optional
    Per-class rescaling weights, as in ``torch.nn.functional.cross_entropy``.
ignore_index : int, optional
    Class-target value whose rows contribute nothing (zero loss, exactly zero
    gradient) and are left out of the ``"mean"`` denominator. Default -100.
    Not applicable to probability targets (a non-default value raises).
reduction : {"mean", "sum", "none"}, optional
    ``"mean"`` divides the summed loss by the summed weights
    ``sum_i sample_weight_i * weight[target_i]`` of the non-ignored rows (by the
    number of rows, or the summed sample weights, for probability targets);
    ``"none"`` returns one loss per row, shape ``logits.shape[:-1]``.
label_smoothing : float in [0, 1], optional
    Mixes the target with the uniform distribution, PyTorch's formula
    (including its weighting of the smoothing term by `weight`).
z_loss : float >= 0, optional
    Adds ``z_loss * w_i * lse_i**2`` to each non-ignored row's loss, where
    ``lse_i`` is the row's log-sum-exp (after `softcap`) and ``w_i =
    weight[target_i]`` (1 without weights and for probability targets).
softcap : float > 0 or None, optional
    Replaces every logit ``x`` by ``softcap * tanh(x / softcap)`` before the
    softmax; gradients are taken with respect to the raw logits.
sample_weight : array_like of shape ``logits.shape[:-1]``, optional
    Per-row (per-token) weights multiplying each row's loss, z-loss included.
""" + PIECES["num_threads"]


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
):
    r"""Softmax cross-entropy between logits and class or probability targets.

    Equals ``torch.nn.functional.cross_entropy(logits.reshape(-1, C),
    target.reshape(-1), ...)`` for every combination of `weight`,
    `ignore_index`, `reduction` and `label_smoothing`, with the classes on the
    last axis and any number of leading axes. Never writes an array of the
    logits' size.

    Parameters
    ----------
    {logits_rows}
    target : array_like
        Integer class indices of shape ``logits.shape[:-1]`` (any integer
        dtype), or floating class probabilities of shape ``logits.shape``.
    {options}

    Returns
    -------
    loss : numpy scalar or ndarray
        A NumPy scalar of the computation dtype for ``"mean"``/``"sum"``
        (float32 for float16/bfloat16 logits, more accurate than PyTorch's
        16-bit scalar); an array of shape ``logits.shape[:-1]`` for ``"none"``
        (in the logits' dtype).

    Raises
    ------
    TypeError
        Non-floating logits; bool, complex or object targets.
    ValueError
        Mismatched shapes, zero classes, bad option values.
    IndexError
        A class target outside ``[0, C)`` that is not `ignore_index` (the
        message names the value, its flat position and ``C``).

    See Also
    --------
    cross_entropy_and_grad : loss and gradient from one pass over the logits.

    Notes
    -----
    Per row, ``loss = (m - x[target]) + log1p(sum(exp(x - m)) - 1)`` with ``m``
    the row's maximum and the maxima's exact ones counted apart from the other
    exponentials, so that the small losses of confident predictions keep their
    relative accuracy. For more than 32 classes (and on the scalar SIMD path) the
    exponentials are summed in the input's precision over chunks of 2048 classes
    and in float64 across chunks, and the loss is formed in float64; for 32
    classes or fewer, rows are processed a vector at a time in the input's
    precision (float32 for float32 logits). Both stay within the documented
    accuracy (1e-5 relative in float32). A ``"mean"``
    over zero non-ignored targets is NaN, as in PyTorch. A row holding ``+inf``
    or NaN gives NaN, as in PyTorch. Per-row losses and reductions are bitwise
    identical for any number of threads.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
    >>> target = np.array([0, 1])
    >>> float(xent.cross_entropy(logits, target))
    0.3068...
    >>> xent.cross_entropy(logits, target, reduction="none")
    array([0.41703002, 0.1967341 ])
    >>> float(xent.cross_entropy(logits, np.array([0, -100])))  # ignored row
    0.4170...
    """
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          z_loss, softcap, sample_weight, num_threads)[0]


def cross_entropy_grad(
    logits: ArrayLike,
    target: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    Parameters
    ----------
    logits, target
        As in :func:`cross_entropy`.
    {grad_output_rows}
    {options}
    {out_grad}

    Returns
    -------
    grad : ndarray
        Same shape as `logits`; `out` if given. Rows of ignored targets are
        exactly zero.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`cross_entropy`; also for a bad `grad_output` or `out`. When an
        exception is raised, `out` has not been written.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 1.0, 0.1]])
    >>> xent.cross_entropy_grad(logits, np.array([0]))
    array([[-0.34099886,  0.24243297,  0.09856589]])
    """
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          z_loss, softcap, sample_weight, num_threads, True, grad_output, out)[1]


def cross_entropy_and_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight: ArrayLike | None = None,
    num_threads: int | None = None,
    out: NDArray[np.floating] | None = None,
):
    r"""Cross-entropy loss and its gradient from one fused pass over the logits.

    Identical to calling :func:`cross_entropy` and :func:`cross_entropy_grad`
    (with ``grad_output=1``), but each row is read from memory once and the
    gradient written once. With ``out=logits`` the gradient overwrites the
    logits and no memory of the logits' size is allocated.

    Parameters
    ----------
    logits, target
        As in :func:`cross_entropy`.
    {options}
    {out_grad}

    {returns_loss_and_grad}

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`cross_entropy_grad`. When an exception is raised, `out` has not
        been written.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
    >>> loss, grad = xent.cross_entropy_and_grad(logits, np.array([0, 1]))
    >>> round(float(loss), 6)
    0.306882
    >>> grad.shape
    (2, 3)
    >>> buf = logits.copy()
    >>> _, g = xent.cross_entropy_and_grad(buf, np.array([0, 1]), out=buf)  # in place
    >>> g is buf
    True
    """
    return _cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing,
                          z_loss, softcap, sample_weight, num_threads, True, 1.0, out)


fill_doc(cross_entropy, cross_entropy_grad, cross_entropy_and_grad, options=_CE_OPTIONS)

_NLL_OPTIONS = """\
weight : array_like of shape (C,), optional
    Per-class weights, as in ``torch.nn.functional.nll_loss``.
ignore_index : int, optional
    Target value whose rows contribute nothing. Default -100.
reduction : {"mean", "sum", "none"}, optional
    ``"mean"`` divides by the summed weights of the non-ignored targets.
""" + PIECES["num_threads"]


def _nll(log_probs, target, weight, ignore_index, reduction, num_threads, **grad):
    return _cross_entropy(log_probs, target, weight, ignore_index, reduction, 0.0, 0.0, None,
                          None, num_threads, nll=True, name="log_probs", **grad)


_nll = in_float32(_nll, out_keyword=True)


def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_threads: int | None = None,
):
    r"""Negative log-likelihood of class targets given log-probabilities.

    Equals ``torch.nn.functional.nll_loss`` on ``(..., C)`` inputs (classes on
    the last axis): ``-weight[t] * log_probs[..., t]`` per row.

    Parameters
    ----------
    log_probs : array_like of shape (..., C)
        Log-probabilities (e.g. from :func:`log_softmax`).
    target : array_like of int, shape ``log_probs.shape[:-1]``
        Class indices; floating targets raise TypeError.
    {options}

    Returns
    -------
    loss : numpy scalar or ndarray
        Scalar for ``"mean"``/``"sum"``, shape ``log_probs.shape[:-1]`` for ``"none"``.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`cross_entropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> lp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    >>> xent.nll_loss(lp, np.array([0, 2]), reduction="none")
    array([0.35667494, 0.22314355])
    """
    return _nll(log_probs, target, weight, ignore_index, reduction, num_threads)[0]


def nll_loss_grad(
    log_probs: ArrayLike,
    target: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_threads: int | None = None,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of :func:`nll_loss` with respect to `log_probs`.

    Parameters
    ----------
    log_probs, target
        As in :func:`nll_loss`.
    {grad_output_rows}
    {options}
    {out_grad}

    Returns
    -------
    grad : ndarray
        ``-weight[t] * grad_output / denominator`` at each target, 0 elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> lp = np.log(np.full((2, 3), 1 / 3))
    >>> xent.nll_loss_grad(lp, np.array([0, 2]))
    array([[-0.5,  0. ,  0. ],
           [ 0. ,  0. , -0.5]])
    """
    return _nll(log_probs, target, weight, ignore_index, reduction, num_threads,
                want_grad=True, grad_output=grad_output, out=out)[1]


def nll_loss_and_grad(
    log_probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_threads: int | None = None,
    out: NDArray[np.floating] | None = None,
):
    r""":func:`nll_loss` and its gradient in one call.

    Parameters
    ----------
    log_probs, target
        As in :func:`nll_loss`.
    {options}
    {out_grad}

    {returns_loss_and_grad}

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> lp = np.log(np.array([[0.5, 0.5]]))
    >>> loss, grad = xent.nll_loss_and_grad(lp, np.array([1]))
    >>> round(float(loss), 6), grad.tolist()
    (0.693147, [[0.0, -1.0]])
    """
    return _nll(log_probs, target, weight, ignore_index, reduction, num_threads,
                want_grad=True, out=out)


fill_doc(nll_loss, nll_loss_grad, nll_loss_and_grad, options=_NLL_OPTIONS)


def perplexity(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    ignore_index: int = -100,
    num_threads: int | None = None,
) -> np.float64:
    r"""Perplexity ``exp(cross_entropy(logits, target, reduction="mean"))``.

    The mean is accumulated in float64 and the result returned as ``np.float64``;
    NaN when every target is ignored.

    Parameters
    ----------
    logits : array_like of shape (..., C)
        Next-token logits, e.g. ``(B, T, V)``.
    target : array_like of int, shape ``logits.shape[:-1]``
        Token ids; `ignore_index` marks padding. Floating targets raise TypeError.
    ignore_index : int, optional
        Padding value, default -100.
    {num_threads}

    Returns
    -------
    numpy.float64

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.zeros((2, 3, 10), dtype=np.float32)  # uniform over 10 tokens
    >>> tokens = np.array([[1, 2, 3], [4, 5, -100]])
    >>> round(float(xent.perplexity(logits, tokens)), 4)
    10.0
    """
    (total, denom), _ = _cross_entropy(
        logits, target, weight=None, ignore_index=ignore_index, reduction="total",
        label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
        num_threads=num_threads, class_only=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.exp(np.float64(total) / np.float64(denom))


fill_doc(perplexity)
