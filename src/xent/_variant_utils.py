"""Private helpers shared by the loss variants (_focal, _binary, _distill, _metrics)."""

from __future__ import annotations

import math

import numpy as np

from ._kernels import _core
from ._validation import as_float_array, grad_output_rows, real_scalar

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


def reduce_total(total: float, denom: float, reduction: str, dtype):
    """NumPy scalar of the computation dtype for "mean"/"sum"/"batchmean"."""
    if reduction == "sum":
        return dtype.type(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(np.float64(total) / np.float64(denom))


def simd_name() -> str:  # pragma: no cover - debugging aid
    return _core.simd_active()
