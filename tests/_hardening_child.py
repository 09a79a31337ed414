"""Scenarios that may crash or hang the process they run in, run in a child interpreter.

Used by tests/test_hardening.py and tests/test_concurrency.py (issue 14).  The parent
side is :func:`run_child`: it starts ``python _hardening_child.py SCENARIO JSON`` with a
timeout and returns the finished process, so that a segfault, an abort (a sanitizer
report) or a hang fails the calling test instead of killing or blocking pytest.  Each
scenario prints ``case ...`` before every step (so a crash names the step it died in)
and ``OK ...`` as its last line when every check passed; a failed check is an
AssertionError (exit code 1, traceback on stderr).

The child imports the same xent as the test session (its package directory is put
first on PYTHONPATH, then tests/ and the checkout root, for ``helpers`` and
``benchmarks.reference``), and inherits the rest of the environment, so the sanitizer run
(.ci/sanitize.sh: LD_PRELOAD, ASAN_OPTIONS with a log path) covers the children too.

``XENT_RACE_SCALE`` (default 1) multiplies the time every race scenario runs; the
sanitizer script raises it so that the instrumented build sees many more racing calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from helpers import assert_same

import xent

OPENMP = xent.openmp_enabled()
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)  # the checkout root: `from benchmarks import reference`
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
RACE_SCALE = float(os.environ.get("XENT_RACE_SCALE", "1"))

# ---------------------------------------------------------------------------- parent side


def run_child(scenario: str, timeout: float = 120.0, env: dict | None = None, **kwargs):
    """Run one scenario in a fresh interpreter; returns (returncode, stdout, stderr).

    A child still running after `timeout` seconds is killed with its whole process
    group (a hung grandchild it forked would otherwise keep the pipes open) and
    reported with returncode None (a hang).
    """
    e = dict(os.environ)
    e.update(env or {})
    e["PYTHONPATH"] = os.pathsep.join(
        [_PKG_PARENT, _HERE, _ROOT] + [p for p in [e.get("PYTHONPATH")] if p])
    cmd = [sys.executable, os.path.join(_HERE, "_hardening_child.py"), scenario,
           json.dumps(kwargs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=e, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout * max(RACE_SCALE, 1.0))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
    if rc is None or rc != 0:  # whatever it left behind (e.g. a hung forked child)
        try:
            os.killpg(proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
    if rc is None:
        out, err = proc.communicate()
    return rc, out, err


def describe(rc, out: str, err: str) -> str:
    """What went wrong in a child, for an assertion message."""
    steps = [ln for ln in out.splitlines() if ln.startswith("case ")]
    last = steps[-1] if steps else "(before the first case)"
    if rc is None:
        what = "HUNG (killed after the timeout)"
    elif rc < 0:
        what = f"CRASHED with signal {-rc}"
    else:
        what = f"exited with code {rc}"
    return f"child {what}; last step: {last}\nstderr tail:\n{err[-3000:]}"


def assert_child_ok(scenario: str, timeout: float = 120.0, env: dict | None = None,
                    **kwargs) -> str:
    """Run a scenario and assert it exited 0 with a final ``OK`` line; returns stdout."""
    rc, out, err = run_child(scenario, timeout, env, **kwargs)
    lines = out.strip().splitlines()
    assert rc == 0 and lines and lines[-1].startswith("OK"), describe(rc, out, err)
    return out


# ---------------------------------------------------------------------------- child helpers


def _step(*what) -> None:
    print("case", *what, flush=True)


def _equal(got, ref, what: str) -> None:
    """Arrays bitwise (NaN where NaN), NumPy scalars to rounding of their dtype."""
    assert_same(got, ref, what, rounding=True)


# Shapes that take each cross-entropy code path with num_threads=2 (a team starts at
# 65536 elements of work): few classes (C <= 32, row blocks), the general row loop,
# and the large-row split (fewer rows than threads, C > 2048: each row over the team).
CE_PATHS = {"few": (8192, 8), "general": (1024, 100), "split": (1, 70000)}


def _call(fn_name: str, x, t, out=None, **kw):
    fn = getattr(xent, fn_name)
    if out is not None:
        kw["out"] = out
    if fn_name.endswith("_grad") and not fn_name.endswith("_and_grad"):
        return fn(x, t, 0.5, **kw)
    return fn(x, t, **kw)


def _options(fn_name: str, c: int, dtype, variant: int) -> dict:
    """Per-family options; `variant` alternates plain calls and calls with weights."""
    kw: dict = {"reduction": ("none", "mean", "sum")[variant % 3]}
    if fn_name.startswith("focal"):
        kw["gamma"] = 2.0
        if variant % 2:
            kw["alpha"] = np.linspace(0.25, 1.0, c).astype(dtype)
    elif fn_name.startswith(("cross_entropy", "nll")) and variant % 2:
        kw["weight"] = np.linspace(0.5, 2.0, c).astype(dtype)
    if fn_name == "perplexity":
        kw = {}
    return kw


# ---------------------------------------------------------------------------- scenarios


def target_overlap(fns: list) -> None:
    """Finding 1: `out` overlapping the int64 class target, in place or not.

    Layouts: the target is the first bytes of the logits and out=logits (the README
    idiom with labels stored in the buffer); the last bytes; the spec's
    ``buf.view(np.int64)[:, 0]``; and a separate `out` whose first bytes hold the
    target.  Expected: the call on copies of every argument, and `out` returned.
    """
    rng = np.random.default_rng(14)
    for fn, dtype in [(f, d) for f in fns for d in (np.float32, np.float64)]:
        for path, (n, c) in CE_PATHS.items():
            for layout in ("inplace_head", "inplace_tail", "inplace_col0", "separate_head"):
                for nt in (1, 2):
                    variant = nt + (layout == "inplace_tail")
                    kw = _options(fn, c, dtype, variant)
                    kw["num_threads"] = nt
                    _step(fn, np.dtype(dtype).name, path, layout, f"nt={nt}", kw["reduction"])
                    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
                    labels = rng.integers(0, c, size=n)
                    # an ignore_index whose bits are a tiny float (-100 would be a NaN
                    # logit where the labels share the logits' memory)
                    kw["ignore_index"] = c + 5
                    labels[1::7] = c + 5
                    if layout.startswith("inplace"):
                        buf = out = x
                    else:
                        buf = out = np.full((n, c), np.nan, dtype=dtype)
                    flat = buf.reshape(-1).view(np.int64)
                    if layout == "inplace_col0":
                        if (c * np.dtype(dtype).itemsize) % 8:
                            continue
                        target = buf.view(np.int64)[:, 0]
                    elif layout == "inplace_tail":
                        target = flat[flat.size - n:]
                    else:
                        target = flat[:n]
                    target[...] = labels
                    ref = _call(fn, x.copy(), target.copy(), None, **kw)
                    got = _call(fn, x, target, out, **kw)
                    if isinstance(ref, tuple):
                        assert got[1] is out, "the gradient is not `out`"
                        _equal(got[0], ref[0], "loss")
                        _equal(got[1], ref[1], "grad")
                    else:
                        assert got is out, "the gradient is not `out`"
                        _equal(got, ref, "grad")
    print("OK", *fns)


# Values another thread writes into the targets during the calls: valid classes,
# ignore_index, far out of range (an unchecked use faults at once), just out of range
# (an unchecked use reads or writes next to the buffer: what the sanitizer build sees).
def _race_patterns(n: int, c: int, rng) -> list:
    good = rng.integers(0, c, size=n)
    singles = [-100, 2**40, -(2**40), c, c + 1, -1, -3, c - 1, 0]
    pats = [good, good[::-1].copy()] + [np.full(n, v, dtype=np.int64) for v in singles]
    for _ in range(4):
        pats.append(rng.choice(np.array(singles + [1, c // 2], dtype=np.int64), size=n))
    return pats


class _TargetWriter(threading.Thread):
    """Rewrites `t` in place, as fast as it can, until stopped."""

    def __init__(self, t: np.ndarray, pats: list, seed: int):
        super().__init__(daemon=True)
        self.t, self.pats, self.seed, self.stop = t, pats, seed, False
        self.writes = 0

    def run(self):
        rng = np.random.default_rng(self.seed)
        t, pats = self.t, self.pats
        n = t.size
        order = rng.integers(0, len(pats), size=1024)
        pos = rng.integers(0, n, size=1024)
        bad = rng.choice(np.array([2**40, -(2**40), -1, 1 << 20], dtype=np.int64), size=1024)
        k = 0
        while not self.stop:
            np.copyto(t, pats[order[k & 1023]])
            t[pos[k & 1023]] = bad[k & 1023]
            k += 1
        self.writes = k


_RACE_ARRAYS: dict = {}


def _race_logits(dtype, path: str, rng):
    """Logits (and a separate gradient buffer for "stream"), made once per process."""
    key = (np.dtype(dtype).name, path)
    if key not in _RACE_ARRAYS:
        n, c = (260, 16384) if path == "stream" else CE_PATHS[path]  # 17 MB > 16 MiB
        x = ((rng.random((n, c), dtype=np.float32) - 0.5) * 12).astype(dtype)
        _RACE_ARRAYS[key] = (x, np.empty_like(x) if path == "stream" else None)
    return _RACE_ARRAYS[key]


def _race_case(fn: str, dtype, path: str, seconds: float, nts, rng) -> tuple:
    """Calls `fn` for `seconds` while a thread rewrites its targets; returns (calls, errors)."""
    x, out = _race_logits(dtype, path, rng)
    n, c = x.shape
    t = rng.integers(0, c, size=n)
    writer = _TargetWriter(t, _race_patterns(n, c, rng), int(rng.integers(2**31)))
    calls = errors = variant = 0
    writer.start()
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or calls < 2:
            variant += 1
            kw = _options(fn, c, dtype, variant)
            kw["num_threads"] = nts[variant % len(nts)]
            try:
                _call(fn, x, t, out, **kw)
            except IndexError:
                errors += 1
            calls += 1
    finally:
        writer.stop = True
        writer.join()
    return calls, errors


RACE_FUNCS = {
    "cross_entropy": ["cross_entropy", "cross_entropy_grad", "cross_entropy_and_grad",
                      "perplexity"],
    "nll_loss": ["nll_loss", "nll_loss_grad", "nll_loss_and_grad"],
    "focal_loss": ["focal_loss", "focal_loss_grad", "focal_loss_and_grad"],
}


def race(family: str, seconds: float) -> None:
    """Finding 2: every call returns or raises IndexError while its targets are rewritten.

    Each function of the family, float32 and float64, every cross-entropy path
    (few-class blocks, rows, the large-row split, and for the gradient forms the
    streamed separate-output path), one and two threads.
    """
    sys.setswitchinterval(1e-4)  # hand the GIL back quickly between calls
    rng = np.random.default_rng(2)
    seconds *= RACE_SCALE
    total_calls = total_errors = 0
    for fn in RACE_FUNCS[family]:
        for dtype in (np.float32, np.float64):
            paths = list(CE_PATHS)
            if fn in ("cross_entropy_grad", "cross_entropy_and_grad") and dtype == np.float32:
                paths.append("stream")  # a separate gradient above 16 MB: streamed rows
            for path in paths:
                _step(fn, np.dtype(dtype).name, path)
                calls, errors = _race_case(fn, dtype, path, seconds, (2, 1), rng)
                total_calls += calls
                total_errors += errors
    print("OK", family, "calls", total_calls, "IndexErrors", total_errors)


def race_mixed(seconds: float, n_callers: int = 3) -> None:
    """Several threads call mixed functions (random num_threads 1..4) on shared targets
    that another thread keeps rewriting; every call returns or raises IndexError."""
    sys.setswitchinterval(1e-4)
    seconds *= RACE_SCALE
    rng = np.random.default_rng(8)
    cases = []
    for dtype in (np.float32, np.float64):
        for n, c in CE_PATHS.values():
            x = (rng.standard_normal((n, c)) * 3).astype(dtype)
            t = rng.integers(0, c, size=n)
            cases.append((x, t, _race_patterns(n, c, rng)))
    names = [f for fam in RACE_FUNCS.values() for f in fam]
    writers = [_TargetWriter(t, pats, 100 + i) for i, (_, t, pats) in enumerate(cases)]
    failures: list = []
    counts = [0, 0]
    lock = threading.Lock()

    def caller(seed):
        r = np.random.default_rng(seed)
        end = time.perf_counter() + seconds
        calls = errors = 0
        try:
            while time.perf_counter() < end:
                x, t, _ = cases[int(r.integers(len(cases)))]
                fn = names[int(r.integers(len(names)))]
                kw = _options(fn, x.shape[1], x.dtype, int(r.integers(6)))
                kw["num_threads"] = int(r.integers(1, 5))
                try:
                    _call(fn, x, t, None, **kw)
                except IndexError:
                    errors += 1
                calls += 1
        except Exception as e:  # noqa: BLE001 - reported by the parent
            failures.append(f"{fn}: {e!r}")
        with lock:
            counts[0] += calls
            counts[1] += errors

    _step("mixed", n_callers, "callers", len(writers), "writers")
    for w in writers:
        w.start()
    threads = [threading.Thread(target=caller, args=(s,)) for s in range(n_callers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for w in writers:
        w.stop = True
    for w in writers:
        w.join()
    assert not failures, failures[:5]
    print("OK calls", counts[0], "IndexErrors", counts[1])


def _task_count() -> int:
    return len(os.listdir("/proc/self/task"))


def _fork_workload():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 4096)).astype(np.float32)  # 1M elements: a real team
    t = rng.integers(0, 4096, size=256)
    t[::9] = -100
    return x, t


def _fork_check(x, t, ref_loss, ref_grad, openmp: bool, forked: bool = True) -> None:
    """In the child: completes, correct, serial by default if forked, can opt back in."""
    loss, grad = xent.cross_entropy_and_grad(x, t, reduction="none")
    _equal(loss, ref_loss, "child loss")
    _equal(grad, ref_grad, "child grad")
    if forked:
        assert xent.get_num_threads() == 1, f"child default threads {xent.get_num_threads()}"
    _equal(xent.softmax(x), xent.softmax(x, num_threads=1), "child softmax")
    loss2, grad2 = xent.cross_entropy_and_grad(x, t, reduction="none", num_threads=2)
    _equal(loss2, ref_loss, "child loss, num_threads=2")
    _equal(grad2, ref_grad, "child grad, num_threads=2")
    xent.set_num_threads(2)  # opt back in
    assert xent.get_num_threads() == (2 if openmp else 1)
    loss3, grad3 = xent.cross_entropy_and_grad(x, t, reduction="none")
    _equal(loss3, ref_loss, "child loss after set_num_threads(2)")
    _equal(grad3, ref_grad, "child grad after set_num_threads(2)")


def _pool_task(i):
    x, t = _fork_workload()
    loss = xent.cross_entropy(x, t, reduction="none")
    assert xent.get_num_threads() == 1, f"pool worker default threads {xent.get_num_threads()}"
    loss2 = xent.cross_entropy(x, t, reduction="none", num_threads=2)
    return i, loss.tobytes(), loss2.tobytes()


def fork(openmp: bool, timeout: float = 10.0) -> None:
    """Finding 3: a child forked after a multi-threaded call never hangs.

    The parent runs a team (the number of OS threads grows), then (1) os.fork():
    the child checks the spec (serial default, correct values, num_threads=2 and
    set_num_threads(2) work); (2) a multiprocessing fork Pool maps calls.
    """
    import multiprocessing as mp

    timeout *= max(RACE_SCALE, 1.0)  # slower under the sanitizers
    x, t = _fork_workload()
    before = _task_count()
    ref_loss, ref_grad = xent.cross_entropy_and_grad(x, t, reduction="none", num_threads=2)
    xent.softmax(x, num_threads=2)
    after = _task_count()
    _step("parent threads before/after its team:", before, after)
    if openmp:
        assert after > before, "the parent's call did not start a thread team"
    parent_threads = xent.get_num_threads()

    _step("os.fork")
    pid = os.fork()
    if pid == 0:  # the child: any failure is its exit code
        code = 1
        try:
            _fork_check(x, t, ref_loss, ref_grad, openmp)
            code = 0
        except BaseException as e:  # noqa: BLE001
            print("child failed:", repr(e), file=sys.stderr, flush=True)
        os._exit(code)
    end = time.monotonic() + timeout
    status = None
    while time.monotonic() < end:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        time.sleep(0.02)
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the forked child hung")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    assert xent.get_num_threads() == parent_threads, "fork changed the parent's default"

    _step("multiprocessing fork Pool")
    ref = xent.cross_entropy(x, t, reduction="none", num_threads=1).tobytes()
    with mp.get_context("fork").Pool(2) as pool:
        res = pool.map_async(_pool_task, range(4)).get(timeout=timeout)
    assert all(a == ref and b == ref for _, a, b in res), "a pool worker got other values"
    # the parent still runs teams after forking
    _equal(xent.cross_entropy_and_grad(x, t, reduction="none", num_threads=2)[1], ref_grad,
           "parent after fork")
    print("OK fork")


def _method_child(method, openmp, ref_loss, ref_grad):
    x, t = _fork_workload()
    _fork_check(x, t, ref_loss, ref_grad, openmp, forked=method == "fork")


def start_method(method: str, openmp: bool, timeout: float = 10.0) -> None:
    """A multiprocessing child started with `method` after this process ran a team."""
    import multiprocessing as mp

    timeout *= max(RACE_SCALE, 1.0)
    x, t = _fork_workload()
    before = _task_count()
    ref_loss, ref_grad = xent.cross_entropy_and_grad(x, t, reduction="none", num_threads=2)
    after = _task_count()
    _step("parent threads before/after its team:", before, after)
    if openmp:
        assert after > before, "the parent's call did not start a thread team"
    _step(method, "child")
    p = mp.get_context(method).Process(target=_method_child,
                                       args=(method, openmp, ref_loss, ref_grad))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError(f"the {method} child hung")
    assert p.exitcode == 0, f"the {method} child exited with {p.exitcode}"
    print("OK", method)


def thread_cap(num_threads: int) -> None:
    """Finding 6: a call with a huge num_threads leaves a bounded number of OS threads."""
    cap = max(len(os.sched_getaffinity(0)), xent._kernels._core.omp_max_threads())
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    ref = xent.softmax(x, num_threads=1)
    before = _task_count()
    _step("softmax num_threads", num_threads, "threads before", before, "cap", cap)
    _equal(xent.softmax(x, num_threads=num_threads), ref, "softmax")
    _equal(xent.cross_entropy_and_grad(x, np.zeros(512, np.int64), reduction="none",
                                       num_threads=num_threads)[0],
           xent.cross_entropy(x, np.zeros(512, np.int64), reduction="none", num_threads=1),
           "cross_entropy")
    after = _task_count()
    _step("threads after", after)
    assert after <= before + cap + 2, (
        f"{after} OS threads after the call ({before} before, cap {cap})")
    print("OK threads", before, after, "cap", cap)


def fuzz_aliasing_class() -> None:
    """tests/test_fuzz.py's aliasing fuzzer for the class-target losses (crash-prone)."""
    import test_fuzz

    test_fuzz.fuzz_aliasing_class_losses()
    print("OK fuzz_aliasing_class", test_fuzz.N_EXAMPLES, "examples")


SCENARIOS = {f.__name__: f for f in (target_overlap, race, race_mixed, fork, start_method,
                                      thread_cap, fuzz_aliasing_class)}

if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
    SCENARIOS[sys.argv[1]](**json.loads(sys.argv[2]))
