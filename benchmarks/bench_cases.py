"""pytest-benchmark suite: every case x provider of ``python -m xent bench``.

Each test prepares the provider's call outside the timed region, times its
compile step (if any) into ``extra_info``, checks its outputs against the
float64 reference, then lets pytest-benchmark time it (an in-place call has
its input restored before every round, untimed).  Groups are case ids, so
providers of a case are compared side by side::

    pytest benchmarks -k "logsumexp and float32" --benchmark-autosave
"""

from __future__ import annotations

import pytest

from .cases import make_data
from .checks import expected
from .harness import describe, prepare
from .providers import ProviderSkip

ROUNDS = 7


def bench_case(benchmark, case, provider):
    why = provider.unavailable()
    if why:
        pytest.skip(f"{provider.name}: {why}")
    data = make_data(case)
    try:
        ready = prepare(provider, case, data, expected(case, data))
    except ProviderSkip as exc:
        pytest.skip(f"{provider.name}: {exc}")
    call = ready.call
    benchmark.group = case.id
    benchmark.extra_info.update(provider=provider.name, what=describe(call), n_rows=case.n_rows,
                                n_cols=case.n_cols, dtype=case.dtype,
                                n_threads=case.n_threads, compile_ms=ready.compile_ms)
    rounds = 1 if getattr(benchmark, "disabled", False) else ROUNDS
    if call.restore:
        benchmark.pedantic(call.run, setup=call.restore, rounds=rounds, warmup_rounds=1)
    else:
        benchmark(call.run)
