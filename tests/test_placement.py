"""Worker placement (opt-in) and process-wide state.

xent shares the OpenMP runtime with PyTorch and other libraries, so by default it
changes no thread's CPU affinity and sets no OpenMP variable in the environment
(issue 14).  With ``XENT_PIN_THREADS=1`` its OpenMP workers avoid the calling
thread's CPU.

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
def test_workers_avoid_the_callers_cpu_when_pinning_is_asked_for():
    n_cpu = len(os.sched_getaffinity(0))
    nts = [2, n_cpu + 1, 2]  # the middle team has more threads than CPUs
    # teams are capped at max(allowed CPUs, OpenMP's default team): an OpenMP default
    # above the CPU count lets the middle team really be larger than the CPU count
    out = _probe(nts, XENT_PIN_THREADS="1", OMP_NUM_THREADS=str(n_cpu + 1))
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
@pytest.mark.parametrize("env", [{}, {"XENT_PIN_THREADS": "0"}, {"OMP_PROC_BIND": "false"}],
                         ids=["default", "XENT_PIN_THREADS=0", "OMP_PROC_BIND set"])
def test_no_affinity_change_unless_asked_for(env):
    """By default (issue 14) no worker and not the caller is restricted, whatever the
    team size (teams that fit, then more threads than CPUs, then fitting again)."""
    n_cpu = len(os.sched_getaffinity(0))
    out = _probe([2, n_cpu + 1, 2], **env)
    for r in out["report"]:
        assert r["caller"] == out["allowed"], r
        assert r["workers"] and all(w == out["allowed"] for w in r["workers"]), r


def test_show_config_reports_placement():
    default = _run("import xent; xent.show_config()").stdout
    on = _run("import xent; xent.show_config()", XENT_PIN_THREADS="1").stdout
    off = _run("import xent; xent.show_config()", XENT_PIN_THREADS="0").stdout

    def line(text):
        return next(ln for ln in text.splitlines() if ln.split()[0] == "workers")

    assert "left to the OS" in line(default)
    assert "left to the OS" in line(off)
    if sys.platform.startswith("linux") and xent.openmp_enabled():
        assert "off the calling thread's CPU" in line(on)
    else:
        assert "left to the OS" in line(on)


# Records every environment variable set or removed while xent is imported (os.putenv
# and os.unsetenv are what os.environ's item assignment and deletion call).
_ENV_PROBE = """
    import json, os
    before = dict(os.environ)
    touched = []
    put, unset = os.putenv, os.unsetenv
    os.putenv = lambda k, v: (touched.append(("set", os.fsdecode(k))), put(k, v))[1]
    os.unsetenv = lambda k: (touched.append(("unset", os.fsdecode(k))), unset(k))[1]
    import xent
    import numpy as np
    xent.cross_entropy_and_grad(np.zeros((512, 256), np.float32), np.zeros(512, np.int64),
                                num_threads=2)
    os.putenv, os.unsetenv = put, unset
    changed = sorted(k for k in set(before) | set(os.environ)
                     if before.get(k) != os.environ.get(k))
    print(json.dumps({"touched": touched, "changed": changed}))
"""


def test_import_sets_no_openmp_variables():
    """Importing xent (and calling it) neither leaves nor temporarily sets any OMP_* /
    GOMP_* variable (e.g. GOMP_SPINCOUNT), which would change a runtime shared with
    PyTorch and other libraries."""
    out = json.loads(_run(_ENV_PROBE).stdout.strip().splitlines()[-1])
    assert out["changed"] == [], out
    omp = [t for t in out["touched"] if t[1].startswith(("OMP_", "GOMP_", "KMP_"))]
    assert omp == [], f"xent set OpenMP variables while importing: {omp}"


def test_invalid_pin_value_warns():
    proc = _run("import warnings; warnings.simplefilter('always'); import xent",
                XENT_PIN_THREADS="sometimes")
    assert "XENT_PIN_THREADS='sometimes' is not 0 or 1" in proc.stderr
