"""Load the compiled core with a short OpenMP spin-wait.

libgomp's idle threads spin for a while after each parallel region before they
sleep.  Spinning threads take cores away from the caller's other work (and
from another OpenMP runtime in the same process, such as PyTorch's), so unless
the user configured the runtime, xent's runtime is loaded with a short spin.
Measured on the development VM: after a pause of 20 ms, starting a two-thread
region cost about 80 microseconds with this spin count and 1.1 ms with 20000;
the cost grew in proportion to the spin count.  (Where a woken worker is placed
is handled separately, in _kernels/xent_team.c.)
The environment is restored right after loading: this affects only an OpenMP
runtime loaded at that moment, never one loaded later by another library.
"""

from __future__ import annotations

import os

_SPIN_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SPINCOUNT = "1000"


def load_core():
    if any(k in os.environ for k in _SPIN_KEYS):
        from ._kernels import _core
        return _core
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        from ._kernels import _core
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)
    return _core
