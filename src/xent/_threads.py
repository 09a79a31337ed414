"""Thread-count policy: the package default, per-call resolution, and fork safety."""

from __future__ import annotations

import operator
import os

from ._kernels import _core

_OPENMP = _core.openmp_enabled()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _max_threads() -> int:
    """OpenMP's default team size (honours OMP_NUM_THREADS); 1 without OpenMP."""
    return _core.omp_max_threads() if _OPENMP else 1


#: Largest team xent starts: the CPUs this process may run on, or OpenMP's default
#: team size if OMP_NUM_THREADS asks for more.  Larger requests are capped to it.
THREAD_CAP = max(_usable_cpus(), _max_threads()) if _OPENMP else 1
#: Requests above this are refused (the kernels take a C int); others above the cap are capped.
_REQUEST_LIMIT = (1 << 31) - 1

_default_threads = min(_max_threads(), THREAD_CAP)  # set_num_threads changes it
_in_forked_child = False  # True in a child of os.fork() until set_num_threads is called
#: The team size of a call with num_threads=None: [get_num_threads()] (a list, so the
#: call path reads it without a function call).
DEFAULT = [_default_threads]


class ThreadCountError(ValueError, TypeError):
    """A `num_threads` that is not an integer (a ValueError and, for old callers, a TypeError)."""


def set_num_threads(n: int) -> None:
    """Set the default number of threads used by every xent kernel.

    Parameters
    ----------
    n : int or None
        A positive number of OpenMP threads, or ``-1`` or ``None`` for OpenMP's
        default team (which honours ``OMP_NUM_THREADS``).  Requests above the number of CPUs
        this process may run on are capped to it (see Notes).  Ignored (reported
        as 1) when xent was built without OpenMP.

    Raises
    ------
    ValueError
        If `n` is not a positive integer or -1 (for a non-integer the exception
        is also a TypeError), or does not fit a C int.

    Notes
    -----
    Teams never exceed ``max(CPUs this process may use, OpenMP's default team
    size)``: a larger team only adds threads that compete for the same cores
    (and each costs a stack).  In a process started with ``os.fork()`` (a
    ``multiprocessing`` fork pool, a pre-forking server) xent runs on one
    thread per call until the child calls ``set_num_threads`` (a per-call
    ``num_threads`` also applies); see "Threads and processes" in the README.

    Examples
    --------
    >>> import xent
    >>> old = xent.get_num_threads()
    >>> xent.set_num_threads(1)
    >>> xent.get_num_threads()
    1
    >>> xent.set_num_threads(old)
    """
    global _default_threads, _in_forked_child
    _default_threads = _validated(-1 if n is None else n)
    _in_forked_child = False
    DEFAULT[0] = _default_threads


def get_num_threads() -> int:
    """Return the default number of threads of xent kernels.

    Initially OpenMP's default team size (which honours ``OMP_NUM_THREADS``),
    capped at the CPUs this process may use; 1 in a forked child until it calls
    :func:`set_num_threads`; always 1 when xent was built without OpenMP.

    Returns
    -------
    int
        The team size used by calls with ``num_threads=None``.

    Examples
    --------
    >>> import xent
    >>> xent.get_num_threads() >= 1
    True
    """
    return 1 if _in_forked_child else _default_threads


def _validated(n) -> int:
    """A user's thread count (not None) as a team size in [1, THREAD_CAP]."""
    if type(n) is not int:
        if isinstance(n, bool) or not hasattr(n, "__index__"):
            raise ThreadCountError(
                f"num_threads must be a positive integer, -1 or None, got {n!r}"
            )
        n = operator.index(n)
    if n == -1:
        return min(_max_threads(), THREAD_CAP)
    if not 1 <= n <= _REQUEST_LIMIT:
        raise ValueError(
            f"num_threads must be a positive integer below 2**31, -1 or None, got {n}"
        )
    return min(n, THREAD_CAP)


def _resolve(n) -> int:
    """Turn a call's ``num_threads`` into the team size to use."""
    if n is None:
        return DEFAULT[0]
    if type(n) is int and 1 <= n <= THREAD_CAP:
        return n
    return _validated(n)


def _after_fork_in_child() -> None:
    global _in_forked_child
    _in_forked_child = True
    DEFAULT[0] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
