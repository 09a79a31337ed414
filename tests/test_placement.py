"""Worker placement: xent's OpenMP workers avoid the calling thread's CPU.

Each check runs in a fresh interpreter, so that the OpenMP runtime, its thread
pool and the environment switches start from scratch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import xent

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
_ENV_KEYS = ("XENT_PIN_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY",
             "OMP_NUM_THREADS", "XENT_SIMD")


def _run(code, **env):
    e = {k: v for k, v in os.environ.items() if k not in _ENV_KEYS}
    e.update(env)
    e["PYTHONPATH"] = os.pathsep.join([_PKG_PARENT] + [p for p in [e.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=e, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


_CAN_PLACE = (sys.platform.startswith("linux") and xent.openmp_enabled()
              and hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2)
needs_placement = pytest.mark.skipif(
    not _CAN_PLACE, reason="worker placement needs Linux, an OpenMP build and >= 2 allowed CPUs")

# Calls xent with a team of `nt` threads, then reports the allowed CPUs of the
# threads the OpenMP runtime created (the ones absent before the first call),
# the CPU the calling thread last ran on, and the calling thread's own mask.
_PROBE = """
    import json, os, sys, threading
    import numpy as np
    import xent

    def masks():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/status") as fh:
                    for line in fh:
                        if line.startswith("Cpus_allowed_list:"):
                            out[int(tid)] = line.split(":", 1)[1].strip()
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that ended after the listing (e.g. a shrinking pool)
        return out

    def cpus(text):
        s = set()
        for part in text.split(","):
            a, _, b = part.partition("-")
            s.update(range(int(a), int(b or a) + 1))
        return sorted(s)

    def last_cpu(tid):
        with open(f"/proc/self/task/{tid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[36])

    allowed = sorted(os.sched_getaffinity(0))
    before = set(masks())
    me = threading.get_native_id()
    x = np.random.default_rng(0).standard_normal((4096, 512)).astype(np.float32)
    report = []
    for nt in NTS:
        for attempt in range(20):
            xent.logsumexp(x, num_threads=nt)
            cpu = last_cpu(me)
            workers = {t: cpus(m) for t, m in masks().items() if t not in before}
            # the caller may have moved between the call and the reading: call again
            # (the next call re-places the workers for the caller's new CPU)
            if nt > len(allowed) or [c for c in allowed if c != cpu] in workers.values():
                break
        report.append({"nt": nt, "cpu": cpu, "workers": sorted(workers.values()),
                       "caller": sorted(os.sched_getaffinity(0))})
    print(json.dumps({"allowed": allowed, "report": report}))
"""


def _probe(nts, **env):
    proc = _run(_PROBE.replace("NTS", repr(list(nts))), **env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_placement
def test_workers_avoid_the_callers_cpu():
    n_cpu = len(os.sched_getaffinity(0))
    nts = [2, n_cpu + 1, 2]  # the middle team has more threads than CPUs
    out = _probe(nts)
    allowed = out["allowed"]
    first, over, again = out["report"]
    # the caller is never pinned
    for r in out["report"]:
        assert r["caller"] == allowed
    # a team that fits: its worker may run anywhere allowed except the caller's CPU
    assert [w for w in first["workers"] if w == [c for c in allowed if c != first["cpu"]]], first
    # more threads than CPUs: no worker is restricted
    assert len(over["workers"]) >= n_cpu and all(w == allowed for w in over["workers"]), over
    # back to a team that fits: restricted again (the state tracks the team size)
    expect = [c for c in allowed if c != again["cpu"]]
    assert [w for w in again["workers"] if w == expect], again


@needs_placement
@pytest.mark.parametrize("env", [{"XENT_PIN_THREADS": "0"}, {"OMP_PROC_BIND": "false"}],
                         ids=["XENT_PIN_THREADS=0", "OMP_PROC_BIND set"])
def test_placement_can_be_turned_off(env):
    out = _probe([2], **env)
    (r,) = out["report"]
    assert r["workers"] and all(w == out["allowed"] for w in r["workers"]), r


def test_show_config_reports_placement():
    on = _run("import xent; xent.show_config()").stdout
    off = _run("import xent; xent.show_config()", XENT_PIN_THREADS="0").stdout
    line_on = next(ln for ln in on.splitlines() if ln.split()[0] == "workers")
    line_off = next(ln for ln in off.splitlines() if ln.split()[0] == "workers")
    assert "left to the OS" in line_off
    if sys.platform.startswith("linux") and xent.openmp_enabled():
        assert "off the calling thread's CPU" in line_on
    else:
        assert "left to the OS" in line_on


def test_invalid_pin_value_warns():
    proc = _run("import warnings; warnings.simplefilter('always'); import xent",
                XENT_PIN_THREADS="sometimes")
    assert "XENT_PIN_THREADS='sometimes' is not 0 or 1" in proc.stderr
