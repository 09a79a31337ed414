"""Thread safety and fork/spawn safety.

- 8 Python threads x 2,000 mixed calls with random ``num_threads`` (1..4) running at
  once (every kernel releases the GIL); each result is compared with a reference
  computed single-threaded beforehand (per-row results do not depend on the thread
  count, so they must match bitwise, reductions to rounding).
- Child processes (fork and spawn) call xent after the parent has run OpenMP regions;
  a hang fails through a timeout instead of blocking CI.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading

import numpy as np
import pytest

import xent

N_THREADS = 8
CALLS_PER_THREAD = int(os.environ.get("XENT_CONCURRENCY_CALLS", "2000"))


def _cases():
    rng = np.random.default_rng(42)
    cases = []
    for dt in (np.float32, np.float64):
        x = (rng.standard_normal((37, 19)) * 4).astype(dt)
        x3 = (rng.standard_normal((3, 11, 70)) * 4).astype(dt)
        t = rng.integers(0, 19, size=37)
        t[::5] = -100
        t3 = rng.integers(0, 70, size=(3, 11))
        cases += [
            ("logsumexp", (x,), {}),
            ("softmax", (x3,), {}),
            ("log_softmax", (x,), {"axis": 0}),
            ("cross_entropy", (x, t), {"reduction": "none", "label_smoothing": 0.1}),
            ("cross_entropy", (x3, t3), {"z_loss": 1e-3}),
            ("cross_entropy_and_grad", (x, t), {"weight": np.linspace(0.5, 2, 19)}),
            ("cross_entropy_grad", (x3, t3), {"softcap": 10.0, "reduction": "sum"}),
            ("nll_loss_and_grad", (x, t), {}),
            ("perplexity", (x3, t3), {}),
        ]
        optional = [
            ("focal_loss_and_grad", (x, t), {"gamma": 2.0}),
            ("binary_cross_entropy_with_logits_and_grad", (x, (x > 0).astype(dt)), {}),
            ("sigmoid_focal_loss_and_grad", (x, (x > 1).astype(dt)), {"reduction": "mean"}),
            ("kl_div_with_logits_and_grad", (x3, x3[:, ::-1].copy()), {"temperature": 2.0}),
            ("expected_calibration_error", (x3, t3), {}),
            ("token_scores", (x3, t3), {"top_k": 4}),
        ]
        cases += [c for c in optional if hasattr(xent, c[0])]
    return cases


def _leaves(res):
    if isinstance(res, tuple):
        out = []
        for r in res:
            out += _leaves(r)
        return out
    return [None if res is None else np.asarray(res)]


def _same(a, b, dtype):
    if a is None or b is None:
        return a is b
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.ndim == 0:  # a reduction: rounding may differ with the thread count
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        return bool(np.isclose(a, b, rtol=rtol, atol=0, equal_nan=True))
    return np.array_equal(a, b, equal_nan=True)


def test_threads_mixed_calls():
    cases = _cases()
    refs = [_leaves(getattr(xent, n)(*a, num_threads=1, **k)) for n, a, k in cases]
    errors: list = []
    barrier = threading.Barrier(N_THREADS)

    def worker(seed):
        rng = np.random.default_rng(seed)
        barrier.wait()
        try:
            for _ in range(CALLS_PER_THREAD):
                i = int(rng.integers(len(cases)))
                name, args, kw = cases[i]
                got = _leaves(getattr(xent, name)(*args, num_threads=int(rng.integers(1, 5)),
                                                  **kw))
                dt = args[0].dtype
                if len(got) != len(refs[i]) or not all(
                        _same(g, r, dt) for g, r in zip(got, refs[i])):
                    errors.append(f"{name} {kw} gave a different result")
                    return
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors[:5]


CHILD = """
import numpy as np

import xent

rng = np.random.default_rng(1)
x = rng.standard_normal((64, 33))
t = rng.integers(0, 33, size=64)
ref1 = xent.cross_entropy(x, t, reduction="none", num_threads=1)
for nt in (1, 2, 4):
    assert np.array_equal(xent.cross_entropy(x, t, reduction="none", num_threads=nt), ref1)
    xent.softmax(x, num_threads=nt)
assert float(ref1.sum()) == EXPECTED, (float(ref1.sum()), EXPECTED)
"""


# Python >= 3.12 warns about fork() in a multi-threaded process (OpenMP's idle team);
# surviving exactly that is what this test checks.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_subprocess_after_openmp(method, tmp_path):
    import runpy

    if method not in mp.get_all_start_methods():
        pytest.skip(f"start method {method} not available")
    if method == "fork" and sys.platform == "darwin":
        pytest.skip("fork after threads is unsafe on macOS")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 33))
    t = rng.integers(0, 33, size=64)
    for nt in (2, 4):  # the parent has started an OpenMP thread team
        xent.cross_entropy_and_grad(x, t, num_threads=nt)
        xent.softmax(x, num_threads=nt)
    expected = float(xent.cross_entropy(x, t, reduction="none", num_threads=1).sum())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ctx = mp.get_context(method)
    # runpy.run_path is importable in any child, unlike this test module under
    # --import-mode=importlib; a failed assertion in the child gives exit code 1.
    procs = [ctx.Process(target=runpy.run_path, args=(str(script),),
                         kwargs={"init_globals": {"EXPECTED": expected}}) for _ in range(2)]
    for p in procs:
        p.start()
    hung = False
    for p in procs:
        p.join(timeout=120)
        if p.is_alive():
            hung = True
            p.kill()
            p.join()
    assert not hung, f"a {method} child hung"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
