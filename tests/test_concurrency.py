"""Thread safety and fork/spawn safety.

- 8 Python threads x 250 mixed calls with random ``num_threads`` (1..4) running at
  once (every kernel releases the GIL); every call has at least 65536 elements of
  work, so a count above 1 really starts an OpenMP team (smaller calls run on the
  calling thread).  Each result is compared with a reference computed
  single-threaded beforehand (per-row results do not depend on the thread count, so
  they must match bitwise, reductions to rounding).
- Racing targets: threads keep rewriting the class targets (valid classes,
  ignore_index, out of range by one or by 2**40) while other threads call the
  class-target losses; each call returns or raises IndexError.  Crash-prone, so it
  runs in a child interpreter (tests/_hardening_child.py); under .ci/sanitize.sh
  (XENT_RACE_SCALE) it runs long enough for ASan to see any unchecked target use.
- Child processes (fork, spawn, forkserver) call xent after their parent, a fresh
  interpreter, has run a thread team (checked: its OS thread count grew); a hang
  fails through a timeout instead of blocking CI.  (os.fork() and a fork Pool:
  tests/test_hardening.py::test_gh14_fork_after_a_thread_team.)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading

import _hardening_child as child
import numpy as np
import pytest
from helpers import assert_close, assert_same

import xent

N_THREADS = 8
CALLS_PER_THREAD = int(os.environ.get("XENT_CONCURRENCY_CALLS", "250"))
#: Elements of work from which a kernel starts a team (XENT_MIN_PARALLEL_WORK).
TEAM_WORK = 65536


def _cases():
    rng = np.random.default_rng(42)
    cases = []
    for dt in (np.float32, np.float64):
        # 512 x 130 and 4 x 64 x 260 = 66560 elements each: every call below is above
        # the threading threshold (nll_loss alone would count rows: the fused form is used)
        x = (rng.standard_normal((512, 130)) * 4).astype(dt)
        x3 = (rng.standard_normal((4, 64, 260)) * 4).astype(dt)
        assert x.size >= TEAM_WORK and x3.size >= TEAM_WORK
        t = rng.integers(0, 130, size=512)
        t[::5] = -100
        t3 = rng.integers(0, 260, size=(4, 64))
        cases += [
            ("logsumexp", (x,), {}),
            ("softmax", (x3,), {}),
            ("log_softmax", (x,), {"axis": 0}),
            ("cross_entropy", (x, t), {"reduction": "none", "label_smoothing": 0.1}),
            ("cross_entropy", (x3, t3), {"z_loss": 1e-3}),
            ("cross_entropy_and_grad", (x, t), {"weight": np.linspace(0.5, 2, 130)}),
            ("cross_entropy_grad", (x3, t3), {"softcap": 10.0, "reduction": "sum"}),
            ("nll_loss_and_grad", (x, t), {}),
            ("perplexity", (x3, t3), {}),
            ("focal_loss_and_grad", (x, t), {"gamma": 2.0}),
            ("binary_cross_entropy_with_logits_and_grad", (x, (x > 0).astype(dt)), {}),
            ("sigmoid_focal_loss_and_grad", (x, (x > 1).astype(dt)), {"reduction": "mean"}),
            ("kl_div_with_logits_and_grad", (x3, x3[:, ::-1].copy()), {"temperature": 2.0}),
            ("expected_calibration_error", (x3, t3), {}),
            ("token_scores", (x3, t3), {"top_k": 4}),
        ]
    return cases


def _leaves(res):
    if isinstance(res, tuple):
        out = []
        for r in res:
            out += _leaves(r)
        return out
    return [None if res is None else np.asarray(res)]


def _assert_same_result(got, want, dtype):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if g is None or w is None:
            assert g is w
        elif w.ndim == 0:  # a reduction: rounding may differ with the thread count
            assert g.dtype == w.dtype
            assert_close(g, w, dtype)
        else:
            assert_same(g, w)


def test_threads_mixed_calls():
    cases = _cases()
    refs = [_leaves(getattr(xent, n)(*a, num_threads=1, **k)) for n, a, k in cases]
    errors: list = []
    barrier = threading.Barrier(N_THREADS)

    def worker(seed):
        rng = np.random.default_rng(seed)
        barrier.wait()
        for _ in range(CALLS_PER_THREAD):
            i = int(rng.integers(len(cases)))
            name, args, kw = cases[i]
            try:
                got = _leaves(getattr(xent, name)(*args, num_threads=int(rng.integers(1, 5)),
                                                  **kw))
                _assert_same_result(got, refs[i], args[0].dtype)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{name} {kw}: {e!r}")
                return

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors[:5]


def test_racing_target_writers_during_mixed_calls():
    """Writers rewrite the targets of several arrays while 3 threads call every
    class-target loss form on them (1..4 threads each); see the module docstring."""
    child.assert_child_ok("race_mixed", timeout=60.0, seconds=1.0)


# Python >= 3.12 warns about fork() in a multi-threaded process (OpenMP's idle team);
# surviving exactly that is what these tests check (in the child interpreter).
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_subprocess_after_openmp(method):
    """A child started with `method` after the parent ran a team: its calls complete
    (default, num_threads=2, set_num_threads(2)) with the parent's values; a forked
    child defaults to one thread until it opts back in."""
    if method not in mp.get_all_start_methods():
        pytest.skip(f"start method {method} not available")
    if method == "fork" and sys.platform == "darwin":
        pytest.skip("fork after threads is unsafe on macOS")
    child.assert_child_ok("start_method", method=method, openmp=child.OPENMP)
