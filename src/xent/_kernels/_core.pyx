# cython: freethreading_compatible = True
"""Cython boundary of xent: picks the dtype, releases the GIL, calls C kernels.

Private module.  Public functions live in ``xent``; every wrapper here expects
arrays already validated by the Python layer (C-contiguous, matching dtypes and
shapes) and re-checks only what memory safety needs.
"""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc  # per-call scratch rows (_softmax.pxi, _ce.pxi)


cdef extern from "xent_runtime.h" nogil:
    int xent_openmp_enabled()
    int xent_omp_max_threads()
    const char *xent_build_cc()
    const char *xent_build_flags()


cdef extern from "xent_kernels.h" nogil:
    int xent_simd_supported()
    int xent_simd_active()
    int xent_simd_select(int level)
    int xent_team_placement_select(int on)
    int xent_team_placement_active()
    int xent_fork_guard_install()


SIMD_NAMES = ("scalar", "avx2", "avx512")
FORK_GUARD = bool(xent_fork_guard_install())  # see xent_team.c


def openmp_enabled():
    """True if the extension was built with OpenMP."""
    return bool(xent_openmp_enabled())


def omp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return xent_omp_max_threads()


def build_info():
    """Compiler and flags the extension was built with."""
    return {
        "compiler": xent_build_cc().decode("utf-8", "replace"),
        "flags": xent_build_flags().decode("utf-8", "replace"),
    }


def simd_supported():
    """Name of the best SIMD path this CPU and build support."""
    return SIMD_NAMES[xent_simd_supported()]


def simd_active():
    """Name of the SIMD path in use."""
    return SIMD_NAMES[xent_simd_active()]


def simd_select(str name):
    """Select a SIMD path by name (clamped to what the CPU supports); returns the active one.

    Not thread-safe with concurrent kernel calls: meant for import time and tests.
    """
    if name not in SIMD_NAMES:
        raise ValueError(f"unknown SIMD path {name!r}; expected one of {SIMD_NAMES}")
    return SIMD_NAMES[xent_simd_select(SIMD_NAMES.index(name))]


def placement_select(bint on):
    """Turn worker placement on or off (see xent_team.c); returns the active setting.

    Meant for import time and tests, like simd_select.
    """
    return bool(xent_team_placement_select(on))


def placement_active():
    """True if each team's workers are kept off the calling thread's CPU."""
    return bool(xent_team_placement_active())


include "_softmax.pxi"
include "_variants.pxi"
include "_ce.pxi"
include "_scores.pxi"
