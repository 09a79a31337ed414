"""Elementwise binary losses: binary_cross_entropy_with_logits, binary_cross_entropy,
sigmoid_focal_loss (each with *_grad and *_and_grad)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._docs import fill_doc
from ._half import in_float32
from ._kernels import _core
from ._threads import _resolve
from ._validation import (
    as_array,
    as_float_array,
    check_reduction,
    finish_output,
    grad_output_rows,
    nonneg,
    output_for,
    real_scalar,
    reduce_loss,
)

__all__ = [
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "binary_cross_entropy_with_logits_and_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_and_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "sigmoid_focal_loss_and_grad",
]


def _elem_target(target, shape: tuple, dtype) -> np.ndarray:
    t = as_array(target, "target")
    if t.dtype.kind not in "iuf":
        raise TypeError(f"target must be a real (floating or integer) array, got dtype {t.dtype}")
    if t.shape != shape:
        raise ValueError(
            f"target has shape {t.shape}, expected the input's shape {shape} (elementwise loss)"
        )
    return np.ascontiguousarray(t, dtype=dtype)


def _real_array(w, name: str, dtype) -> np.ndarray:
    a = as_array(w, name)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


def _weight(weight, shape: tuple, dtype):
    """None, one row of n_cols repeated over the rows, or the weights broadcast to `shape`
    (as a 2-d array: (1, n_cols) or (n_rows, n_cols))."""
    if weight is None:
        return None
    w = _real_array(weight, "weight", dtype)
    try:
        full = np.broadcast_shapes(w.shape, shape)
    except ValueError:
        full = None
    if full != shape:
        raise ValueError(
            f"weight of shape {w.shape} does not broadcast to the input's shape {shape}"
        )
    ncols = shape[-1] if shape else 1
    lead = w.shape[:-1] if w.ndim >= 1 else ()
    if all(d == 1 for d in lead):
        return np.ascontiguousarray(np.broadcast_to(w.reshape(w.shape[-1:]), (1, ncols)))
    nrows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return np.ascontiguousarray(np.broadcast_to(w, shape)).reshape(nrows, ncols)


def _pos_weight(pos_weight, shape: tuple, dtype):
    if pos_weight is None:
        return None
    pw = _real_array(pos_weight, "pos_weight", dtype)
    ncols = shape[-1] if shape else 1
    if pw.ndim > max(len(shape), 1) or any(d != 1 for d in pw.shape[:-1]) or (
        pw.ndim >= 1 and pw.shape[-1] not in (1, ncols)
    ):
        raise ValueError(
            f"pos_weight of shape {pw.shape} must broadcast along the last axis of the "
            f"input (shape ({ncols},) or (1,)); input shape {shape}"
        )
    return np.ascontiguousarray(np.broadcast_to(pw.reshape(pw.shape[-1:]), (ncols,)))


def _bad_probs_error(x: np.ndarray, t: np.ndarray) -> None:
    for arr, what in ((x, "input probability"), (t, "target")):
        flat = arr.reshape(-1)
        bad = ~((flat >= 0) & (flat <= 1))
        if bad.any():
            pos = int(np.argmax(bad))
            raise ValueError(
                f"binary_cross_entropy: {what} {float(flat[pos])!r} at flat position {pos} "
                "is not in [0, 1] (all elements of input and target should be between 0 and 1)"
            )
    raise ValueError("binary_cross_entropy: input or target outside [0, 1]")  # pragma: no cover


def _binary(op, logits, target, weight, pos_weight, alpha, gamma, reduction, num_threads,
            want_loss, grad_output, want_grad, out, name="logits"):
    x = as_float_array(logits, name)
    dt, shape = x.dtype, x.shape
    t = _elem_target(target, shape, dt)
    red = check_reduction(reduction)
    w = _weight(weight, shape, dt)
    pw = _pos_weight(pos_weight, shape, dt)
    scale, g_el = grad_output_rows(grad_output, red, shape, dt) if want_grad else (1.0, None)
    opt = _core.BinaryOptions(op, reduction=red, alpha=alpha, gamma=gamma, grad_scale=scale)
    nt = _resolve(num_threads)
    dest = None
    if want_grad:
        dest, out, (t, w, pw, g_el) = output_for(out, shape, dt, (x,), (t, w, pw, g_el))
    loss = np.empty(shape, dtype=dt) if (want_loss and red == "none") else None
    n_cols = shape[-1] if shape else 1
    n_rows = math.prod(shape[:-1]) if shape else 1
    bad, total = _core.binary_loss(x.reshape(n_rows, n_cols), t, w, pw, g_el, loss, dest, opt, nt)
    if bad:
        _bad_probs_error(x, t)
    if want_loss:
        loss = reduce_loss(loss, total, x.size, red, dt)
    return loss, finish_output(dest, out) if want_grad else None


_binary = in_float32(_binary, logits_at=1)


# --------------------------------------------------------------------------- BCE with logits

def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> NDArray[np.floating] | np.floating:
    r"""Binary cross-entropy on logits, elementwise over any shape.

    Equals ``torch.nn.functional.binary_cross_entropy_with_logits``:
    ``loss = (1 - t) x - lw log_sigmoid(x)`` with ``lw = (pos_weight - 1) t + 1``
    and ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))`` (stable for any x),
    times `weight`.

    Parameters
    ----------
    logits : array_like
        Real floating-point scores of any shape (float16/bfloat16: computed in
        float32, array results rounded once to the input dtype).
    target : array_like
        Targets of the same shape (floating or integer; usually in [0, 1]).
    weight : array_like, optional
        Rescaling weight broadcast against the input.
    pos_weight : array_like, optional
        Weight of positive examples, broadcast along the last axis (shape
        ``(C,)`` or ``(1,)``).
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` averages over every element; ``"none"`` returns the
        elementwise losses (input's shape).
    {num_threads}

    Returns
    -------
    numpy scalar or ndarray
        Scalar of the computation dtype, or the input's shape for ``"none"``.

    Raises
    ------
    TypeError
        If `logits` is not real floating point, or `target`/`weight` are not real.
    ValueError
        On a shape mismatch, a `weight` that does not broadcast, a
        `pos_weight` that does not broadcast along the last axis, or an unknown
        `reduction`.

    See Also
    --------
    binary_cross_entropy_with_logits_grad, binary_cross_entropy, sigmoid_focal_loss

    Notes
    -----
    The gradient is ``weight (lw sigmoid(x) - pos_weight t)``, PyTorch's
    backward formula. ``+-inf`` and NaN follow the same IEEE arithmetic as
    PyTorch's formula.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> x = np.array([[1.5, -0.5], [0.0, 3.0]])
    >>> t = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> round(float(xent.binary_cross_entropy_with_logits(x, t)), 6)
    0.354306
    """
    return _binary("with_logits", logits, target, weight, pos_weight, 0.0, 0.0, reduction,
                   num_threads, True, None, False, None)[0]


def binary_cross_entropy_with_logits_grad(
    logits: ArrayLike,
    target: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of `binary_cross_entropy_with_logits` w.r.t. `logits`, times `grad_output`.

    Parameters
    ----------
    logits, target
        As in `binary_cross_entropy_with_logits`.
    {grad_output_elementwise}
    weight, pos_weight, reduction
        As in `binary_cross_entropy_with_logits`.
    {out_grad}
    {num_threads}

    Returns
    -------
    ndarray
        Input's shape; `out` if given.

    Raises
    ------
    TypeError, ValueError
        As in `binary_cross_entropy_with_logits`, plus an unacceptable `out`
        or `grad_output`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> x = np.array([0.0, 2.0])
    >>> xent.binary_cross_entropy_with_logits_grad(x, np.array([1.0, 0.0]), reduction="sum")
    array([-0.5       ,  0.88079708])
    """
    return _binary("with_logits", logits, target, weight, pos_weight, 0.0, 0.0, reduction,
                   num_threads, False, grad_output, True, out)[1]


def binary_cross_entropy_with_logits_and_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> tuple[NDArray[np.floating] | np.floating, NDArray[np.floating]]:
    r"""`binary_cross_entropy_with_logits` and its gradient from one pass.

    Parameters
    ----------
    logits, target, weight, pos_weight, reduction
        As in `binary_cross_entropy_with_logits`.
    {out_grad}
    {num_threads}

    {returns_loss_and_grad}

    Raises
    ------
    TypeError, ValueError
        As in `binary_cross_entropy_with_logits_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> loss, grad = xent.binary_cross_entropy_with_logits_and_grad(
    ...     np.array([0.0, 2.0]), np.array([1.0, 0.0]))
    >>> grad
    array([-0.25      ,  0.44039854])
    """
    return _binary("with_logits", logits, target, weight, pos_weight, 0.0, 0.0, reduction,
                   num_threads, True, 1.0, True, out)


# --------------------------------------------------------------------------- BCE on probabilities

def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> NDArray[np.floating] | np.floating:
    r"""Binary cross-entropy on probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    ``loss = -weight (t max(log p, -100) + (1 - t) max(log(1 - p), -100))``:
    like PyTorch, each log term is clamped at -100, so ``p = 0`` or ``1``
    give finite losses.

    Parameters
    ----------
    probs : array_like
        Probabilities in ``[0, 1]`` (any shape, real floating point).
    target : array_like
        Targets in ``[0, 1]`` of the same shape.
    weight : array_like, optional
        Rescaling weight broadcast against the input.
    reduction : {"mean", "sum", "none"}, optional
        As in `binary_cross_entropy_with_logits`.
    {num_threads}

    Returns
    -------
    numpy scalar or ndarray

    Raises
    ------
    ValueError
        If a probability or target is outside ``[0, 1]`` or NaN (naming the
        first one), as PyTorch; shape, weight and reduction errors as in
        `binary_cross_entropy_with_logits`.
    TypeError
        If `probs` is not real floating point.

    Notes
    -----
    Prefer `binary_cross_entropy_with_logits` on logits: it needs no clamp.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> round(float(xent.binary_cross_entropy(np.array([0.9, 0.2]), np.array([1.0, 0.0]))), 6)
    0.164252
    >>> float(xent.binary_cross_entropy(np.array([0.0]), np.array([1.0])))  # clamped
    100.0
    """
    return _binary("probs", probs, target, weight, None, 0.0, 0.0, reduction,
                   num_threads, True, None, False, None, name="probs")[0]


def binary_cross_entropy_grad(
    probs: ArrayLike,
    target: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of `binary_cross_entropy` w.r.t. `probs`, PyTorch's backward formula.

    ``grad = grad_output * weight * (p - t) / max((1 - p) p, eps)`` with
    ``eps = float32(1e-12)`` (PyTorch's constant, also for float64), so
    ``p = 0`` or ``1`` give a large finite gradient, not inf.

    Parameters
    ----------
    probs, target
        As in `binary_cross_entropy`.
    {grad_output_elementwise}
    weight, reduction
        As in `binary_cross_entropy`.
    {out_grad}
    {num_threads}

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError, ValueError
        As in `binary_cross_entropy`; nothing is written to `out` when a value
        is outside ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> xent.binary_cross_entropy_grad(np.array([0.5, 0.8]), np.array([1.0, 1.0]),
    ...                                reduction="sum")
    array([-2.  , -1.25])
    """
    return _binary("probs", probs, target, weight, None, 0.0, 0.0, reduction,
                   num_threads, False, grad_output, True, out, name="probs")[1]


def binary_cross_entropy_and_grad(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> tuple[NDArray[np.floating] | np.floating, NDArray[np.floating]]:
    r"""`binary_cross_entropy` and its gradient from one pass.

    Parameters
    ----------
    probs, target, weight, reduction
        As in `binary_cross_entropy`.
    {out_grad}
    {num_threads}

    {returns_loss_and_grad}

    Raises
    ------
    TypeError, ValueError
        As in `binary_cross_entropy_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> loss, grad = xent.binary_cross_entropy_and_grad(np.array([0.5]), np.array([1.0]))
    >>> round(float(loss), 6), float(grad[0])
    (0.693147, -2.0)
    """
    return _binary("probs", probs, target, weight, None, 0.0, 0.0, reduction,
                   num_threads, True, 1.0, True, out, name="probs")


# --------------------------------------------------------------------------- sigmoid focal

def _focal_opts(alpha, gamma):
    return real_scalar(alpha, "alpha"), nonneg(gamma, "gamma")


def sigmoid_focal_loss(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    num_threads: int | None = None,
) -> NDArray[np.floating] | np.floating:
    r"""Sigmoid focal loss, as ``torchvision.ops.sigmoid_focal_loss``.

    ``loss = alpha_t * ce * (1 - p_t)**gamma`` elementwise, with
    ``p = sigmoid(x)``, ``ce = binary_cross_entropy_with_logits(x, t)``,
    ``p_t = p t + (1 - p)(1 - t)`` and ``alpha_t = alpha t + (1 - alpha)(1 - t)``
    (``alpha < 0`` disables the alpha term).

    Parameters
    ----------
    logits : array_like
        Real floating-point scores of any shape.
    target : array_like
        Binary (or soft) targets of the same shape.
    alpha : float, optional
        Weight of the positive class in ``[0, 1]``; negative disables it.
    gamma : float, optional
        Focusing exponent, ``>= 0``.
    reduction : {"none", "mean", "sum"}, optional
        Default ``"none"`` (torchvision's default): the elementwise losses.
    {num_threads}

    Returns
    -------
    numpy scalar or ndarray

    Raises
    ------
    TypeError
        If `logits` is not real floating point or `target` not real.
    ValueError
        On a shape mismatch, ``gamma < 0`` or an unknown `reduction`.

    Notes
    -----
    ``1 - p_t`` is formed as ``t sigmoid(-x) + (1 - t) sigmoid(x)``, keeping
    full relative accuracy for confident predictions where torchvision's
    ``1 - p_t`` rounds to 0; results agree with torchvision to rounding.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> np.round(xent.sigmoid_focal_loss(np.array([2.0, -1.0]), np.array([1.0, 1.0])), 6)
    array([0.000451, 0.175467])
    """
    a, g = _focal_opts(alpha, gamma)
    return _binary("sigmoid_focal", logits, target, None, None, a, g, reduction,
                   num_threads, True, None, False, None)[0]


def sigmoid_focal_loss_grad(
    logits: ArrayLike,
    target: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of `sigmoid_focal_loss` w.r.t. `logits`, times `grad_output`.

    ``alpha_t m**gamma (p - t + gamma ce (1 - 2t) p (1 - p) / m)`` with
    ``m = 1 - p_t``.

    Parameters
    ----------
    logits, target
        As in `sigmoid_focal_loss`.
    {grad_output_elementwise}
    alpha, gamma, reduction
        As in `sigmoid_focal_loss`.
    {out_grad}
    {num_threads}

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError, ValueError
        As in `sigmoid_focal_loss`.

    Notes
    -----
    Finite for every finite input, including ``0 < gamma < 1`` at
    ``p_t = 1`` where autograd through torchvision's formula gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> xent.sigmoid_focal_loss_grad(np.array([0.0]), np.array([1.0]), gamma=0.0)
    array([-0.125])
    """
    a, g = _focal_opts(alpha, gamma)
    return _binary("sigmoid_focal", logits, target, None, None, a, g, reduction,
                   num_threads, False, grad_output, True, out)[1]


def sigmoid_focal_loss_and_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> tuple[NDArray[np.floating] | np.floating, NDArray[np.floating]]:
    r"""`sigmoid_focal_loss` and its gradient from one pass.

    Parameters
    ----------
    logits, target, alpha, gamma, reduction
        As in `sigmoid_focal_loss`.
    {out_grad}
    {num_threads}

    {returns_loss_and_grad}

    Raises
    ------
    TypeError, ValueError
        As in `sigmoid_focal_loss_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> loss, grad = xent.sigmoid_focal_loss_and_grad(np.zeros(3), np.ones(3), reduction="sum")
    >>> loss.dtype, grad.shape
    (dtype('float64'), (3,))
    """
    a, g = _focal_opts(alpha, gamma)
    return _binary("sigmoid_focal", logits, target, None, None, a, g, reduction,
                   num_threads, True, 1.0, True, out)


fill_doc(binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_grad,
         binary_cross_entropy_with_logits_and_grad, binary_cross_entropy,
         binary_cross_entropy_grad, binary_cross_entropy_and_grad, sigmoid_focal_loss,
         sigmoid_focal_loss_grad, sigmoid_focal_loss_and_grad)
