"""Softmax cross-entropy, negative log-likelihood and focal loss on PyTorch's layouts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .._cross_entropy import _cross_entropy
from ._common import (
    PLAIN_DTYPES,
    check_floating,
    check_not_differentiable,
    check_tensor,
    compute_dtype,
    loss_tensor,
    plain_call,
    reduction_arg,
)
from ._common import to_numpy as _np
from ._engine import Kind, Saved, register, run_loss
from ._half import from_numpy as half_from_numpy
from ._layout import (
    class_target,
    class_weight,
    classes_last,
    n_classes,
    prob_target,
    target_out_of_bounds,
)

# --------------------------------------------------------------------------- kinds


class CEOptions(NamedTuple):
    ignore_index: int
    reduction: str
    label_smoothing: float
    z_loss: float
    softcap: float | None
    num_threads: int | None


class _Rows(NamedTuple):
    """Per-row terms of the cross-entropy's derivatives (classes last)."""

    p: torch.Tensor  # softmax of the (capped) logits
    sk: torch.Tensor  # s * (c + 2 z w lse), keepdim: the Hessian's softmax-Jacobian factor
    q: torch.Tensor  # s * smoothed, weighted target distribution
    s: float | torch.Tensor  # reduction scale
    wz: float | torch.Tensor  # z-loss row weights, keepdim
    cap: tuple | None  # (tanh(x / softcap), 1 - tanh**2) with softcap


def _class_rows(sv: Saved, dtype):
    """(q, s, wz) for class targets: PyTorch's weighted, smoothed one-hot rows."""
    o, c, w = sv.opts, sv.g.shape[-1], sv.w1
    valid = sv.target != o.ignore_index
    t0 = torch.where(valid, sv.target, 0).long()
    wy = (w[t0] if w is not None else torch.ones(t0.shape, dtype=dtype)) * valid
    wrow = (w if w is not None else torch.ones(c, dtype=dtype)) * valid.unsqueeze(-1)
    eps = o.label_smoothing
    q = (1 - eps) * F.one_hot(t0, c).to(dtype) * wy.unsqueeze(-1) + (eps / c) * wrow
    s = 1.0 / wy.sum() if o.reduction == "mean" else 1.0
    return q, s, wy.unsqueeze(-1)


def _prob_rows(sv: Saved, dtype):
    """(q, s, wz) for probability targets."""
    o, c = sv.opts, sv.g.shape[-1]
    q = (1 - o.label_smoothing) * sv.target + o.label_smoothing / c
    if sv.w1 is not None:
        q = q * sv.w1
    s = 1.0 / (sv.target.numel() // c) if o.reduction == "mean" else 1.0
    return q, s, 1.0


def _ce_rows(sv: Saved) -> _Rows:
    o, g = sv.opts, sv.g
    q, s, wz = (_prob_rows if sv.target.dtype.is_floating_point else _class_rows)(sv, g.dtype)
    q = s * q
    if o.softcap is None:
        # G = sk * p - q per row, and p sums to 1: p and sk follow from G alone.
        r = g + q
        sk = r.sum(-1, keepdim=True)
        p = r / torch.where(sk != 0, sk, torch.ones_like(sk))
        return _Rows(p, sk, q, s, wz, None)
    x = sv.x.to(g.dtype)
    tau = torch.tanh(x / o.softcap)
    xc = o.softcap * tau
    sk = q.sum(-1, keepdim=True) + 2 * o.z_loss * s * wz * torch.logsumexp(xc, -1, True)
    return _Rows(torch.softmax(xc, -1), sk, q, s, wz, (tau, 1 - tau * tau))


def _target_weights(sv: Saved, dtype):
    return sv.w1 if sv.w1 is not None else torch.ones((), dtype=dtype)


class _CrossEntropy(Kind):
    name = "cross_entropy"
    rows = True
    weights = ("weight",)
    options = CEOptions
    target_differentiable = True

    def numpy_args(self, target, w1, w2, o):
        return (_np(target),), dict(
            weight=_np(w1), ignore_index=o.ignore_index, reduction=o.reduction,
            label_smoothing=o.label_smoothing, z_loss=o.z_loss, softcap=o.softcap,
            num_threads=o.num_threads)

    def raise_value_error(self, exc, x, target, opts):
        if isinstance(exc, IndexError) and not target.dtype.is_floating_point:
            raise target_out_of_bounds(target, x.shape[-1], opts.ignore_index) from None

    half_native = True

    def half_kernel(self, xh, dtype, target, w1, w2, o, *, grad):
        g = torch.empty(xh.shape, dtype=torch.float32) if grad else None
        try:
            loss, _ = _cross_entropy(
                xh, _np(target), _np(w1), o.ignore_index, o.reduction, o.label_smoothing,
                o.z_loss, o.softcap, None, o.num_threads, grad, 1.0,
                None if g is None else g.numpy(), grad_dtype=np.float32)
        except (IndexError, ValueError) as exc:
            self.raise_value_error(exc, xh, target, o)
            raise
        return (half_from_numpy(loss) if loss.ndim else loss_tensor(loss, dtype)), g

    def keeps_input(self, opts) -> bool:
        return opts.softcap is not None

    def hvp(self, sv: Saved, u: torch.Tensor):
        r, o = _ce_rows(sv), sv.opts
        w = u if r.cap is None else r.cap[1] * u  # d(capped logits) along u
        pw = (r.p * w).sum(-1, keepdim=True)
        h = r.sk * (r.p * w - r.p * pw)
        if o.z_loss:
            h = h + 2 * o.z_loss * r.s * r.wz * r.p * pw
        if r.cap is not None:
            tau, d = r.cap
            h = d * h + (r.sk * r.p - r.q) * (-2 / o.softcap) * tau * d * u
        ht = None
        if sv.target.dtype.is_floating_point:
            ht = r.s * (1 - o.label_smoothing) * _target_weights(sv, u.dtype) * (pw - w)
        return h, ht

    def target_grad(self, sv: Saved) -> torch.Tensor:
        o = sv.opts
        x = sv.x.to(sv.g.dtype)
        if o.softcap is not None:
            x = o.softcap * torch.tanh(x / o.softcap)
        s = 1.0 / (sv.target.numel() // x.shape[-1]) if o.reduction == "mean" else 1.0
        wv = _target_weights(sv, x.dtype)
        return -s * (1 - o.label_smoothing) * wv * torch.log_softmax(x, -1)

    def target_jvp(self, sv: Saved, t_dot: torch.Tensor) -> torch.Tensor:
        r, o = _ce_rows(sv), sv.opts
        wv = _target_weights(sv, t_dot.dtype)
        out = r.s * (1 - o.label_smoothing) * (
            r.p * (wv * t_dot).sum(-1, keepdim=True) - wv * t_dot)
        return out if r.cap is None else r.cap[1] * out


class NLLOptions(NamedTuple):
    ignore_index: int
    reduction: str
    num_threads: int | None


class _NLL(Kind):
    name = "nll_loss"
    rows = True
    weights = ("weight",)
    options = NLLOptions

    def numpy_args(self, target, w1, w2, o):
        return (_np(target),), dict(weight=_np(w1), ignore_index=o.ignore_index,
                                    reduction=o.reduction, num_threads=o.num_threads)

    def raise_value_error(self, exc, x, target, opts):
        if isinstance(exc, IndexError):
            raise target_out_of_bounds(target, x.shape[-1], opts.ignore_index) from None

    def keeps_input(self, opts) -> bool:
        return False

    def hvp(self, sv: Saved, u: torch.Tensor):
        return None, None  # linear in the input


class FocalOptions(NamedTuple):
    gamma: float
    alpha: float | None
    ignore_index: int
    reduction: str
    num_threads: int | None


def _focal_phi(pt: torch.Tensor, gamma: float):
    """phi(p) = p f'(p) and phi'(p) for f(p) = -(1 - p)**gamma log p."""
    if gamma == 0.0:
        return -torch.ones_like(pt), torch.zeros_like(pt)
    om, lp = 1 - pt, torch.log(pt)
    pos = om > 0  # the terms below vanish at p = 1 (gamma >= 1; diverge below)
    zero = torch.zeros_like(pt)
    a = torch.where(pos, gamma * pt * om.pow(gamma - 1) * lp, zero)
    b = torch.where(pos, gamma * (gamma - 1) * pt * om.pow(gamma - 2) * lp, zero)
    return a - om.pow(gamma), gamma * om.pow(gamma - 1) * (lp + 2) - b


class _Focal(Kind):
    name = "focal_loss"
    rows = True
    weights = ("alpha_weight",)
    options = FocalOptions

    def numpy_args(self, target, w1, w2, o):
        alpha = _np(w1) if w1 is not None else o.alpha
        return (_np(target),), dict(gamma=o.gamma, alpha=alpha, ignore_index=o.ignore_index,
                                    reduction=o.reduction, num_threads=o.num_threads)

    def raise_value_error(self, exc, x, target, opts):
        if isinstance(exc, IndexError):
            raise target_out_of_bounds(target, x.shape[-1], opts.ignore_index) from None

    def hvp(self, sv: Saved, u: torch.Tensor):
        o = sv.opts
        x = sv.x.to(sv.g.dtype)
        p = torch.softmax(x, -1)
        valid = sv.target != o.ignore_index
        t0 = torch.where(valid, sv.target, 0).long().unsqueeze(-1)
        pt = p.gather(-1, t0).squeeze(-1)
        a = valid.to(p.dtype)  # not a float times a bool tensor: that is float32
        if sv.w1 is not None:
            a = a * sv.w1[t0.squeeze(-1)]
        elif o.alpha is not None:
            a = a * o.alpha
        if o.reduction == "mean":
            a = a / valid.sum()
        phi, dphi = _focal_phi(pt, o.gamma)
        pu = (p * u).sum(-1, keepdim=True)
        d = F.one_hot(t0.squeeze(-1), p.shape[-1]).to(p.dtype) - p
        du = u.gather(-1, t0) - pu
        h = (a * dphi * pt).unsqueeze(-1) * du * d - (a * phi).unsqueeze(-1) * (p * u - p * pu)
        return h, None


CROSS_ENTROPY = register(_CrossEntropy(), "_CrossEntropyFunction")
NLL = register(_NLL(), "_NLLLossFunction")
FOCAL = register(_Focal(), "_FocalLossFunction")


# --------------------------------------------------------------------------- helpers


def _finish(loss: torch.Tensor, input: torch.Tensor, reduction: str,
            dtype: torch.dtype) -> torch.Tensor:
    """The loss in PyTorch's shape (0-d for a (C,) input) and `dtype`."""
    if input.dim() == 1 and reduction == "none":
        loss = loss.squeeze(0)
    return loss if loss.dtype == dtype else loss.to(dtype)


def _check_input(input, op: str) -> None:
    check_tensor(input, "input")
    check_floating(input, op)


def _check_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")


# --------------------------------------------------------------------------- functions


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.cross_entropy`` on CPU tensors.

    Same arguments, layouts, values, gradients (of every order) and exceptions
    as PyTorch's, computed by xent's fused kernel (loss and gradient from one
    pass over the logits).

    Parameters
    ----------
    input : Tensor of shape (N, C), (N, C, d1, ...) or (C,)
        Logits, classes on dim 1 (dim 0 for a 1-D input). float16/bfloat16 are
        computed in float32 and the loss is returned in the input's dtype.
    target : Tensor
        Class indices of shape (N,), (N, d1, ...) or () (any integer dtype), or
        class probabilities of the input's shape (floating; differentiable).
    weight : Tensor of shape (C,), optional
        Per-class rescaling weights (a constant).
    size_average : bool, optional
        Deprecated, as in PyTorch (mapped to `reduction` with PyTorch's warning).
    ignore_index : int, optional
        Target value that contributes nothing (class targets only).
    reduce : bool, optional
        Deprecated, as `size_average`.
    reduction : {"mean", "sum", "none"}, optional
        As in PyTorch (``"mean"`` divides by the summed weights of the
        non-ignored targets).
    label_smoothing : float in [0, 1], optional
        As in PyTorch.
    z_loss : float >= 0, optional
        xent extension (keyword-only): adds ``z_loss * w_i * lse_i**2`` per
        non-ignored sample, as ``xent.cross_entropy``.
    softcap : float > 0, optional
        xent extension (keyword-only): logits ``x`` are replaced by
        ``softcap * tanh(x / softcap)`` before the softmax (gradient with
        respect to the raw logits), as ``xent.cross_entropy``.
    inplace_backward : bool, optional
        Write the gradient into the logits' storage (destroys their values);
        see the package docstring for exactly what is guaranteed.
    num_threads : int, optional
        OpenMP threads for xent; ``None`` uses ``xent.get_num_threads()``.

    Returns
    -------
    Tensor
        0-d for ``"mean"``/``"sum"``, the target's shape for ``"none"``; the
        input's dtype (promoted with a floating target's, as PyTorch does).

    Raises
    ------
    ValueError
        Batch sizes that differ, an invalid `reduction`; `inplace_backward` on a
        parameter.
    RuntimeError
        Other target shape mistakes, a weight of the wrong shape or dtype,
        `label_smoothing` outside [0, 1], `ignore_index` with probability
        targets, a weight that requires grad.
    IndexError
        A class target out of range.
    NotImplementedError
        A non-floating input, a tensor not on the CPU.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> logits = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]], requires_grad=True)
    >>> target = torch.tensor([0, 1])
    >>> loss = xt.cross_entropy(logits, target)
    >>> torch.allclose(loss, torch.nn.functional.cross_entropy(logits, target))
    True
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([2, 3])
    """
    if (size_average is None and reduce is None and weight is None and softcap is None
            and label_smoothing == 0.0 and z_loss == 0.0):
        loss = _plain_loss(input, target, ignore_index, reduction, num_threads)
        if loss is not None:
            return loss
    reduction = reduction_arg(size_average, reduce, reduction)
    _check_input(input, "cross_entropy")
    check_tensor(target, "target")
    _check_smoothing(label_smoothing)
    if target.dtype.is_floating_point:
        if ignore_index != -100:
            raise RuntimeError("ignore_index is not supported for floating point target")
        input = input.to(torch.promote_types(input.dtype, target.dtype))  # as PyTorch
    if input.dim() == 0:
        raise RuntimeError("cross_entropy: input must have a class dimension: shape (C,), "
                           "(N, C) or (N, C, d1, ...); got a 0-d tensor")
    if n_classes(input) == 0:  # nothing to compute: PyTorch's own result (NaN, 0 or empty)
        return F.cross_entropy(input, target, weight, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    t, w = _ce_target_weight(input, target, weight)
    opts = CEOptions(int(ignore_index), reduction, float(label_smoothing), float(z_loss),
                     None if softcap is None else float(softcap), num_threads)
    loss = run_loss(CROSS_ENTROPY, classes_last(input), t, w, opts=opts,
                    inplace=inplace_backward)
    return _finish(loss, input, reduction, input.dtype)


_REDUCTIONS = ("mean", "sum", "none")


def _plain_loss(input, target, ignore_index, reduction, num_threads, nll=False):
    """The loss of a call that needs no autograd, in its most common form, or None.

    (N, C) float32/float64 logits and (N,) int64 targets (:func:`plain_call`),
    default options: what the general path computes (the NumPy API's lean path);
    anything else, and any error, is left to that path.
    """
    if (type(ignore_index) is not int or type(reduction) is not str
            or reduction not in _REDUCTIONS or not plain_call(input, target)
            or input.dtype not in PLAIN_DTYPES or target.dtype is not torch.int64
            or input.dim() != 2 or target.dim() != 1):
        return None
    n, c = input.shape
    if c == 0 or target.shape[0] != n:
        return None
    try:
        loss = _cross_entropy(input.numpy(), target.numpy(), None, ignore_index, reduction, 0.0,
                              0.0, None, None, num_threads, nll=nll)[0]
    except (IndexError, ValueError):
        return None  # the general path raises PyTorch's exception
    return torch.from_numpy(loss if reduction == "none" else np.asarray(loss))


def _ce_target_weight(input: torch.Tensor, target: torch.Tensor, weight):
    """The target (indices or probabilities) and the weights in the kernels' layout."""
    cdt = compute_dtype(input.dtype)
    if target.dtype.is_floating_point:
        return (prob_target(input, target, cdt),
                class_weight(weight, input, "cross_entropy", cdt, strict_dtype=False))
    return class_target(input, target), class_weight(weight, input, "nll_loss_forward", cdt)


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.nll_loss`` on CPU tensors.

    The negative log-likelihood of log-probabilities (e.g. the output of
    :func:`log_softmax`), computed by ``xent.nll_loss``; its gradient (the
    weighted, negated one-hot rows) comes from the same kernel call.

    Parameters
    ----------
    input : Tensor of shape (N, C), (N, C, d1, ...) or (C,)
        Log-probabilities, classes on dim 1.
    target : Tensor of int
        Class indices of shape (N,), (N, d1, ...) or ().
    weight : Tensor of shape (C,), optional
        Per-class weights (a constant).
    size_average : bool, optional
        Deprecated, as in PyTorch.
    ignore_index : int, optional
        Target value that contributes nothing.
    reduce : bool, optional
        Deprecated, as in PyTorch.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the summed weights of the non-ignored targets.
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        0-d, or the target's shape for ``"none"``.

    Raises
    ------
    ValueError, RuntimeError, IndexError, NotImplementedError
        As :func:`cross_entropy` (PyTorch's classes for the same mistakes).

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> logp = torch.log_softmax(torch.randn(4, 5), dim=1).requires_grad_()
    >>> target = torch.tensor([0, 4, 2, 2])
    >>> loss = xt.nll_loss(logp, target)
    >>> torch.allclose(loss, torch.nn.functional.nll_loss(logp, target))
    True
    >>> loss.backward()
    >>> logp.grad[0]
    tensor([-0.2500,  0.0000,  0.0000,  0.0000,  0.0000])
    """
    if size_average is None and reduce is None and weight is None:
        loss = _plain_loss(input, target, ignore_index, reduction, num_threads, nll=True)
        if loss is not None:
            return loss
    reduction = reduction_arg(size_average, reduce, reduction)
    _check_input(input, "nll_loss")
    check_tensor(target, "target")
    if input.dim() == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    t = class_target(input, target)
    x = classes_last(input)
    w = class_weight(weight, input, "nll_loss_forward", compute_dtype(x.dtype))
    if n_classes(input) == 0:
        return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)
    opts = NLLOptions(int(ignore_index), reduction, num_threads)
    return _finish(run_loss(NLL, x, t, w, opts=opts), input, reduction, input.dtype)


def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Multi-class softmax focal loss (``xent.focal_loss``) on PyTorch's layouts.

    Per sample ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` with
    ``p_t = softmax(input, dim=1)[target]``; ``gamma=0, alpha=None`` equals
    :func:`cross_entropy`.  Differentiable to any order with respect to `input`.

    Parameters
    ----------
    input : Tensor of shape (N, C), (N, C, d1, ...) or (C,)
        Logits, classes on dim 1.
    target : Tensor of int
        Class indices of shape (N,), (N, d1, ...) or ().
    gamma : float >= 0, optional
        Focusing parameter.
    alpha : float or Tensor of shape (C,), optional
        Class balance factor (indexed by the target); None means 1. A constant.
    ignore_index : int, optional
        Target value that contributes nothing.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the number of non-ignored targets.
    inplace_backward : bool, optional
        See :func:`cross_entropy`.
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        0-d, or the target's shape for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> logits = torch.randn(4, 5, requires_grad=True)
    >>> target = torch.tensor([0, 1, 2, 3])
    >>> loss = xt.focal_loss(logits, target, gamma=0.0)
    >>> ref = torch.nn.functional.cross_entropy(logits, target)
    >>> torch.allclose(loss, ref, atol=1e-6)
    True
    """
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    _check_input(input, "focal_loss")
    check_tensor(target, "target")
    if input.dim() == 0:
        raise RuntimeError("focal_loss: input must have a class dimension; got a 0-d tensor")
    t = class_target(input, target)
    x = classes_last(input)
    alpha_w = None
    if isinstance(alpha, torch.Tensor):
        check_not_differentiable(alpha, "focal_loss", "alpha")
        alpha_w = alpha.detach().to(compute_dtype(x.dtype))
        alpha = None
    opts = FocalOptions(float(gamma), None if alpha is None else float(alpha),
                        int(ignore_index), reduction, num_threads)
    loss = run_loss(FOCAL, x, t, alpha_w, opts=opts, inplace=inplace_backward)
    return _finish(loss, input, reduction, input.dtype)
