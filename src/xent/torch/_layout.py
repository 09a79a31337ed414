"""PyTorch's class-on-dim-1 layout for the classification losses, with its checks.

``(C,)``, ``(N, C)`` and ``(N, C, d1, ...)`` inputs become xent's classes-last
layout by views only (``unsqueeze`` / ``movedim``); autograd maps gradients back.
Shape and dtype mistakes raise what ``torch.nn.functional.nll_loss`` /
``cross_entropy`` raise for them, with the same messages.
"""

from __future__ import annotations

import torch

from ._common import check_not_differentiable, check_tensor, scalar_name


def classes_last(x: torch.Tensor) -> torch.Tensor:
    """(C,) -> (1, C); (N, C) as is; (N, C, d1, ...) -> (N, d1, ..., C) (views)."""
    if x.dim() == 1:
        return x.unsqueeze(0)
    return x.movedim(1, -1) if x.dim() > 2 else x


def _target_batch(target: torch.Tensor) -> int:
    return target.shape[0] if target.dim() > 0 else 0


def class_target(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class indices checked against `input` as nll_loss does, in the classes-last layout."""
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise RuntimeError(
            f"expected target dtype to be an integer type (class indices), but got "
            f"{scalar_name(target.dtype)}")
    if input.dim() == 1:
        if target.dim() == 0:
            return target.reshape(1)
        if target.dim() > 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if target.shape[0] != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: "
                             f"{target.shape[0]}")
        return target
    if target.dim() == 0 or target.shape[0] != input.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target "
                         f"batch_size ({_target_batch(target)}).")
    if input.dim() == 2:
        if target.dim() != 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        return target
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise RuntimeError(f"Expected target size {list(expected)}, got {list(target.shape)}")
    return target


def prob_target(input: torch.Tensor, target: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Class probabilities of `input`'s shape, classes last, in `dtype` (differentiable)."""
    if target.shape != input.shape:
        raise RuntimeError(
            f"Expected floating point target (class probabilities) of the input's shape "
            f"{list(input.shape)}, got {list(target.shape)}")
    t = classes_last(target)
    return t if t.dtype == dtype else t.to(dtype)


def class_weight(weight, input: torch.Tensor, op: str, dtype: torch.dtype, *,
                 strict_dtype: bool = True):
    """Per-class weights of shape (C,) in `dtype`, checked as nll_loss does."""
    if weight is None:
        return None
    check_tensor(weight, "weight")
    check_not_differentiable(weight, op, "weight")
    c = input.shape[0] if input.dim() == 1 else input.shape[1]
    if weight.dim() != 1 or weight.shape[0] != c:
        raise RuntimeError(
            f"weight tensor should be defined either for all {c} classes or no classes but got "
            f"weight tensor of shape: {list(weight.shape)}")
    if strict_dtype and weight.dtype != input.dtype:
        raise RuntimeError(f"expected scalar type {scalar_name(input.dtype)} but found "
                           f"{scalar_name(weight.dtype)}")
    weight = weight.detach()
    return weight if weight.dtype == dtype else weight.to(dtype)


def n_classes(input: torch.Tensor) -> int:
    return input.shape[0] if input.dim() == 1 else input.shape[1]


def target_out_of_bounds(target: torch.Tensor, c: int, ignore_index: int) -> IndexError:
    """PyTorch's IndexError for the first target outside [0, C) that is not ignore_index."""
    flat = target.detach().reshape(-1).long()
    bad = ((flat < 0) | (flat >= c)) & (flat != ignore_index)
    pos = int(bad.nonzero()[0, 0]) if bad.any() else 0
    return IndexError(f"Target {int(flat[pos])} is out of bounds. (xent.torch: flat position "
                      f"{pos} of the target, {c} classes, ignore_index={ignore_index})")
