"""Private helpers shared by the loss variants (_focal, _binary, _distill, _metrics)."""

from __future__ import annotations

import math

import numpy as np

from ._kernels import _core
from ._validation import as_float_array, check_out, grad_output_rows, real_scalar, same_buffer

EMPTY = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}


def class_logits(logits, name: str = "logits") -> np.ndarray:
    """Logits of shape (..., C) with C >= 1 (losses and metrics over C == 0 raise)."""
    x = as_float_array(logits, name)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (classes on the last axis)")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: the class axis is empty (C == 0)")
    return x


def nonneg(value, name: str) -> float:
    v = real_scalar(value, name)
    if not v >= 0 or math.isinf(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def positive(value, name: str) -> float:
    v = real_scalar(value, name)
    if not v > 0 or math.isinf(v):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def grad_args(grad_output, reduction: str, lead_shape: tuple, dtype):
    """(scale, rows array, has_rows) for the kernels."""
    scale, rows = grad_output_rows(grad_output, reduction, lead_shape, dtype)
    if rows is None:
        return scale, EMPTY[np.dtype(dtype)], False
    return scale, rows.reshape(-1), True


def grad_dest(out, shape: tuple, dtype, *inputs: np.ndarray, others=()):
    """Where the kernel writes the gradient: `out` itself unless it overlaps an input badly.

    Returns (dest, out): `out` is the checked user buffer or None.  An exact alias
    of one of `inputs` (same start and size) is fine: kernels read each such
    element before writing it.  Any overlap with a partial view of `inputs`, or
    with one of `others` (targets, weights, grad_output ...), makes the kernel
    write to a temporary that is copied into `out` afterwards.
    """
    if out is None:
        return np.empty(shape, dtype=dtype), None
    check_out(out, shape, dtype)
    for a in inputs:
        if np.may_share_memory(out, a) and not same_buffer(out, a):
            return np.empty(shape, dtype=dtype), out
    for a in others:
        if a is not None and np.may_share_memory(out, a):
            return np.empty(shape, dtype=dtype), out
    return out, out


def finish_grad(dest: np.ndarray, out):
    if out is not None and dest is not out:
        np.copyto(out, dest)
        return out
    return dest


def reduce_total(total: float, denom: float, reduction: str, dtype):
    """NumPy scalar of the computation dtype for "mean"/"sum"/"batchmean"."""
    if reduction == "sum":
        return dtype.type(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(np.float64(total) / np.float64(denom))


def simd_name() -> str:  # pragma: no cover - debugging aid
    return _core.simd_active()
