"""``python -m xent bench``: structure of its output (no timing assertions)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

import xent
from xent import _bench

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _env(**extra):
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def test_cli_quick_tiny_json(tmp_path):
    path = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "xent", "bench", "--quick", "--json", str(path)],
        env=_env(XENT_BENCH_TINY="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for word in (
        "op",
        "shape",
        "xent ms",
        "torch ms",
        "numpy ms",
        "copy ms",
        "% copy",
        "Machine:",
        "logsumexp",
        "softmax",
        "log_softmax",
    ):
        assert word in out
    assert "[main " in proc.stderr  # one progress line per case
    doc = json.loads(path.read_text())
    assert doc["schema"] == _bench.SCHEMA_VERSION
    assert doc["scale"] == "tiny"
    for key in ("cpu", "xent", "numpy", "simd_active", "openmp"):
        assert key in doc["machine"]
    ids = [r["id"] for r in doc["rows"]] + [s["id"] for s in doc["skipped"]]
    assert len(ids) == len(set(ids)) == len(_bench.build_cases("tiny"))
    ops = {r["key"] for r in doc["rows"]}
    assert {"logsumexp", "softmax", "log_softmax"} <= ops
    for r in doc["rows"]:
        assert r["xent_ms"] > 0 and r["copy_ms"] > 0
        assert r["pct_of_copy"] > 0 and r["xent_gbps"] > 0
        assert r["dtype"] in ("float32", "float64") and r["threads"] in (1, 2)
        assert set(r["samples"]) >= {"xent", "copy"}
    lse = next(r for r in doc["rows"] if r["key"] == "logsumexp")
    assert lse["numpy_ms"] > 0 and lse["speedup_vs_numpy"] > 0
    for name in ("cross_entropy_and_grad", "cross_entropy", "token_scores"):
        if not hasattr(xent, name):
            assert any(name in s["reason"] for s in doc["skipped"])
    if HAVE_TORCH:
        assert doc["machine"]["torch"]
        assert doc["machine"]["malloc_env"] == _bench.TUNED_ENV
        assert all(v is None for v in doc["default_env_machine"]["malloc_env"].values())
        assert lse["torch_ms"] > 0 and lse["torch_default_env_ms"] > 0
        assert [m["library"] for m in doc["mixing"]] == ["torch", "xent"]
        for m in doc["mixing"]:
            assert m["alone_ms"] > 0 and m["interleaved_ms"] > 0
            assert isinstance(m["within_10pct"], bool)
        assert "Mixing xent and torch" in out
    else:
        assert lse["torch_ms"] is None and doc["mixing"] == []


@pytest.mark.parametrize("scale", ["full", "quick", "tiny"])
def test_cases_ids_unique_and_every_op_kept(scale):
    cases = _bench.build_cases(scale)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    keys = {c.key for c in _bench.build_cases("full")}
    if scale != "full":
        keys -= _bench.FULL_ONLY_KEYS
    assert {c.key for c in cases} == keys
    assert all(c.traffic > 0 and c.nbytes > 0 for c in cases)


def test_measure_restores_before_every_call():
    state = {"restored": False, "runs": 0, "other": 0}

    def setup():
        state["restored"] = True

    def run():
        assert state["restored"], "in-place call without a restore first"
        state["restored"] = False
        state["runs"] += 1

    def other():
        state["other"] += 1

    st = _bench._SETTINGS["tiny"]
    res = _bench.measure({"a": _bench.Impl(run, setup), "b": _bench.Impl(other)}, st)
    assert set(res) == {"a", "b"}
    assert res["a"]["n"] == res["b"]["n"] >= st.min_reps
    assert state["runs"] == res["a"]["n"] + 1  # plus the warm-up call
    assert res["a"]["inner"] == 1
    for r in res.values():
        assert r["ms"] >= r["min_ms"] >= 0



def _scripted(durations):
    """An Impl whose successive calls last the given times (then the last one)."""
    calls = []

    def run():
        calls.append(1)
        time.sleep(durations[min(len(calls), len(durations)) - 1])

    return _bench.Impl(run), calls


def test_settle_warms_up_until_two_calls_agree():
    st = dataclasses.replace(_bench._SETTINGS["quick"], pause_s=0.0)
    # a slow settling phase (as PyTorch under the tuned malloc), then stable
    impl, calls = _scripted([0.1, 0.25, 0.15, 0.02, 0.02, 0.02])
    _bench._settle(impl, 0.0, st)
    assert len(calls) == 5
    # stable from the start: two calls
    impl, calls = _scripted([0.02])
    _bench._settle(impl, 0.0, st)
    assert len(calls) == 2
    # never stable: stops at the call cap
    impl, calls = _scripted([0.01, 0.03] * 20)
    _bench._settle(impl, 0.0, dataclasses.replace(st, settle_calls=4, settle_cap_s=60.0))
    assert len(calls) == 4
    # or at the time cap
    impl, calls = _scripted([0.05, 0.2] * 20)
    _bench._settle(impl, 0.0, dataclasses.replace(st, settle_calls=50, settle_cap_s=0.3))
    assert 2 <= len(calls) <= 4

ROWS = [
    {
        "op": "logsumexp",
        "shape": [2, 3],
        "dtype": "float32",
        "threads": 2,
        "xent_ms": 1.0,
        "torch_ms": None,
        "torch_default_env_ms": float("nan"),
        "numpy_ms": 2.0,
        "copy_ms": 0.5,
        "speedup_vs_torch": None,
        "speedup_vs_torch_default_env": None,
        "speedup_vs_numpy": 2.0,
        "xent_gbps": 1.5,
        "pct_of_copy": 40.0,
    }
]


def test_table_and_json_sanitising():
    table = _bench.format_table(ROWS).splitlines()
    assert table[0].startswith("op") and "2x3" in table[2] and "2.00x" in table[2]
    assert _bench._finite({"a": [float("inf"), 1.0]}) == {"a": [None, 1.0]}


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed"
)
def test_plot_without_matplotlib_fails_fast(tmp_path, capsys):
    assert _bench.run_bench(quick=True, json_path=None, plot_path=str(tmp_path / "p.png")) == 2
    assert "matplotlib" in capsys.readouterr().err


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "p.png"
    _bench.write_plot(ROWS, str(path), "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("scale", ["full", "quick", "tiny"])
def test_plan_covers_every_case_once(scale):
    groups = _bench.plan(scale)
    ids = [i for g in groups for i in g]
    assert ids == [c.id for c in _bench.build_cases(scale)]
    if scale != "full":
        assert len(groups) == 1  # one worker process: quick must start fast
    else:
        big = {c.id for c in _bench.build_cases(scale) if c.nbytes >= _bench.BIG_BYTES}
        assert big and all(len(g) == 1 for g in groups if big & set(g))


def test_worker_reports_a_failing_case_and_goes_on(monkeypatch):
    def broken(case, want):
        raise RuntimeError("boom")

    good = _bench.build_cases("tiny")
    lse = next(c for c in good if c.key == "logsumexp")
    bad = _bench.Case("broken", "broken op", (2, 3), "float32", 1, ("logsumexp",), 1, broken)
    monkeypatch.setattr(_bench, "build_cases", lambda scale: [bad, lse])
    monkeypatch.delenv("XENT_BENCH_ONLY", raising=False)
    out = _bench.worker({"scale": "tiny", "providers": ["xent", "numpy", "copy"]})
    assert [r["id"] for r in out["results"]] == [lse.id]
    assert out["skipped"][0]["id"] == bad.id and "boom" in out["skipped"][0]["reason"]
    assert set(out["results"][0]["timings"]) == {"xent", "numpy", "copy"}
