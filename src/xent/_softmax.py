"""logsumexp, softmax and log_softmax."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._docs import fill_doc
from ._half import is_half, kernel_array
from ._kernels import _core
from ._threads import _resolve
from ._validation import as_float_array, finish_output, normalize_axis, output_for

__all__ = ["logsumexp", "softmax", "log_softmax"]


def _rows_last(x: np.ndarray, axis: int) -> np.ndarray:
    """`x` with `axis` moved last, C-contiguous (a copy only if axis is not last)."""
    if axis == x.ndim - 1:
        return x
    return np.ascontiguousarray(np.moveaxis(x, axis, -1))


def logsumexp(
    x: ArrayLike,
    axis: int = -1,
    keepdims: bool = False,
    *,
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Log of the sum of exponentials along an axis, computed stably.

    ``logsumexp(x) = m + log(sum(exp(x - m)))`` with ``m = max(x)``, evaluated
    in one pass over memory per row (running maximum, chunk by chunk).

    Parameters
    ----------
    x : array_like
        Real floating-point input. float32 and float64 are computed natively;
        float16 and ``ml_dtypes.bfloat16`` are read as they are, computed in
        float32 and returned in the input dtype (within 1 ulp).
    axis : int, optional
        Axis to reduce (default: the last, which is the fast path; any other
        axis costs one transposed copy).
    keepdims : bool, optional
        Keep the reduced axis with length 1.
    out : ndarray, optional
        C-contiguous, writable array of the result's shape and dtype.
    {num_threads}

    Returns
    -------
    ndarray
        ``x.shape`` without `axis` (or with length 1 there if `keepdims`).
        `out` if it was given.

    Raises
    ------
    TypeError
        If `x` is not of a real floating dtype.
    ValueError
        If `out` is not a C-contiguous writable array of the result's shape and dtype.
    numpy.exceptions.AxisError
        If `axis` is out of range.

    Notes
    -----
    As ``torch.logsumexp``: a row holding ``+inf`` (and no NaN) gives ``+inf``,
    a row of all ``-inf`` gives ``-inf``, and a row holding NaN gives NaN.  An
    empty axis gives ``-inf`` (NumPy/SciPy's convention).  float32 exponentials
    are summed in float32 lanes over chunks of 2048 elements and the chunk sums
    in float64.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -np.inf]])
    >>> xent.logsumexp(x)
    array([   3.40760596, 1000.69314718])
    >>> xent.logsumexp(x, axis=0, keepdims=True).shape
    (1, 3)
    """
    arr = as_float_array(x, "x", half=True)
    nt = _resolve(num_threads)
    scalar = arr.ndim == 0
    if scalar:
        arr = arr.reshape(1)
    ax = normalize_axis(axis, arr.ndim)
    rows = _rows_last(arr, ax)
    if scalar:
        shape: tuple = ()
    elif keepdims:
        shape = arr.shape[:ax] + (1,) + arr.shape[ax + 1 :]
    else:
        shape = arr.shape[:ax] + arr.shape[ax + 1 :]
    dest, out, (rows,) = output_for(out, shape, arr.dtype, (), (rows,))
    c = rows.shape[-1]
    n = math.prod(rows.shape[:-1])  # not reshape(-1, c): that fails when c == 0
    if is_half(arr.dtype):  # the kernel writes float32, rounded once here
        lse = np.empty(dest.shape, np.float32)
        _core.rows("logsumexp", kernel_array(rows.reshape(n, c)), lse, nt)
        with np.errstate(over="ignore"):
            dest[...] = lse
    else:
        _core.rows("logsumexp", rows.reshape(n, c), dest, nt)
    return finish_output(dest, out)


def _softmax_impl(x, axis, out, num_threads, log: bool):
    op = "log_softmax" if log else "softmax"
    arr = as_float_array(x, "x", half=True)
    nt = _resolve(num_threads)
    scalar = arr.ndim == 0
    work = arr.reshape(1) if scalar else arr
    ax = normalize_axis(axis, work.ndim)
    if ax == work.ndim - 1:
        dest, out, _ = output_for(out, arr.shape, arr.dtype, (arr,))
        c = work.shape[-1]
        n = math.prod(work.shape[:-1])  # not reshape(-1, c): that fails when c == 0
        _core.rows(op, kernel_array(work.reshape(n, c)), kernel_array(dest), nt)
        return finish_output(dest, out)
    # another axis: the kernel works in place on a private last-axis copy
    dest, out, _ = output_for(out, arr.shape, arr.dtype)
    rows = np.moveaxis(work, ax, -1).copy(order="C")
    flat = rows.reshape(math.prod(rows.shape[:-1]), rows.shape[-1])
    _core.rows(op, kernel_array(flat), kernel_array(flat), nt)
    np.copyto(dest.reshape(work.shape), np.moveaxis(rows, -1, ax))
    return finish_output(dest, out)


def softmax(
    x: ArrayLike,
    axis: int = -1,
    *,
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Softmax along an axis: ``exp(x - max) / sum(exp(x - max))``.

    {softmax_sections}

    Notes
    -----
    As in ``torch.softmax``, a row holding ``+inf``, NaN, or only ``-inf``
    gives NaN in that row.  A softmax over an empty axis is empty.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> xent.softmax(np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    """
    return _softmax_impl(x, axis, out, num_threads, log=False)


def log_softmax(
    x: ArrayLike,
    axis: int = -1,
    *,
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Log of the softmax along an axis, computed as ``(x - max) - log(sum(exp(x - max)))``.

    {softmax_sections}

    Notes
    -----
    The order of operations is PyTorch's (``x - max`` first), which keeps
    ``log_softmax`` exact for the largest element.  Rows holding ``+inf``,
    NaN, or only ``-inf`` give NaN, as in ``torch.log_softmax``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> xent.log_softmax(np.array([[0.0, 0.0], [0.0, -np.inf]]))
    array([[-0.69314718, -0.69314718],
           [ 0.        ,        -inf]])
    """
    return _softmax_impl(x, axis, out, num_threads, log=True)


fill_doc(logsumexp, softmax, log_softmax)
