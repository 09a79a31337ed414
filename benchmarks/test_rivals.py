"""The rival providers (torch.compile, JAX) in the harness: checked, compiled, reported, skipped.

Fast: torch.compile is replaced by a stand-in here (a real compile takes
10-20 s in a fresh process; ``XENT_BENCH_COMPILE=1`` runs one), and the JAX
tests skip when JAX is not installed (CI does not install it).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os

import numpy as np
import pytest

from . import providers, report, run, schema
from .cases import HALF, SCALES, build_cases, with_threads
from .harness import run_case, usable
from .lab import isolation
from .measure import SETTINGS
from .rivals import RIVAL_OPS, JaxProvider, TorchCompileProvider

TINY = SETTINGS["tiny"]
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")


def _tiny(op: str, dtype: str = "float32", n_threads: int = 2):
    """A tiny case of `op` that the rivals time (no tiny row has ``rivals`` set)."""
    case = next(c for c in build_cases("tiny") if c.op == op and not c.options)
    return dataclasses.replace(case, dtype=dtype, n_threads=n_threads, rivals=True)


def _rows(case, res):
    ctx = schema.run_context({"simd_active": "avx2"}, "tiny", "t0", "tuned")
    base = {n: t["median_ms"] for n, t in res["timings"].items()}
    return schema.case_rows(case, res, ctx, base)


# --------------------------------------------------------------------------- scales


def test_rival_rows_per_scale():
    for scale in SCALES:
        cases = build_cases(scale)
        assert len({c.id for c in cases}) == len(cases)
        flagged = [c for c in cases if c.rivals]
        if scale in ("full", "rivals"):  # every row but issue 18's 16-bit ones
            assert flagged == [c for c in cases if c.dtype not in HALF]
        elif scale == "quick":  # issue 17's rows, float64 and one thread among them
            assert len(flagged) == 7 and {c.op for c in flagged} <= set(RIVAL_OPS)
            assert {c.dtype for c in flagged} == {"float32", "float64"}
            assert {c.n_threads for c in flagged} == {1, 2}
        else:
            assert not flagged  # tiny: the tests would pay torch.compile's start-up
    cases = build_cases("rivals")
    assert len(cases) == 36 and {c.n_threads for c in cases} == {1, 2}
    assert all(TorchCompileProvider().handles(c) and JaxProvider().handles(c) for c in cases)


def test_with_threads_moves_every_case_to_each_count():
    quick = build_cases("quick")
    one = with_threads(quick, [1])
    assert {c.n_threads for c in one} == {1} and len(one) == len(quick) - 1  # t1 row merges
    both = with_threads(quick, [2, 1])
    assert len({c.id for c in both}) == len(both) == 2 * len(quick) - 2
    assert with_threads(quick, None) == quick


def test_jax_handles_no_options_torch_compile_does():
    case = next(c for c in build_cases("full") if c.options == "all")
    assert TorchCompileProvider().handles(case) and not JaxProvider().handles(case)
    scores = next(c for c in build_cases("full") if c.op == "token_scores")
    assert not TorchCompileProvider().handles(scores) and not JaxProvider().handles(scores)


def test_plan_gives_each_thread_count_its_workers():
    cases = build_cases("quick")
    groups = isolation.plan(cases, "quick", by_threads=True)
    assert [{c.n_threads for c in cases if c.id in g} for g in groups] == [{2}, {1}]
    assert sorted(i for g in groups for i in g) == sorted(c.id for c in cases)
    parts = [{"results": [{"id": i} for i in g], "mixing": [], "notices": [], "about": {},
              "machine": {"peak_rss_gb": 1.0}} for g in groups]
    merged = run._merge(parts, [c.id for c in cases])
    assert [r["id"] for r in merged["results"]] == [c.id for c in cases]


@pytest.mark.parametrize("jax_installed", [True, False])
def test_thread_workers_only_when_jax_will_run(monkeypatch, jax_installed):
    monkeypatch.setattr(JaxProvider, "installed", lambda self: jax_installed)
    args = argparse.Namespace(providers=None)
    assert run.thread_workers(args, build_cases("quick")) == jax_installed
    assert not run.thread_workers(args, build_cases("tiny"))  # no rival rows
    assert not run.thread_workers(argparse.Namespace(providers="xent,torch"),
                                  build_cases("quick"))


# --------------------------------------------------------------------------- absent


def test_absent_rivals_are_skipped_with_a_note(monkeypatch):
    real = importlib.util.find_spec
    gone = {"torch", "jax"}
    monkeypatch.setattr(providers.importlib.util, "find_spec",
                        lambda name, *a: None if name in gone else real(name, *a))
    notices: list = []
    names = [p.name for p in usable(providers.all_providers(), notices)]
    assert "torch.compile" not in names and "jax" not in names and "xent" in names
    assert "torch.compile skipped: torch is not installed (pip install -e '.[rivals]')" in notices
    assert "jax skipped: jax is not installed (pip install -e '.[rivals]')" in notices
    assert not JaxProvider().installed()


# --------------------------------------------------------------------------- torch.compile


class _FakeCompile:
    """Stands in for ``torch.compile``: the eager function, its result scaled by `scale`."""

    def __init__(self, scale=1.0):
        self.scale, self.calls = scale, []

    def __call__(self, fn, dynamic=None):
        self.calls.append(dynamic)
        return lambda *args: fn(*args) * self.scale


@needs_torch
@pytest.mark.parametrize("op", ["logsumexp", "fused"])
def test_torch_compile_is_compiled_checked_and_timed(monkeypatch, op):
    import torch

    fake = _FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    case = _tiny(op)
    res = run_case(case, [providers.XentProvider(), TorchCompileProvider()], TINY)
    assert set(res["timings"]) == {"xent", "torch.compile"} and not res["skipped"]
    assert fake.calls == [False]  # dynamic=False, one compile for the case
    assert res["compile_ms"]["torch.compile"] > 0 and "xent" not in res["compile_ms"]
    what = res["what"]["torch.compile"]
    assert what.startswith("torch.compile: ") and what.endswith("]")
    rows = _rows(case, res)
    row = next(r for r in rows if r["provider"] == "torch.compile")
    assert row["compile_ms"] == res["compile_ms"]["torch.compile"]
    assert list(row) == list(schema.FIELDS)
    head, body = report.compile_table(rows)
    assert head[-1] == "torch.compile compile s" and len(body) == 1
    assert "torch.compile" in report.compile_text(rows)
    head, (line,) = report.table(rows)
    assert dict(zip(head, line))["vs best"] == dict(zip(head, line))["vs torch.compile"]


@needs_torch
def test_torch_compile_wrong_result_is_not_timed(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "compile", _FakeCompile(scale=1.01))
    res = run_case(_tiny("logsumexp"), [providers.XentProvider(), TorchCompileProvider()], TINY)
    assert set(res["timings"]) == {"xent"}
    (skip,) = res["skipped"]
    assert skip["provider"] == "torch.compile" and "disagrees" in skip["reason"]


@needs_torch
@pytest.mark.skipif(not os.environ.get("XENT_BENCH_COMPILE"),
                    reason="a real torch.compile takes 10-20 s cold: set XENT_BENCH_COMPILE=1")
def test_real_torch_compile_matches_the_reference():
    case = _tiny("fused", "float64")
    res = run_case(case, [TorchCompileProvider()], TINY)
    assert not res["skipped"] and res["compile_ms"]["torch.compile"] > 0
    assert res["what"]["torch.compile"].endswith(("[cold: Inductor generated code]",
                                                  "[warm: from the on-disk cache]"))


# --------------------------------------------------------------------------- JAX


@pytest.fixture
def jax_started():
    why = JaxProvider().unavailable()
    if why:
        pytest.skip(f"jax: {why}")
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError as exc:  # installed but broken: still no JAX to test
        pytest.skip(f"jax or optax does not import: {exc}")
    JaxProvider().set_threads(2)  # the first start in this process fixes the pool
    return JaxProvider.pool


@pytest.mark.parametrize(("op", "dtype"), [("fused", "float32"), ("fused", "float64"),
                                           ("loss", "float32"), ("logsumexp", "float64")])
def test_jax_is_compiled_checked_and_timed(jax_started, op, dtype):
    case = _tiny(op, dtype, n_threads=jax_started)
    res = run_case(case, [providers.XentProvider(), JaxProvider()], TINY)
    assert set(res["timings"]) == {"xent", "jax"}, res["skipped"]
    assert res["compile_ms"]["jax"] >= 0
    assert f"XLA CPU pool: {jax_started} thread(s)" in res["what"]["jax"]
    row = next(r for r in _rows(case, res) if r["provider"] == "jax")
    assert row["compile_ms"] == res["compile_ms"]["jax"]


def test_jax_float32_stays_float32(jax_started):
    case = _tiny("fused", "float32", n_threads=jax_started)
    call = JaxProvider().prepare(case, _data(case))
    call.compile()
    loss, grad = call.run()
    assert loss.dtype == np.float32 and grad.dtype == np.float32


def test_jax_other_thread_count_is_skipped_with_the_reason(jax_started):
    case = _tiny("logsumexp", n_threads=jax_started + 1)
    res = run_case(case, [providers.XentProvider(), JaxProvider()], TINY)
    assert set(res["timings"]) == {"xent"}
    (skip,) = res["skipped"]
    assert skip["provider"] == "jax" and "fixed when JAX started" in skip["reason"]


def _data(case):
    from .cases import make_data

    return make_data(case)
