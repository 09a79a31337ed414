"""Runtime configuration: SIMD path selection and show_config()."""

from __future__ import annotations

import os
import platform
import sys
import warnings

import numpy as np

from ._kernels import _core
from ._version import __version__

_SIMD_ENV = "XENT_SIMD"


def _apply_simd_env() -> None:
    """Honour XENT_SIMD=scalar|avx2|avx512 (a request above the CPU's level is clamped)."""
    want = os.environ.get(_SIMD_ENV, "").strip().lower()
    _core.simd_active()  # initialise dispatch to the best path (else kernels run scalar)
    if not want:
        return
    if want not in _core.SIMD_NAMES:
        warnings.warn(
            f"{_SIMD_ENV}={want!r} is not one of {', '.join(_core.SIMD_NAMES)}; ignored",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _core.simd_select(want)


_PIN_ENV = "XENT_PIN_THREADS"


def _apply_placement_env() -> None:
    """Keep workers off the caller's CPU only if the user opts in with XENT_PIN_THREADS=1.

    Off by default: OpenMP's workers are shared with other libraries in the process
    (PyTorch), whose regions would then run on the restricted workers too.
    """
    want = os.environ.get(_PIN_ENV, "").strip().lower()
    if want in ("", "0", "false", "no", "off"):
        on = False
    elif want in ("1", "true", "yes", "on"):
        on = True
    else:
        warnings.warn(f"{_PIN_ENV}={want!r} is not 0 or 1; ignored", RuntimeWarning, stacklevel=3)
        on = False
    _core.placement_select(on)


def openmp_enabled() -> bool:
    """Return True if xent was built with OpenMP.

    Returns
    -------
    bool
        False for a serial build (no OpenMP found, or ``XENT_DISABLE_OPENMP=1``).

    Examples
    --------
    >>> import xent
    >>> isinstance(xent.openmp_enabled(), bool)
    True
    """
    return _core.openmp_enabled()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def config_dict() -> dict:
    """Everything show_config() prints, as a dict (used by the benchmark report)."""
    from ._threads import get_num_threads

    info = _core.build_info()
    return {
        "xent": __version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "compiler": info["compiler"],
        "flags": info["flags"],
        "openmp": _core.openmp_enabled(),
        "omp_max_threads": _core.omp_max_threads(),
        "num_threads": get_num_threads(),
        "simd_supported": _core.simd_supported(),
        "simd_active": _core.simd_active(),
        "worker_placement": _core.placement_active(),
    }


def show_config() -> None:
    """Print the xent build and runtime configuration.

    Shows the versions of xent, NumPy and Python, the compiler and flags the
    extension was built with, whether OpenMP is on and how many threads xent
    uses, and the SIMD path chosen at run time (``XENT_SIMD`` can force a lower
    one).  Include this output in bug reports.

    Examples
    --------
    >>> import xent
    >>> xent.show_config()  # doctest: +ELLIPSIS
    xent ...
    """
    c = config_dict()
    print(f"xent {c['xent']}")
    print(f"  python          {c['python']} ({c['platform']})")
    print(f"  numpy           {c['numpy']}")
    print(f"  cpu             {c['cpu']} ({c['cpu_count']} logical CPUs)")
    print(f"  compiler        {c['compiler']}")
    print(f"  flags           {c['flags']}")
    print(f"  openmp          {'on' if c['openmp'] else 'off (serial build)'}")
    print(f"  threads         {c['num_threads']} (OpenMP default {c['omp_max_threads']})")
    print(f"  simd            {c['simd_active']} (best supported: {c['simd_supported']}; "
          f"force with {_SIMD_ENV}=scalar|avx2|avx512)")
    placement = ("kept off the calling thread's CPU" if c["worker_placement"]
                 else "left to the OS / OpenMP")
    print(f"  workers         {placement} ({_PIN_ENV}=0|1)")
