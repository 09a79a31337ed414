"""Thread-count policy: the package default and per-call resolution."""

from __future__ import annotations

import operator

from ._kernels import _core

_default_threads: int | None = None  # None: OpenMP's default (honours OMP_NUM_THREADS)
_OPENMP = _core.openmp_enabled()


def _max_threads() -> int:
    return _core.omp_max_threads() if _core.openmp_enabled() else 1


def set_num_threads(n: int) -> None:
    """Set the default number of threads used by every xent kernel.

    Parameters
    ----------
    n : int
        Number of OpenMP threads, ``>= 1``. A negative value counts back from
        the maximum (``-1`` means all of OpenMP's default team). Ignored
        (reported as 1) when xent was built without OpenMP.

    Raises
    ------
    TypeError
        If `n` is not an integer.
    ValueError
        If `n` is 0.

    Notes
    -----
    On Linux, the workers of each team are kept off the CPU the calling thread
    runs on (the caller itself is never pinned); ``XENT_PIN_THREADS=0`` turns
    this off.  See "How threads are chosen" in the README.

    Examples
    --------
    >>> import xent
    >>> old = xent.get_num_threads()
    >>> xent.set_num_threads(1)
    >>> xent.get_num_threads()
    1
    >>> xent.set_num_threads(old)
    """
    global _default_threads
    _default_threads = _resolve(n)


def get_num_threads() -> int:
    """Return the default number of threads of xent kernels.

    Initially OpenMP's default team size, which honours ``OMP_NUM_THREADS``;
    always 1 when xent was built without OpenMP.

    Examples
    --------
    >>> import xent
    >>> xent.get_num_threads() >= 1
    True
    """
    if not _core.openmp_enabled():
        return 1
    return _default_threads if _default_threads is not None else _max_threads()


def _resolve(n) -> int:
    """Turn a user's ``num_threads`` into a positive thread count."""
    if n is None:
        if _default_threads is not None:
            return _default_threads
        return get_num_threads()
    if isinstance(n, bool):
        raise TypeError(f"num_threads must be an int or None, got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"num_threads must be an int or None, got {type(n).__name__}") from None
    if n == 0:
        raise ValueError("num_threads must be nonzero (use a positive count, or -1 for all)")
    if not _core.openmp_enabled():
        return 1
    if n < 0:
        return max(1, _max_threads() + 1 + n)
    return n
