"""``python -m xent bench`` and its harness in benchmarks/: structure, no timing assertions."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import measure, report, schema
from benchmarks.cases import OPS, build_cases
from benchmarks.harness import run_case
from benchmarks.lab import isolation
from benchmarks.providers import Call, Provider, XentProvider

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None
TINY = measure.SETTINGS["tiny"]


def _xent_cli(*args, cwd=ROOT, **env):
    return subprocess.run([sys.executable, "-m", "xent", "bench", *args], cwd=cwd,
                          env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600, check=False)


def test_cli_tiny_writes_table_json_and_csv(tmp_path):
    js, cs = tmp_path / "b.json", tmp_path / "b.csv"
    proc = _xent_cli("--scale", "tiny", "--json", str(js), "--csv", str(cs))
    assert proc.returncode == 0, proc.stderr
    for word in ("xent ms", "copy ms", "read ms", "xent/copy", "xent/read", "logsumexp",
                 "softmax", "Machine:", "simd_active"):
        assert word in proc.stdout
    assert "[main " in proc.stderr  # one progress line per case
    doc = json.loads(js.read_text())
    assert doc["schema_version"] == schema.SCHEMA_VERSION and doc["scale"] == "tiny"
    rows = doc["rows"]
    assert all(list(r) == list(schema.FIELDS) for r in rows)
    ids = {c.id for c in build_cases("tiny")}
    xent_rows = [r for r in rows if r["provider"] == "xent"]
    assert {r["case_id"] for r in xent_rows} == ids
    for r in xent_rows:
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
        assert r["time_vs_copy"] > 0 and r["time_vs_read"] > 0 and r["xent_speedup"] == 1
        assert r["simd"] == doc["machine"]["simd_active"] and r["cpu_model"]
    assert {r["provider"] for r in rows} >= {"xent", "numpy", "copy", "read"}
    with open(cs, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    # tiny has no rival rows (compile times): the run says so, or why a rival is skipped
    tiny_note = next((ln for ln in proc.stdout.splitlines() if ln.startswith("note: tiny: ")), "")
    for rival, module in (("torch.compile", "torch"), ("jax", "jax")):
        assert (rival in tiny_note and "time 0 of the" in tiny_note) or (
            f"note: {rival} skipped: {module} is not installed" in proc.stdout)
    assert not any(r["provider"] in ("torch.compile", "jax") for r in rows)
    if HAVE_TORCH:
        envs = {r["malloc_env"] for r in rows if r["provider"] == "torch"}
        assert envs == {"tuned", "default"} and "torch(def) ms" in proc.stdout
        assert [m["library"] for m in doc["mixing"]] == ["torch", "xent"]
        assert doc["machine"]["malloc_env"] == isolation.TUNED_ENV
    assert "| xent ms |" in report.markdown(report.load([str(js), str(cs)]))


def test_cli_explains_when_no_harness_is_found(tmp_path):
    proc = _xent_cli("--quick", cwd=tmp_path, XENT_BENCH_DIR=str(tmp_path))
    assert proc.returncode == 2
    assert "benchmarks/ folder of a xent source checkout" in proc.stderr


def test_cli_help_is_the_harness_help():
    proc = _xent_cli("--help")
    assert proc.returncode == 0 and "--csv" in proc.stdout and "--quick" in proc.stdout


@pytest.mark.parametrize("scale", ["full", "quick", "tiny"])
def test_cases_unique_and_quick_keeps_every_op(scale):
    cases = build_cases(scale)
    assert len({c.id for c in cases}) == len(cases)
    assert {c.op for c in cases} == set(OPS)
    assert {c.n_threads for c in cases} == {1, 2}


@pytest.mark.parametrize("scale", ["full", "quick"])
def test_plan_isolates_big_inputs_in_full_mode(scale):
    cases = build_cases(scale)
    groups = isolation.plan(cases, scale)
    assert [i for g in groups for i in g] == [c.id for c in cases]
    if scale == "quick":
        assert len(groups) == 1  # one worker: quick must start fast
    else:
        big = {c.id for c in cases if c.nbytes >= isolation.BIG_BYTES}
        assert big and all(len(g) == 1 for g in groups if big & set(g))


def test_measure_restores_before_every_call():
    state = {"restored": False, "runs": 0}

    def restore():
        state["restored"] = True

    def run():
        assert state["restored"], "in-place call without a restore first"
        state["restored"] = False
        state["runs"] += 1

    res = measure.measure({"a": Call(run, restore), "b": Call(lambda: None)}, TINY)
    assert res["a"].n_samples == res["b"].n_samples >= TINY.min_reps
    assert state["runs"] == res["a"].n_samples + 1  # plus the warm-up call
    assert res["a"].inner == 1
    assert all(t.min_ms <= t.p20_ms <= t.median_ms <= t.p80_ms for t in res.values())


def _scripted(monkeypatch, durations):
    """Make every warm-up call 'last' the next of `durations` (then the last one)."""
    calls = []

    def call_once(call, pause):
        calls.append(1)
        return durations[min(len(calls), len(durations)) - 1]

    monkeypatch.setattr(measure, "_call_once", call_once)
    return calls


def test_settle_warms_up_until_two_calls_agree(monkeypatch):
    st = measure.SETTINGS["quick"]
    calls = _scripted(monkeypatch, [0.1, 0.25, 0.15, 0.02, 0.02, 0.02])
    measure.settle(Call(lambda: None), st)
    assert len(calls) == 5
    calls = _scripted(monkeypatch, [0.02])
    measure.settle(Call(lambda: None), st, times=[0.021])  # the check's call counts
    assert len(calls) == 1
    calls = _scripted(monkeypatch, [0.01, 0.03] * 20)
    measure.settle(Call(lambda: None), dataclasses.replace(st, settle_calls=4))
    assert len(calls) == 4


class _Plugin(Provider):
    """A provider as a plugin would write one: compile step, outputs for the check."""

    name = "plugin"

    def __init__(self, wrong=False):
        self.wrong = wrong

    def handles(self, case):
        return case.op == "logsumexp"

    def prepare(self, case, data):
        scale = 1.01 if self.wrong else 1.0
        return Call(lambda: np.logaddexp.reduce(data.x, axis=-1) * scale,
                    compile=lambda: time.sleep(0.01),
                    outputs=lambda r: {"logsumexp": r}, what="np.logaddexp.reduce")


def test_plugin_is_compiled_checked_and_timed():
    case = next(c for c in build_cases("tiny") if c.op == "logsumexp")
    res = run_case(case, [XentProvider(), _Plugin(), _Plugin(wrong=True)], TINY)
    assert set(res["timings"]) == {"xent", "plugin"}  # the wrong one is not timed
    assert res["compile_ms"]["plugin"] >= 10 and "xent" not in res["compile_ms"]
    (skip,) = res["skipped"]
    assert skip["provider"] == "plugin" and "disagrees with the reference" in skip["reason"]


def test_report_text_pivots_rows():
    case = build_cases("tiny")[0]
    res = {"timings": {n: dict(median_ms=m, p20_ms=m, p80_ms=m, min_ms=m, n_samples=1, inner=1)
                       for n, m in (("xent", 1.0), ("torch", 3.0), ("copy", 0.5))},
           "compile_ms": {}, "what": {}, "kind": {"copy": "yardstick"}}
    ctx = schema.run_context({"simd_active": "avx2"}, "tiny", "t0", "tuned")
    rows = schema.case_rows(case, res, ctx, {"xent": 1.0, "copy": 0.5})
    head, (line,) = report.table(rows)
    cells = dict(zip(head, line))
    assert cells["vs torch"] == "3.00x" and cells["xent/copy"] == "2.00"
    assert cells["xent/read"] == "-" and cells["simd"] == "avx2"
    assert schema.finite({"a": [float("inf"), np.float32(1.0)]}) == {"a": [None, 1.0]}
    assert report.SCHEMA_VERSION == schema.SCHEMA_VERSION


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.lab.plot import write_plot

    case = build_cases("tiny")[0]
    res = {"timings": {n: dict(median_ms=m, p20_ms=m, p80_ms=m, min_ms=m, n_samples=1, inner=1)
                       for n, m in (("xent", 1.0), ("torch", 3.0))},
           "compile_ms": {}, "what": {}, "kind": {}}
    rows = schema.case_rows(case, res, schema.run_context({}, "tiny", "t0", "tuned"), {})
    write_plot(rows, str(tmp_path / "p.png"), "title")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
