"""Elementwise binary losses: BCE with logits, BCE on probabilities, sigmoid focal loss."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from xent._docs import fill_doc

from ._common import (
    check_floating,
    check_not_differentiable,
    check_tensor,
    compute_dtype,
    reduction_arg,
    scalar_name,
)
from ._common import to_numpy as _np
from ._engine import Kind, Saved, register, run_loss

# --------------------------------------------------------------------------- kinds


class BinaryOptions(NamedTuple):
    reduction: str
    num_threads: int | None


def _scale(sv: Saved) -> float:
    return 1.0 / sv.g.numel() if sv.opts.reduction == "mean" else 1.0


def _weight(sv: Saved, dtype) -> torch.Tensor:
    w = sv.w1 if sv.w1 is not None else torch.ones((), dtype=dtype)
    return _scale(sv) * w


class _BCEWithLogits(Kind):
    name = "binary_cross_entropy_with_logits"
    rows = False
    weights = ("weight", "pos_weight")
    options = BinaryOptions
    target_differentiable = True

    def numpy_args(self, target, w1, w2, o):
        return (_np(target),), dict(weight=_np(w1), pos_weight=_np(w2), reduction=o.reduction,
                                    num_threads=o.num_threads)

    def _terms(self, sv: Saved):
        """(sigmoid(x), d G / d target per element, pos_weight or None)."""
        s = torch.sigmoid(sv.x.to(sv.g.dtype))
        pw = sv.w2
        dgdt = -torch.ones_like(s) if pw is None else (pw - 1) * s - pw
        return s, dgdt, pw

    def hvp(self, sv: Saved, u: torch.Tensor):
        s, dgdt, pw = self._terms(sv)
        w = _weight(sv, u.dtype)
        k = 1.0 if pw is None else pw * sv.target + 1 - sv.target
        return w * k * s * (1 - s) * u, w * dgdt * u

    def target_grad(self, sv: Saved) -> torch.Tensor:
        x = sv.x.to(sv.g.dtype)
        if sv.w2 is None:
            return _weight(sv, x.dtype) * -x
        return _weight(sv, x.dtype) * (F.logsigmoid(-x) - sv.w2 * F.logsigmoid(x))

    def target_jvp(self, sv: Saved, t_dot: torch.Tensor) -> torch.Tensor:
        return _weight(sv, t_dot.dtype) * self._terms(sv)[1] * t_dot


_BCE_EPS = 1e-12  # PyTorch's clamp of p (1 - p) in binary_cross_entropy's derivatives


class _BCE(Kind):
    name = "binary_cross_entropy"
    rows = False
    weights = ("weight",)
    options = BinaryOptions
    target_differentiable = True

    def numpy_args(self, target, w1, w2, o):
        return (_np(target),), dict(weight=_np(w1), reduction=o.reduction,
                                    num_threads=o.num_threads)

    def raise_value_error(self, exc, x, target, opts):
        if isinstance(exc, ValueError):
            what = "input" if not ((x >= 0) & (x <= 1)).all() else "target"
            raise RuntimeError(f"all elements of {what} should be between 0 and 1") from None

    def hvp(self, sv: Saved, u: torch.Tensor):
        # PyTorch's second derivatives of binary_cross_entropy (its eps placement).
        p, y, w = sv.x.to(sv.g.dtype), sv.target, _weight(sv, u.dtype)
        num = p * p - 2 * p * y + y
        hx = num / ((p + _BCE_EPS).pow(2) * (1 - p + _BCE_EPS).pow(2))
        ht = -1 / ((1 - p) * p).clamp_min(_BCE_EPS)
        return w * hx * u, w * ht * u

    def target_grad(self, sv: Saved) -> torch.Tensor:
        p = sv.x.to(sv.g.dtype)
        return _weight(sv, p.dtype) * -torch.logit(p)

    def target_jvp(self, sv: Saved, t_dot: torch.Tensor) -> torch.Tensor:
        p = sv.x.to(sv.g.dtype)
        return _weight(sv, p.dtype) * -t_dot / ((1 - p) * p).clamp_min(_BCE_EPS)


class FocalBinaryOptions(NamedTuple):
    alpha: float
    gamma: float
    reduction: str
    num_threads: int | None


def _pow_pos(m: torch.Tensor, e: float) -> torch.Tensor:
    """``m**e`` where m > 0, else 0 (the terms it multiplies vanish there)."""
    pos = m > 0
    return torch.where(pos, torch.where(pos, m, torch.ones_like(m)).pow(e),
                       torch.zeros_like(m))


class _SigmoidFocal(Kind):
    name = "sigmoid_focal_loss"
    rows = False
    options = FocalBinaryOptions

    def numpy_args(self, target, w1, w2, o):
        return (_np(target),), dict(alpha=o.alpha, gamma=o.gamma, reduction=o.reduction,
                                    num_threads=o.num_threads)

    def hvp(self, sv: Saved, u: torch.Tensor):
        # loss = a_t * ce * m**gamma, m = 1 - p_t; second derivative in x, elementwise.
        o, x, y = sv.opts, sv.x.to(sv.g.dtype), sv.target
        g = o.gamma
        p = torch.sigmoid(x)
        ps = p * (1 - p)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        m = p * (1 - y) + (1 - p) * y
        dm, one2y = ps * (1 - 2 * y), 1 - 2 * y
        d2m = one2y * ps * (1 - 2 * p)
        h = ps * _pow_pos(m, g) if g else ps
        if g:
            h = h + 2 * g * (p - y) * dm * _pow_pos(m, g - 1)
            h = h + g * ce * d2m * _pow_pos(m, g - 1)
            if g != 1:
                h = h + g * (g - 1) * ce * dm * dm * _pow_pos(m, g - 2)
        a = o.alpha * y + (1 - o.alpha) * (1 - y) if o.alpha >= 0 else 1.0
        return _scale(sv) * a * h * u, None


BCE_WITH_LOGITS = register(_BCEWithLogits(), "_BCEWithLogitsFunction")
BCE = register(_BCE(), "_BCEFunction")
SIGMOID_FOCAL = register(_SigmoidFocal(), "_SigmoidFocalFunction")


# --------------------------------------------------------------------------- helpers


def _check_pair(input, target, op: str) -> None:
    check_tensor(input, "input")
    check_tensor(target, "target")
    check_floating(input, op)


def _broadcast_weight(weight, input: torch.Tensor, op: str, arg: str, dtype):
    """`weight` checked as PyTorch broadcasts it against the input, in `dtype`."""
    if weight is None:
        return None
    check_tensor(weight, arg)
    check_not_differentiable(weight, op, arg)
    full = torch.broadcast_shapes(weight.shape, input.shape)  # RuntimeError if incompatible
    if full != input.shape:
        raise RuntimeError(f"output with shape {list(input.shape)} doesn't match the "
                           f"broadcast shape {list(full)}")
    weight = weight.detach()
    return weight if weight.dtype == dtype else weight.to(dtype)


def _pos_weight(pos_weight, input: torch.Tensor, dtype):
    pw = _broadcast_weight(pos_weight, input, "binary_cross_entropy_with_logits", "pos_weight",
                           dtype)
    if pw is not None and any(d != 1 for d in pw.shape[:-1]):
        raise NotImplementedError(
            f"xent.torch.binary_cross_entropy_with_logits: pos_weight must broadcast along the "
            f"last dimension only (shape (C,), (1,) or with leading 1s); got "
            f"{list(pw.shape)}")
    return pw


def _finish(loss: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return loss if loss.dtype == dtype else loss.to(dtype)


# --------------------------------------------------------------------------- functions

# Docstring sections of binary_cross_entropy(_with_logits).
_PIECES = {
    "weight_reduction": """\
weight : Tensor, optional
    Broadcast against the input (a constant).
size_average, reduce : bool, optional
    Deprecated, as in PyTorch.
reduction : {"mean", "sum", "none"}, optional
    As in PyTorch.""",
    "threads_returns_raises": """\
num_threads : int, optional
    OpenMP threads for xent.

Returns
-------
Tensor
    0-d, or the input's shape for ``"none"``.

Raises
------
ValueError
    A target whose shape differs from the input's; an invalid reduction.""",
}



def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
    *,
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.binary_cross_entropy_with_logits`` on CPU.

    Elementwise over any shape; differentiable to any order in `input` and
    `target`.

    Parameters
    ----------
    input : Tensor
        Logits of any shape.
    target : Tensor
        Floating targets of the input's shape (differentiable, as in PyTorch).
    {weight_reduction}
    pos_weight : Tensor, optional
        Weight of positive examples, broadcast along the last dimension (a
        constant; shapes that broadcast along other dimensions raise
        NotImplementedError).
    inplace_backward : bool, optional
        See :func:`cross_entropy`.
    {threads_returns_raises}
    RuntimeError
        A non-floating target, weights that do not broadcast to the input's
        shape or that require grad.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.randn(3, 4, requires_grad=True)
    >>> y = torch.rand(3, 4)
    >>> ref = torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    >>> torch.allclose(xt.binary_cross_entropy_with_logits(x, y), ref)
    True
    """
    reduction = reduction_arg(size_average, reduce, reduction)
    _check_pair(input, target, "binary_cross_entropy_with_logits")
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.size()}) must be the same as input size "
                         f"({input.size()})")
    if not target.dtype.is_floating_point:
        raise RuntimeError(f"result type {scalar_name(input.dtype)} can't be cast to the "
                           f"desired output type {scalar_name(target.dtype)}")
    out_dtype = torch.promote_types(input.dtype, target.dtype)
    x = input if input.dtype == out_dtype else input.to(out_dtype)
    cdt = compute_dtype(out_dtype)
    w = _broadcast_weight(weight, input, "binary_cross_entropy_with_logits", "weight", cdt)
    pw = _pos_weight(pos_weight, input, cdt)
    t = target if target.dtype == cdt else target.to(cdt)
    loss = run_loss(BCE_WITH_LOGITS, x, t, w, pw, opts=BinaryOptions(reduction, num_threads),
                    inplace=inplace_backward)
    return _finish(loss, out_dtype)


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.binary_cross_entropy`` on CPU tensors.

    ``-w * (t * log(p) + (1 - t) * log(1 - p))`` elementwise, each log clamped
    at -100 as PyTorch does; the gradient is PyTorch's
    ``w * (p - t) / max(p * (1 - p), 1e-12)`` and the second derivatives are
    PyTorch's formulas too.  Differentiable in `input` and `target`.

    Parameters
    ----------
    input : Tensor
        Probabilities in [0, 1], any shape.
    target : Tensor
        Targets in [0, 1] of the input's shape and dtype.
    {weight_reduction}
    {threads_returns_raises}
    RuntimeError
        Values outside [0, 1] (or NaN), a target of another dtype, weights that do
        not broadcast to the input's shape or that require grad.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> p = torch.tensor([0.2, 0.9, 0.5], requires_grad=True)
    >>> t = torch.tensor([0.0, 1.0, 1.0])
    >>> loss = xt.binary_cross_entropy(p, t)
    >>> torch.allclose(loss, torch.nn.functional.binary_cross_entropy(p, t))
    True
    """
    reduction = reduction_arg(size_average, reduce, reduction)
    _check_pair(input, target, "binary_cross_entropy")
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({target.size()}) that is different to the input size "
            f"({input.size()}) is deprecated. Please ensure they have the same size.")
    if target.dtype != input.dtype:
        raise RuntimeError(f"Found dtype {scalar_name(target.dtype)} but expected "
                           f"{scalar_name(input.dtype)}")
    cdt = compute_dtype(input.dtype)
    w = _broadcast_weight(weight, input, "binary_cross_entropy", "weight", cdt)
    t = target if target.dtype == cdt else target.to(cdt)
    loss = run_loss(BCE, input, t, w, opts=BinaryOptions(reduction, num_threads))
    return _finish(loss, input.dtype)


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    *,
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torchvision.ops.sigmoid_focal_loss`` on CPU tensors.

    Differentiable to any order in `inputs`; `targets` are constants (a
    target that requires grad raises RuntimeError).

    Parameters
    ----------
    inputs : Tensor
        Logits of any shape.
    targets : Tensor
        Binary (floating) targets of the same shape.
    alpha : float, optional
        Weight of the positive class in ``[0, 1]``; ``alpha < 0`` disables it.
    gamma : float >= 0, optional
        Focusing parameter.
    reduction : {"none", "mean", "sum"}, optional
        Default ``"none"`` as in torchvision.
    inplace_backward : bool, optional
        See :func:`cross_entropy`.
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        The input's shape for ``"none"``, else 0-d.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.randn(3, 4, requires_grad=True)
    >>> y = (torch.rand(3, 4) > 0.5).float()
    >>> xt.sigmoid_focal_loss(x, y).shape
    torch.Size([3, 4])
    """
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported "
                         f"reduction modes: 'none', 'mean', 'sum'")
    _check_pair(inputs, targets, "sigmoid_focal_loss")
    if targets.shape != inputs.shape:
        raise ValueError(f"Target size ({targets.size()}) must be the same as input size "
                         f"({inputs.size()})")
    check_not_differentiable(targets, "sigmoid_focal_loss", "targets")
    cdt = compute_dtype(inputs.dtype)
    t = targets.detach().to(cdt)
    opts = FocalBinaryOptions(float(alpha), float(gamma), reduction, num_threads)
    loss = run_loss(SIGMOID_FOCAL, inputs, t, opts=opts, inplace=inplace_backward)
    return _finish(loss, inputs.dtype)


fill_doc(binary_cross_entropy_with_logits, binary_cross_entropy, **_PIECES)
