"""Shared fixtures: dtype, SIMD path, thread counts, a seeded RNG.

Tests import the *installed* xent (this file never touches sys.path for the
source tree); it only makes the sibling helper modules (helpers, reference)
importable under ``--import-mode=importlib``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from helpers import DTYPES, SIMD_ORDER  # noqa: E402

import xent  # noqa: E402
from xent._kernels import _core  # noqa: E402

DEFAULT_SEED = 20261122
#: SIMD path active when the session starts (XENT_SIMD may have lowered it);
#: the `simd` fixture never goes above it and always restores it.
_SESSION_SIMD = _core.simd_active()
#: Paths the `simd` fixture runs: all three, or those up to a valid XENT_SIMD
#: (a path the CPU lacks is still collected, then skipped).
_ENV_SIMD = os.environ.get("XENT_SIMD", "").strip().lower()
_SIMD_PARAMS = SIMD_ORDER[: SIMD_ORDER.index(_ENV_SIMD) + 1] if _ENV_SIMD in SIMD_ORDER else (
    SIMD_ORDER
)


def pytest_report_header(config):
    seed = os.environ.get("XENT_TEST_SEED", DEFAULT_SEED)
    return (
        f"xent {xent.__version__} from {os.path.dirname(xent.__file__)}; "
        f"simd {_core.simd_active()} (best {_core.simd_supported()}); "
        f"openmp {'on' if xent.openmp_enabled() else 'off'}, "
        f"{xent.get_num_threads()} threads; XENT_TEST_SEED={seed}"
    )


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """float32 and float64, the two natively computed dtypes."""
    return np.dtype(request.param)


@pytest.fixture(params=_SIMD_PARAMS)
def simd(request):
    """Run the test on one SIMD path; skipped if the CPU lacks it."""
    name = request.param
    if SIMD_ORDER.index(name) > SIMD_ORDER.index(_core.simd_supported()):
        pytest.skip(f"CPU lacks the {name} path (best: {_core.simd_supported()})")
    before = _core.simd_active()
    got = _core.simd_select(name)
    assert got == name
    try:
        yield name
    finally:
        _core.simd_select(before)


@pytest.fixture(params=[1, 2, None], ids=lambda n: f"nt{n}")
def num_threads(request):
    """Explicit single thread, a two-thread team, and the package default."""
    return request.param


@pytest.fixture
def rng():
    """A NumPy Generator seeded from XENT_TEST_SEED (default fixed)."""
    seed = int(os.environ.get("XENT_TEST_SEED", DEFAULT_SEED))
    return np.random.default_rng(seed)
