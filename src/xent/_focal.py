"""Multi-class softmax focal loss: focal_loss, focal_loss_grad, focal_loss_and_grad."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._docs import fill_doc
from ._half import in_float32
from ._kernels import _core
from ._threads import _resolve
from ._validation import (
    check_reduction,
    class_logits,
    class_targets,
    class_vector,
    finish_output,
    grad_output_rows,
    integer_scalar,
    nonneg,
    output_for,
    raise_target_error,
    real_scalar,
    reduce_loss,
)

__all__ = ["focal_loss", "focal_loss_grad", "focal_loss_and_grad"]


def _focal(logits, target, gamma, alpha, ignore_index, reduction, num_threads,
           want_loss, grad_output, want_grad, out):
    x = class_logits(logits)
    dt, lead, c = x.dtype, x.shape[:-1], x.shape[-1]
    t = class_targets(target, lead).reshape(-1)
    red = check_reduction(reduction)
    ign = integer_scalar(ignore_index, "ignore_index")
    alpha_s, alpha_c = 1.0, None
    if alpha is not None and np.ndim(alpha) == 0:
        alpha_s = real_scalar(alpha, "alpha")
    elif alpha is not None:
        alpha_c = class_vector(alpha, c, dt, "alpha")
    scale, g_rows = grad_output_rows(grad_output, red, lead, dt) if want_grad else (1.0, None)
    opt = _core.FocalOptions(gamma=nonneg(gamma, "gamma"), alpha=alpha_s, ignore_index=ign,
                             reduction=red, grad_scale=scale)
    nt = _resolve(num_threads)
    dest = None
    if want_grad:
        dest, out, (t, alpha_c, g_rows) = output_for(out, x.shape, dt, (x,),
                                                     (t, alpha_c, g_rows))
    rows = np.empty(lead, dtype=dt) if want_loss else None
    bad, total, count = _core.focal_rows(x.reshape(-1, c), t, alpha_c, g_rows, rows,
                                         None if dest is None else dest.reshape(-1, c), opt, nt)
    if bad:
        raise_target_error(t, c, ign)
    loss = reduce_loss(rows, total, count, red, dt) if want_loss else None
    return loss, finish_output(dest, out) if want_grad else None


_focal = in_float32(_focal)


def focal_loss(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> NDArray[np.floating] | np.floating:
    r"""Multi-class softmax focal loss (Lin et al., 2017).

    Per sample ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` with
    ``p_t = softmax(logits)[target]``, computed in one pass per row.

    Parameters
    ----------
    {logits_rows}
    {class_target}
    gamma : float, optional
        Focusing parameter, ``>= 0``. ``gamma=0`` with ``alpha=None`` is
        exactly softmax cross-entropy.
    alpha : float or array_like of shape (C,), optional
        Balancing factor: ``None`` (1), one number for every class, or one
        per class indexed by the target.
    ignore_index : int, optional
        Target value whose rows contribute nothing (and get zero gradient).
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides the sum by the number of non-ignored targets (NaN
        when there are none); ``"none"`` returns one loss per row (0 for
        ignored rows).
    {num_threads}

    Returns
    -------
    numpy scalar or ndarray
        Scalar of the computation dtype for ``"mean"``/``"sum"``; shape
        ``logits.shape[:-1]`` for ``"none"``.

    Raises
    ------
    TypeError
        If `logits` is not real floating point or `target` is not integer.
    ValueError
        On a shape mismatch, ``C == 0``, ``gamma < 0``, an `alpha` array not
        of shape ``(C,)`` or an unknown `reduction`.
    IndexError
        If a target is outside ``[0, C)`` and not `ignore_index`.

    See Also
    --------
    focal_loss_grad, focal_loss_and_grad, sigmoid_focal_loss

    Notes
    -----
    ``log(1 - p_t)`` is evaluated as ``log(-expm1(log p_t))`` near
    ``p_t = 1`` (``log1p(-p_t)`` elsewhere), so the modulating factor keeps
    its accuracy for confident predictions. Rows holding NaN or ``+inf``
    give NaN, as ``torch.nn.functional.cross_entropy`` does. Per-row results
    are bitwise identical for any thread count.

    References
    ----------
    .. [1] T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss
       for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> target = np.array([0, 1])
    >>> round(float(xent.focal_loss(logits, target, gamma=0.0)), 6)  # == cross-entropy
    1.575456
    >>> np.round(xent.focal_loss(logits, target, reduction="none"), 6)
    array([0.011093, 2.601111])
    """
    return _focal(logits, target, gamma, alpha, ignore_index, reduction, num_threads,
                  True, None, False, None)[0]


def focal_loss_grad(
    logits: ArrayLike,
    target: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of `focal_loss` with respect to `logits`, times `grad_output`.

    ``d loss_i / d logits_ij = c_i * (softmax(logits_i)_j - [j == target_i])``
    with one scalar ``c_i`` per row (the loss depends on ``p_t`` only).

    Parameters
    ----------
    logits, target
        As in `focal_loss`.
    {grad_output_rows}
    gamma, alpha, ignore_index, reduction
        As in `focal_loss`.
    {out_grad}
    {num_threads}

    Returns
    -------
    ndarray
        Shape ``logits.shape``; `out` if given. Ignored rows are exactly 0.

    Raises
    ------
    TypeError, ValueError, IndexError
        As in `focal_loss`; ValueError also for an unacceptable `out` or
        `grad_output` shape. On an IndexError nothing is written to `out`.

    Notes
    -----
    ``c_i = alpha_t ((1-p)**gamma + gamma p (-log p) (1-p)**(gamma-1))`` is
    evaluated in log space, so it stays finite and accurate as ``p_t -> 1``
    and for ``0 < gamma < 1``. There the naive formula used by autograd on
    ``(1 - p)**gamma`` (PyTorch, torchvision-style implementations) gives
    ``inf * 0 = NaN`` at ``p_t = 1``, while xent returns the limit (0, or
    ``alpha_t`` times the cross-entropy gradient for ``gamma = 0``). For
    ``log p_t = -inf`` the limit ``c_i = alpha_t`` is used (autograd: NaN).

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0]])
    >>> g = xent.focal_loss_grad(logits, np.array([1]), gamma=0.0)
    >>> np.allclose(g, xent.softmax(logits) - [0, 1, 0])
    True
    """
    return _focal(logits, target, gamma, alpha, ignore_index, reduction, num_threads,
                  False, grad_output, True, out)[1]


def focal_loss_and_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> tuple[NDArray[np.floating] | np.floating, NDArray[np.floating]]:
    r"""`focal_loss` and its gradient (``grad_output=1``) from one pass over the logits.

    Parameters
    ----------
    logits, target, gamma, alpha, ignore_index, reduction
        As in `focal_loss`.
    {out_grad}
    {num_threads}

    {returns_loss_and_grad}

    Raises
    ------
    TypeError, ValueError, IndexError
        As in `focal_loss_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> loss, grad = xent.focal_loss_and_grad(logits, np.array([0, 2]))
    >>> grad.shape
    (2, 3)
    """
    return _focal(logits, target, gamma, alpha, ignore_index, reduction, num_threads,
                  True, 1.0, True, out)


fill_doc(focal_loss, focal_loss_grad, focal_loss_and_grad)
