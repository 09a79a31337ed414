"""Softmax cross-entropy, negative log-likelihood and perplexity."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import _core
from ._threads import _resolve
from ._validation import (
    _REDUCTIONS,
    as_array,
    as_float_array,
    check_reduction,
    class_targets,
    class_vector,
    finish_output,
    grad_output_rows,
    integer_scalar,
    output_for,
    raise_target_error,
    real_scalar,
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


class _Prepared(NamedTuple):
    x: np.ndarray  # (N, C) contiguous logits
    lead: tuple  # logits.shape[:-1]
    target: np.ndarray | None  # (N,) int64 class targets
    q: np.ndarray | None  # (N, C) probability targets
    weight: np.ndarray | None
    sample_weight: np.ndarray | None
    ignore_index: int
    reduction: str
    label_smoothing: float
    z_loss: float
    softcap: float  # 0.0 when off
    n_threads: int
    orig: np.ndarray  # the converted logits in their original shape


def _prepare(logits, target, *, weight, ignore_index, reduction, label_smoothing, z_loss,
             softcap, sample_weight, num_threads, soft_ok=True, name="logits") -> _Prepared:
    x = as_float_array(logits, name)
    if x.ndim == 0:
        raise ValueError(f"{name} must have a class axis: shape (..., C), got a 0-d array")
    c = x.shape[-1]
    lead = x.shape[:-1]
    if c == 0:
        raise ValueError(f"{name} has zero classes (shape {x.shape}); a loss needs C >= 1")
    reduction = check_reduction(reduction)
    ignore_index = integer_scalar(ignore_index, "ignore_index")
    eps = real_scalar(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    z = real_scalar(z_loss, "z_loss")
    if not (z >= 0.0 and math.isfinite(z)):
        raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
    if softcap is None:
        cap = 0.0
    else:
        cap = real_scalar(softcap, "softcap")
        if not (cap > 0.0 and math.isfinite(cap)):
            raise ValueError(f"softcap must be a finite number > 0 (or None), got {softcap!r}")
    t_arr = as_array(target, "target")
    q = t = None
    if t_arr.dtype.kind == "f":
        if not soft_ok:
            raise TypeError(
                f"target must hold integer class indices for this function, got floating "
                f"dtype {t_arr.dtype}"
            )
        if t_arr.shape != x.shape:
            raise ValueError(
                f"probability target has shape {t_arr.shape}, expected the logits' shape "
                f"{x.shape}"
            )
        if ignore_index != -100:
            raise ValueError(
                "ignore_index is only applicable when the target contains class indices "
                f"(got probability targets and ignore_index={ignore_index})"
            )
        q = np.ascontiguousarray(t_arr, dtype=x.dtype).reshape(-1, c)
    else:
        t = class_targets(t_arr, lead, n_classes=c).reshape(-1)
    w = class_vector(weight, c, x.dtype, "weight")
    sw = None
    if sample_weight is not None:
        sw_arr = as_array(sample_weight, "sample_weight")
        if sw_arr.dtype.kind not in "iuf" or sw_arr.dtype.kind == "b":
            raise TypeError(f"sample_weight must be real, got dtype {sw_arr.dtype}")
        if sw_arr.shape != lead:
            raise ValueError(
                f"sample_weight has shape {sw_arr.shape}, expected logits.shape[:-1] = {lead}"
            )
        sw = np.ascontiguousarray(sw_arr, dtype=x.dtype).reshape(-1)
    return _Prepared(x.reshape(-1, c), lead, t, q, w, sw, ignore_index, reduction, eps, z, cap,
                     _resolve(num_threads), x)


def _run(p: _Prepared, grad, grad_scale=1.0, grad_rows=None, nll=False):
    """Call the kernel; returns the loss as the reduction asks."""
    n = p.x.shape[0]
    loss_rows = np.empty(n, dtype=np.float64)
    kernel = _core.ce_rows_f32 if p.x.dtype == np.float32 else _core.ce_rows_f64
    bad, total, denom = kernel(
        p.x, p.target, p.q, p.weight, p.sample_weight, grad_rows, float(grad_scale),
        p.ignore_index, p.label_smoothing, p.z_loss, p.softcap, p.reduction == "mean",
        loss_rows, grad, p.n_threads, nll,
    )
    if bad:
        raise_target_error(p.target, p.x.shape[1], p.ignore_index)
    return _reduced(loss_rows, total, denom, p.reduction, p.x.dtype, p.lead)


def _reduced(loss_rows, total, denom, reduction, dtype, lead):
    """The loss the reduction asks for, from the kernel's rows and totals."""
    if reduction == "none":
        return loss_rows.astype(dtype, copy=False).reshape(lead)
    dt = dtype.type
    if reduction == "sum":
        return dt(total)
    if denom != 0.0:
        return dt(total / denom)  # IEEE division, as NumPy's
    with np.errstate(divide="ignore", invalid="ignore"):
        return dt(np.float64(total) / np.float64(denom))


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


def _plain(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
           sample_weight, num_threads, out, want_grad):
    """The default-options call on canonical arrays, without the general validation.

    For (N, C) C-contiguous float32/float64 logits, (N,) contiguous int64 targets and
    every option at its default (``out`` None or the logits), returns ``(loss,
    grad)``; otherwise None, and the caller takes the general path.  A per-token
    serving call spends most of its time in Python, and after an idle pause every
    helper it touches costs microseconds of cold caches (measured: 1 x 32000
    fused call 274 us after a 30 ms pause, 21 us without).
    """
    if not (type(logits) is np.ndarray and type(target) is np.ndarray and weight is None
            and softcap is None and sample_weight is None
            and type(ignore_index) is int and ignore_index == -100
            and type(label_smoothing) is float and label_smoothing == 0.0
            and type(z_loss) is float and z_loss == 0.0
            and type(reduction) is str and reduction in _REDUCTIONS
            and (out is None or out is logits) and logits.ndim == 2):
        return None
    dt = logits.dtype
    n, c = logits.shape
    if ((dt is not _F32 and dt is not _F64) or target.dtype is not _I64 or n == 0 or c == 0
            or target.shape != (n,) or target.strides != (8,)
            or logits.strides != (c * dt.itemsize, dt.itemsize)
            or (out is not None and (not logits.flags.writeable
                                     or np.may_share_memory(target, logits)))):
        return None
    grad = (logits if out is not None else np.empty((n, c), dt)) if want_grad else None
    loss_rows = np.empty(n, dtype=np.float64)
    kernel = _core.ce_rows_f32 if dt is _F32 else _core.ce_rows_f64
    bad, total, denom = kernel(logits, target, None, None, None, None, 1.0, -100, 0.0, 0.0, 0.0,
                               reduction == "mean", loss_rows, grad, _resolve(num_threads),
                               False)
    if bad:
        raise_target_error(target, c, -100)
    return _reduced(loss_rows, total, denom, reduction, dt, (n,)), grad


def _run_grad(p: _Prepared, out, grad_scale=1.0, grad_rows=None, nll=False):
    """Loss and gradient, written to `out` (or a new array) under the overlap policy.

    ``out`` may be the logits themselves (in place); any other overlap with an
    operand behaves as if that operand had been copied first (``output_for``).
    """
    dest, out, (t, q, w, sw, rows) = output_for(
        out, p.orig.shape, p.x.dtype, inplace=(p.orig,),
        reads=(p.target, p.q, p.weight, p.sample_weight, grad_rows))
    p = p._replace(target=t, q=q, weight=w, sample_weight=sw)
    loss = _run(p, dest.reshape(p.x.shape), grad_scale, rows, nll)
    return loss, finish_output(dest, out)


_OPTIONS_DOC = """weight : array_like of shape (C,), optional
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
    num_threads : int, optional
        OpenMP threads; ``None`` uses ``xent.get_num_threads()``."""


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
    logits : array_like of shape (..., C)
        Unnormalised scores. float32 and float64 are computed natively, float16
        in float32.
    target : array_like
        Integer class indices of shape ``logits.shape[:-1]`` (any integer
        dtype), or floating class probabilities of shape ``logits.shape``.
    {options}

    Returns
    -------
    loss : numpy scalar or ndarray
        A NumPy scalar of the computation dtype for ``"mean"``/``"sum"``; an
        array of shape ``logits.shape[:-1]`` for ``"none"``.

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
    the row's maximum, evaluated in double precision from float32 inputs
    (exponentials summed in float32 lanes over chunks of 2048 classes, chunks in
    float64, the maxima's exact ones counted apart), so that the small losses of
    confident predictions keep their relative accuracy. A ``"mean"``
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
    fast = _plain(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, sample_weight, num_threads, None, False)
    if fast is not None:
        return fast[0]
    p = _prepare(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                 label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                 sample_weight=sample_weight, num_threads=num_threads)
    return _run(p, None)


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
    grad_output : float or array_like, optional
        Multiplies the gradient: a scalar for ``"mean"``/``"sum"``; for
        ``"none"`` a scalar applied to every row or an array of shape
        ``logits.shape[:-1]``.
    {options}
    out : ndarray, optional
        C-contiguous writable array of the logits' shape and computation dtype.
        ``out=logits`` writes the gradient in place.

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
    p = _prepare(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                 label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                 sample_weight=sample_weight, num_threads=num_threads)
    scale, rows = grad_output_rows(grad_output, p.reduction, p.lead, p.x.dtype)
    return _run_grad(p, out, scale, None if rows is None else rows.reshape(-1))[1]


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
    out : ndarray, optional
        C-contiguous writable array of the logits' shape and computation dtype
        (``out=logits`` for in place).

    Returns
    -------
    loss : numpy scalar or ndarray
        As :func:`cross_entropy`.
    grad : ndarray
        As :func:`cross_entropy_grad`; `out` if given.

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
    fast = _plain(logits, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, sample_weight, num_threads, out, True)
    if fast is not None:
        return fast
    p = _prepare(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                 label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                 sample_weight=sample_weight, num_threads=num_threads)
    return _run_grad(p, out)


for _f in (cross_entropy, cross_entropy_grad, cross_entropy_and_grad):
    _f.__doc__ = _f.__doc__.replace("{options}", _OPTIONS_DOC)

_NLL_DOC = """weight : array_like of shape (C,), optional
        Per-class weights, as in ``torch.nn.functional.nll_loss``.
    ignore_index : int, optional
        Target value whose rows contribute nothing. Default -100.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the summed weights of the non-ignored targets.
    num_threads : int, optional
        OpenMP threads; ``None`` uses ``xent.get_num_threads()``."""


def _prepare_nll(log_probs, target, weight, ignore_index, reduction, num_threads):
    return _prepare(log_probs, target, weight=weight, ignore_index=ignore_index,
                    reduction=reduction, label_smoothing=0.0, z_loss=0.0, softcap=None,
                    sample_weight=None, num_threads=num_threads, soft_ok=False,
                    name="log_probs")


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
    p = _prepare_nll(log_probs, target, weight, ignore_index, reduction, num_threads)
    return _run(p, None, nll=True)


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
    grad_output : float or array_like, optional
        Scalar, or for ``"none"`` an array of shape ``log_probs.shape[:-1]``.
    {options}
    out : ndarray, optional
        Output buffer of the input's shape and dtype (``out=log_probs`` allowed).

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
    p = _prepare_nll(log_probs, target, weight, ignore_index, reduction, num_threads)
    scale, rows = grad_output_rows(grad_output, p.reduction, p.lead, p.x.dtype)
    return _run_grad(p, out, scale, None if rows is None else rows.reshape(-1), nll=True)[1]


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
    out : ndarray, optional
        Output buffer for the gradient (``out=log_probs`` allowed).

    Returns
    -------
    loss : numpy scalar or ndarray
    grad : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> lp = np.log(np.array([[0.5, 0.5]]))
    >>> loss, grad = xent.nll_loss_and_grad(lp, np.array([1]))
    >>> round(float(loss), 6), grad.tolist()
    (0.693147, [[0.0, -1.0]])
    """
    p = _prepare_nll(log_probs, target, weight, ignore_index, reduction, num_threads)
    return _run_grad(p, out, nll=True)


for _f in (nll_loss, nll_loss_grad, nll_loss_and_grad):
    _f.__doc__ = _f.__doc__.replace("{options}", _NLL_DOC)


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
    num_threads : int, optional
        OpenMP threads; ``None`` uses ``xent.get_num_threads()``.

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
    p = _prepare(logits, target, weight=None, ignore_index=ignore_index, reduction="sum",
                 label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
                 num_threads=num_threads, soft_ok=False)
    n = p.x.shape[0]
    loss_rows = np.empty(n, dtype=np.float64)
    kernel = _core.ce_rows_f32 if p.x.dtype == np.float32 else _core.ce_rows_f64
    bad, total, denom = kernel(
        p.x, p.target, None, None, None, None, 1.0, p.ignore_index, 0.0, 0.0, 0.0, False,
        loss_rows, None, p.n_threads,
    )
    if bad:
        raise_target_error(p.target, p.x.shape[1], p.ignore_index)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.exp(np.float64(total) / np.float64(denom))
