"""Input conversion and validation shared by every public function.

Everything the kernels rely on for memory safety is established here (and
re-checked cheaply at the Cython boundary): C-contiguous float32/float64
buffers, matching shapes and dtypes, writable outputs.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ._half import compute_dtype, is_bfloat16, is_half

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    from numpy import AxisError

_REDUCTIONS = ("none", "mean", "sum")


def as_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``, refusing masked arrays (their masks would be silently dropped)."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; xent does not support masks (they would be "
            f"ignored): pass {name}.filled(value) or select the unmasked entries"
        )
    return np.asarray(x)


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def as_float_array(x, name: str = "logits", half: bool = False) -> np.ndarray:
    """Return `x` as a C-contiguous, native-endian float32/float64 array.

    float16 and bfloat16 (``ml_dtypes``) are kept as they are with `half` (the
    kernels that read them natively, see :mod:`xent._half`) and computed in
    float32 otherwise; other real floating types (longdouble) in float64, and
    non-native byte orders in the same precision.  Integer, bool, complex and
    object inputs raise TypeError naming the dtype.
    """
    arr = as_array(x, name)
    dt = arr.dtype
    if dt is _F32 or dt is _F64 or dt == _F32 or dt == _F64 or (half and is_half(dt)):
        if arr.flags.c_contiguous:
            return arr
        return np.ascontiguousarray(arr)
    if is_bfloat16(dt):
        return np.ascontiguousarray(arr, dtype=_F32)
    if dt.kind != "f":
        raise TypeError(
            f"{name} must be a real floating-point array (float16/32/64), got dtype {dt}"
        )
    if dt.itemsize == 4:
        target = _F32  # e.g. big-endian '>f4'
    elif dt.itemsize == 8:
        target = _F64
    elif dt.itemsize == 2:
        target = _F32  # float16 computes in float32
    else:
        target = _F64  # longdouble
    return np.ascontiguousarray(arr, dtype=target)


def class_logits(logits, name: str = "logits", half: bool = False) -> np.ndarray:
    """Logits of shape (..., C) with C >= 1 (losses and metrics over C == 0 raise)."""
    x = as_float_array(logits, name, half)
    if x.ndim == 0:
        raise ValueError(f"{name} is a 0-d array: it needs a class axis, shape (..., C)")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: the class axis is empty (C == 0)")
    return x


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


def output_for(out, shape: tuple, dtype, inplace=(), reads=()):
    """Where a kernel writes a result the caller may have asked to go to `out`.

    One overlap policy for every function, NumPy's ufunc rule: the result is as if
    every operand sharing memory with `out` had been copied before the call.

    - `inplace`: operands the kernel may overwrite element for element (it reads
      each element before writing it), i.e. the logits.  `out` being exactly one
      of them (same start and size) is the documented in-place form: no copy.
      `out` overlapping one of them in any other way makes the kernel write into
      a fresh array that is copied into `out` afterwards (:func:`finish_output`).
    - `reads`: every other array the kernel reads (None allowed).  One that may
      share memory with the array the kernel writes is replaced by a copy, so it
      is read as it was before the call.

    Returns ``(dest, out, reads)``: the array the kernel writes, the checked user
    array (or None), and `reads` with overlapping operands copied.
    """
    if out is None:
        return np.empty(shape, dtype=dtype), None, reads
    if inplace and out is inplace[0]:  # the documented in-place form: already the right array
        if not out.flags.writeable:
            raise ValueError("out must be writable")
    else:
        check_out(out, shape, dtype)
    dest = out
    for a in inplace:
        if a is not out and np.may_share_memory(out, a) and not same_buffer(out, a):
            dest = np.empty(shape, dtype=dtype)  # a partial overlap: compute aside
            break
    if dest is out:
        for r in reads:
            if r is not None and np.may_share_memory(out, r):
                reads = tuple(None if a is None else a.copy() if np.may_share_memory(out, a)
                              else a for a in reads)
                break
    return dest, out, reads


def finish_output(dest: np.ndarray, out):
    """The array to return: `out` (filled from `dest` if the kernel wrote aside) or `dest`."""
    if out is not None and dest is not out:
        np.copyto(out, dest)
        return out
    return dest


def reduce_loss(rows: np.ndarray, total: float, denom: float, reduction: str, dtype: np.dtype):
    """The loss a reduction asks for, in the computation dtype.

    ``"none"``: the per-row (or per-element) losses `rows` as `dtype` (also for
    16-bit `dtype`, rounded once from float64); ``"sum"``:
    `total`; ``"mean"`` / ``"batchmean"``: ``total / denom`` in float64 (NaN for
    0 / 0, as PyTorch), as a NumPy scalar of `dtype`.  The one reduction of every
    loss family.
    """
    if reduction == "none":
        with np.errstate(over="ignore"):  # a 16-bit dtype overflows to inf, as a cast does
            return rows.astype(dtype, copy=False)
    dtype = compute_dtype(dtype)  # 16-bit logits: a float32 scalar
    if reduction == "sum":
        return dtype.type(total)
    if denom != 0.0:
        return dtype.type(total / denom)
    with np.errstate(divide="ignore", invalid="ignore"):
        return dtype.type(np.float64(total) / np.float64(denom))


def check_reduction(reduction, allowed=_REDUCTIONS) -> str:
    if not isinstance(reduction, str) or reduction not in allowed:
        choices = ", ".join(map(repr, allowed))
        raise ValueError(f"reduction must be one of {choices}; got {reduction!r}")
    return reduction


def class_targets(target, lead_shape: tuple, *, name: str = "target",
                  n_classes: int | None = None) -> np.ndarray:
    """Integer class targets as a C-contiguous int64 array of shape `lead_shape`.

    Any integer dtype is accepted. Bool, complex, object and floating targets
    raise TypeError (callers that accept probabilities check for floating
    targets first). A shape other than `lead_shape` raises ValueError naming both.
    uint64 values beyond the int64 range raise IndexError (naming `n_classes` if given).
    """
    t = as_array(target, name)
    if t.dtype == np.int64 and t.flags.c_contiguous and t.shape == lead_shape:
        return t
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f":
            raise TypeError(
                f"{name} must hold integer class indices for this function; got floating "
                f"dtype {t.dtype} (probability targets are not supported here)"
            )
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.shape != tuple(lead_shape):
        raise ValueError(
            f"{name} has shape {t.shape}, expected {tuple(lead_shape)} "
            f"(logits.shape[:-1]) for logits of shape {tuple(lead_shape) + ('C',)}"
        )
    if t.dtype == np.uint64 and t.size and int(t.max()) > np.iinfo(np.int64).max:
        pos = int(np.argmax(t > np.iinfo(np.int64).max))
        raise IndexError(
            f"{name} {int(t.reshape(-1)[pos])} at flat position {pos} is out of range "
            f"for {'C' if n_classes is None else n_classes} classes"
        )
    return np.ascontiguousarray(t, dtype=np.int64)


def raise_target_error(t: np.ndarray, n_classes: int, ignore_index: int | None,
                       name: str = "target") -> None:
    """Raise the IndexError for the first out-of-range target (error path only)."""
    flat = t.reshape(-1)
    bad = (flat < 0) | (flat >= n_classes)
    if ignore_index is not None:
        bad &= flat != ignore_index
    if not bad.any():  # the kernel saw a value that is no longer there
        raise IndexError(
            f"{name} held a class index outside [0, {n_classes}) during the call, but not "
            f"after it: was another thread writing to the {name} array?"
        )
    pos = int(np.argmax(bad))
    raise IndexError(
        f"{name} {int(flat[pos])} at flat position {pos} is out of range for "
        f"{n_classes} classes (valid: 0..{n_classes - 1}"
        + (f", or ignore_index={ignore_index})" if ignore_index is not None else ")")
    )


def class_vector(w, n_classes: int, dtype, name: str = "weight") -> np.ndarray | None:
    """Per-class array of shape (C,) converted to `dtype`, or None."""
    if w is None:
        return None
    arr = as_array(w, name)
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.shape != (n_classes,):
        raise ValueError(f"{name} must have shape ({n_classes},) (one per class), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def real_scalar(value, name: str) -> float:
    """A real Python/NumPy number as float (TypeError otherwise, strings included)."""
    if type(value) is float:
        return value
    if (isinstance(value, (str, bytes, bytearray, bool, np.bool_, np.ma.MaskedArray))
            or np.ndim(value) != 0
            or getattr(getattr(value, "dtype", None), "kind", "f") not in "iuf"):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    return v


def nonneg(value, name: str) -> float:
    """A finite real number >= 0 (TypeError / ValueError otherwise)."""
    v = real_scalar(value, name)
    if not v >= 0 or math.isinf(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def positive(value, name: str) -> float:
    """A finite real number > 0 (TypeError / ValueError otherwise)."""
    v = real_scalar(value, name)
    if not v > 0 or math.isinf(v):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def integer_scalar(value, name: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def grad_output_rows(grad_output, reduction: str, lead_shape: tuple, dtype):
    """Normalise `grad_output` for a *_grad function.

    Returns ``(scalar, rows)``: for "mean"/"sum" a scalar and None; for "none"
    either a scalar (applies to every row) and None, or 1.0 and a C-contiguous
    array of shape `lead_shape` in `dtype`.
    """
    if type(grad_output) is float:
        return grad_output, None
    g = as_array(grad_output, "grad_output")
    if g.dtype.kind not in "iuf" or g.dtype.kind == "b":
        raise TypeError(f"grad_output must be real, got dtype {g.dtype}")
    if g.ndim == 0:
        return float(g), None
    if reduction != "none":
        raise ValueError(
            f"grad_output must be a scalar for reduction={reduction!r}, got shape {g.shape}"
        )
    if g.shape != tuple(lead_shape):
        raise ValueError(
            f"grad_output has shape {g.shape}, expected a scalar or {tuple(lead_shape)}"
        )
    return 1.0, np.ascontiguousarray(g, dtype=dtype)
