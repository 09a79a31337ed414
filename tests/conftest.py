"""Shared fixtures: dtype, SIMD path, thread counts, a seeded RNG.

Tests import the *installed* xent; tests/ itself is on sys.path through pytest's
``pythonpath`` option (pyproject.toml), for ``helpers`` and ``reference``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import DTYPES, SIMD_ORDER, use_simd

import xent
from xent._kernels import _core

DEFAULT_SEED = 20261122
#: The path XENT_SIMD (or the CPU) chose; every test must leave it active.
SESSION_SIMD = _core.simd_active()
#: Paths the `simd` fixture runs: all three, or those up to a valid XENT_SIMD
#: (a path the CPU lacks is still collected, then skipped).
_ENV_SIMD = os.environ.get("XENT_SIMD", "").strip().lower()
_SIMD_PARAMS = SIMD_ORDER[: SIMD_ORDER.index(_ENV_SIMD) + 1] if _ENV_SIMD in SIMD_ORDER else (
    SIMD_ORDER)


#: ``slow`` tests (huge arrays, full Jacobians, inductor compiles) run only when asked.
RUN_SLOW = os.environ.get("XENT_RUN_SLOW") == "1"


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``slow`` unless XENT_RUN_SLOW=1."""
    if RUN_SLOW:
        return
    skip = pytest.mark.skip(reason="slow; set XENT_RUN_SLOW=1 to run")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


def pytest_report_header(config):
    seed = os.environ.get("XENT_TEST_SEED", DEFAULT_SEED)
    return (
        f"xent {xent.__version__} from {os.path.dirname(xent.__file__)}; "
        f"simd {_core.simd_active()} (best {_core.simd_supported()}); "
        f"openmp {'on' if xent.openmp_enabled() else 'off'}, "
        f"{xent.get_num_threads()} threads; XENT_TEST_SEED={seed}"
    )


@pytest.fixture(autouse=True)
def _session_simd_restored():
    """A test that switches SIMD paths must restore the session's (an XENT_SIMD=scalar
    run would otherwise test the later files on another path)."""
    yield
    assert _core.simd_active() == SESSION_SIMD, "the test left another SIMD path active"


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """float32 and float64, the two natively computed dtypes."""
    return np.dtype(request.param)


@pytest.fixture(params=_SIMD_PARAMS)
def simd(request):
    """Run the test on one SIMD path (skipped if the CPU lacks it), then restore the
    session's path."""
    with use_simd(request.param) as name:
        yield name


@pytest.fixture(params=[1, 2, None], ids=lambda n: f"nt{n}")
def num_threads(request):
    """Explicit single thread, a two-thread team, and the package default."""
    return request.param


@pytest.fixture
def restore_threads():
    """Restore xent's default team size after a test that sets it (the value the call
    path reads, ``DEFAULT[0]``, and the forked-child flag included)."""
    from xent import _threads as th

    saved = (th._default_threads, th.DEFAULT[0], th._in_forked_child)
    yield
    th._default_threads, th.DEFAULT[0], th._in_forked_child = saved


@pytest.fixture
def rng():
    """A NumPy Generator seeded from XENT_TEST_SEED (default fixed)."""
    return np.random.default_rng(int(os.environ.get("XENT_TEST_SEED", DEFAULT_SEED)))
