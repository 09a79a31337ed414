"""16-bit logits: float16 and bfloat16 (``ml_dtypes.bfloat16``, an optional dependency).

``logsumexp``, ``softmax``, ``log_softmax``, the ``cross_entropy`` family and
``token_scores`` read 16-bit logits directly: the C kernels widen blocks of rows
to float32 in cache and narrow the (n_rows, n_cols) results back with
round-to-nearest-even (xent_half.h).  Their array results have the input's dtype
and their scalar reductions are float32.  The other losses (:func:`in_float32`)
compute 16-bit input in float32 and round their array results (gradients,
``"none"`` losses) once to the input's dtype; their scalars are float32.

bfloat16 has no buffer-protocol format, so its arrays reach the Cython boundary
as their bits (a uint16 view); float16 arrays go as they are.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


def is_bfloat16(dt: np.dtype) -> bool:
    """True for ``ml_dtypes.bfloat16`` (recognised without importing ml_dtypes)."""
    return (dt.kind == "V" and dt.itemsize == 2 and dt.name == "bfloat16"
            and getattr(dt.type, "__module__", "").startswith("ml_dtypes"))


def is_half(dt: np.dtype) -> bool:
    """True for the 16-bit logits the kernels read natively (native-order float16, bfloat16)."""
    return dt == _F16 or is_bfloat16(dt)


def compute_dtype(dt: np.dtype) -> np.dtype:
    """The dtype a call computes in: float32 for 16-bit logits, else `dt`."""
    return _F32 if is_half(dt) else dt


def kernel_array(a: np.ndarray | None) -> np.ndarray | None:
    """`a` as the Cython boundary takes it: bfloat16 as its uint16 bits."""
    if a is not None and is_bfloat16(a.dtype):
        return a.view(np.uint16)
    return a


def _half_input(x) -> bool:
    return type(x) is np.ndarray and x.dtype.itemsize == 2 and is_half(x.dtype)


def _rounded_into(grad: np.ndarray, out, dtype: np.dtype) -> np.ndarray:
    """`grad` (float32) rounded to `dtype`, in `out` if given (checked as ``out=`` is)."""
    if out is None:
        with np.errstate(over="ignore"):  # beyond the 16-bit range: inf, as the kernels give
            return grad.astype(dtype)
    if (type(out) is not np.ndarray or out.dtype != dtype or out.shape != grad.shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        got = (f"{type(out).__name__}" if type(out) is not np.ndarray else
               f"shape {out.shape}, dtype {out.dtype}, C-contiguous {out.flags.c_contiguous}, "
               f"writeable {out.flags.writeable}")
        raise ValueError(f"out must be a C-contiguous, writable array of shape {grad.shape} "
                         f"and dtype {dtype}, got {got}")
    with np.errstate(over="ignore"):
        np.copyto(out, grad, casting="unsafe")  # written last: out may alias any input
    return out


def in_float32(run: Callable, logits_at: int = 0, out_keyword: bool = False) -> Callable:
    """`run`, an internal ``(loss, grad)`` function of a loss without a 16-bit kernel,
    for 16-bit logits (argument `logits_at`): computed in float32, the gradient and a
    ``"none"`` loss rounded once to the logits' dtype, scalar losses float32.  `run`'s
    ``out`` is its last positional argument, or with `out_keyword` its (optional)
    ``out`` keyword.  Other inputs pass through unchanged (one type test)."""

    @functools.wraps(run)
    def call(*args, **kwargs):
        x = args[logits_at]
        if not _half_input(x):
            return run(*args, **kwargs)
        dt = x.dtype
        args = (*args[:logits_at], x.astype(np.float32), *args[logits_at + 1:])
        if out_keyword:
            out, kwargs = kwargs.get("out"), {**kwargs, "out": None}
        else:
            out, args = args[-1], (*args[:-1], None)
        loss, grad = run(*args, **kwargs)
        if type(loss) is np.ndarray:  # "none" (0-d for one row); scalars are np.generic
            with np.errstate(over="ignore"):
                loss = loss.astype(dt)
        return loss, None if grad is None else _rounded_into(grad, out, dt)

    return call
