"""pytest-benchmark parametrization: every case of a scale x every provider handling it.

The cases and providers are those of ``python -m xent bench``; the scale is
``tiny`` with ``--benchmark-disable`` (the CI smoke run), else ``quick``,
unless ``--bench-scale`` (or ``XENT_BENCH_SCALE``) says otherwise.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from .cases import SCALES, build_cases
from .providers import all_providers

if importlib.util.find_spec("pytest_benchmark") is None:  # pragma: no cover

    @pytest.fixture
    def benchmark():
        """Stand-in when the plugin is missing: skip with a notice."""
        pytest.skip("pytest-benchmark is not installed (pip install pytest-benchmark)")


def pytest_addoption(parser):
    parser.addoption("--bench-scale", choices=("auto", *SCALES),
                     default=os.environ.get("XENT_BENCH_SCALE", "auto"),
                     help="cases of the benchmark: tiny, quick or full; auto (default) is "
                     "tiny with --benchmark-disable, else quick (env XENT_BENCH_SCALE)")


def bench_scale(config) -> str:
    scale = config.getoption("--bench-scale")
    if scale != "auto":
        return scale
    return "tiny" if config.getoption("benchmark_disable", default=False) else "quick"


def pytest_report_header(config):
    return f"xent benchmarks: {bench_scale(config)} cases"


def pytest_generate_tests(metafunc):
    """Parametrize (case, provider) over the scale's cases and the providers handling them."""
    if {"case", "provider"} <= set(metafunc.fixturenames):
        pairs = [(c, p) for c in build_cases(bench_scale(metafunc.config))
                 for p in all_providers() if p.handles(c)]
        metafunc.parametrize(("case", "provider"), pairs,
                             ids=[f"{c.id.replace('|', '-')}-{p.name}" for c, p in pairs])
