"""Providers and parametrization of the pytest-benchmark suites.

Every ``bench_*`` function takes the fixtures ``provider`` (``xent``, ``numpy``
or ``torch``), ``dtype``, ``shape`` and ``threads``; the shapes come from
``shapes.py`` (``FULL`` normally, ``SMALL`` with ``--benchmark-disable`` or
``--bench-size=small``).  A provider that is not installed, or an xent function
that does not exist yet, skips the test with a message saying so.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from shapes import DTYPES, PROVIDERS, THREADS, shape_id, shapes_for

if importlib.util.find_spec("pytest_benchmark") is None:  # pragma: no cover

    @pytest.fixture
    def benchmark():
        """Stand-in when the plugin is missing: skip with a notice."""
        pytest.skip("pytest-benchmark is not installed (pip install pytest-benchmark)")


def pytest_addoption(parser):
    parser.addoption(
        "--bench-size",
        choices=("auto", "small", "full"),
        default=os.environ.get("XENT_BENCH_SIZE", "auto"),
        help="shapes of the benchmarks: small (smoke test), full, or auto (small when "
        "--benchmark-disable is given, else full); env XENT_BENCH_SIZE",
    )


def _small(config) -> bool:
    size = config.getoption("--bench-size")
    if size == "auto":
        return bool(config.getoption("benchmark_disable", default=False))
    return size == "small"


def pytest_report_header(config):
    return f"xent benchmarks: {'small' if _small(config) else 'full'} shapes"


def pytest_generate_tests(metafunc):
    """Parametrize provider x (dtype, shape) x threads from shapes.py."""
    family = getattr(metafunc.module, "FAMILY", None)
    names = metafunc.fixturenames
    if "provider" in names:
        metafunc.parametrize("provider", PROVIDERS)
    if family and "shape" in names and "dtype" in names:
        small = _small(metafunc.config)
        pairs = [(d, s) for d in DTYPES for s in shapes_for(family, small, d)]
        metafunc.parametrize(
            ("dtype", "shape"), pairs, ids=[f"{d}-{shape_id(s)}" for d, s in pairs]
        )
    if "threads" in names:
        metafunc.parametrize("threads", THREADS, ids=[f"t{n}" for n in THREADS])


@pytest.fixture
def lib(provider, threads):
    """The provider's module, with its thread count set (restored afterwards)."""
    if provider == "xent":
        import xent

        yield xent
    elif provider == "numpy":
        yield np
    elif provider == "torch":
        if importlib.util.find_spec("torch") is None:
            pytest.skip("provider torch is not installed")
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        yield torch
        torch.set_num_threads(old)
    else:  # pragma: no cover
        raise ValueError(provider)
