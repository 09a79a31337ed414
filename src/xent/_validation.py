"""Input conversion and validation shared by every public function.

Everything the kernels rely on for memory safety is established here (and
re-checked cheaply at the Cython boundary): C-contiguous float32/float64
buffers, matching shapes and dtypes, writable outputs.
"""

from __future__ import annotations

import operator

import numpy as np

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    from numpy import AxisError

_REDUCTIONS = ("none", "mean", "sum")


def as_float_array(x, name: str = "logits") -> np.ndarray:
    """Return `x` as a C-contiguous float32/float64 array (float16 -> float32).

    Integer, bool, complex and object inputs raise TypeError naming the dtype.
    Other real floating types (longdouble) are computed in float64.
    """
    arr = np.asarray(x)
    dt = arr.dtype
    if dt == np.float32 or dt == np.float64:
        pass
    elif dt == np.float16:
        arr = arr.astype(np.float32)
    elif dt.kind == "f":
        arr = arr.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must be a real floating-point array (float16/32/64), got dtype {dt}"
        )
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def normalize_axis(axis, ndim: int) -> int:
    """Validate `axis` against `ndim` (NumPy's AxisError on failure)."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise AxisError(axis, ndim)
    return axis % ndim


def check_out(out, shape: tuple, dtype: np.dtype, name: str = "out") -> np.ndarray:
    """Check a user-supplied output buffer: exact shape and dtype, C-contiguous, writable."""
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable")
    return out


def same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two C-contiguous arrays of equal size start at the same address."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.nbytes == b.nbytes
    )


def check_reduction(reduction, allowed=_REDUCTIONS) -> str:
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}; got {reduction!r}")
    return reduction
