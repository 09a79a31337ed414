"""Forward + backward of xent.torch.CrossEntropyLoss vs torch.nn.CrossEntropyLoss.

pytest-benchmark (self-contained)::

    pytest benchmarks/bench_torch_adapter.py                       # 4096x32000, 8x32000
    pytest benchmarks/bench_torch_adapter.py --benchmark-disable   # smoke shape only, once

By hand (providers alternate round by round in one process; median of each
round's median, one line per provider)::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \\
        python benchmarks/bench_torch_adapter.py --shapes 4096x32000 8x32000 --threads 2

    # before/after: another single-file adapter (e.g. `git show main:src/xent/torch.py`)
    python benchmarks/bench_torch_adapter.py --baseline /tmp/torch_main.py

    # what the torch.library custom op costs on a per-token call
    python benchmarks/bench_torch_adapter.py --overhead --shapes 1x32000

The glibc settings keep the large gradient buffers in the heap instead of fresh
mmap()s, so neither library pays page faults for re-zeroed pages on every call.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import pytest

torch = pytest.importorskip("torch")
xt = pytest.importorskip("xent.torch")

SHAPES = {"smoke": (64, 1000), "4096x32000": (4096, 32000), "8x32000": (8, 32000)}
THREADS = 2


def _make(n, c, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=dtype).requires_grad_()
    t = torch.randint(0, c, (n,), generator=g)
    return x, t


def _criterion(provider, threads, baseline=None):
    if provider == "xent":
        return xt.CrossEntropyLoss(num_threads=threads)
    if provider == "baseline":
        return baseline.CrossEntropyLoss(num_threads=threads)
    return torch.nn.CrossEntropyLoss()


def _step(crit, x, t):
    x.grad = None
    crit(x, t).backward()


# `which`, not `provider`: conftest.py parametrizes `provider` (and `shape`) for the
# NumPy-API benchmarks.
@pytest.mark.parametrize("which", ["xent", "torch"])
@pytest.mark.parametrize("size", list(SHAPES))
def bench_cross_entropy_fwd_bwd(benchmark, request, which, size):
    disabled = request.config.getoption("benchmark_disable", False)
    if disabled != (size == "smoke"):
        pytest.skip("smoke shape with --benchmark-disable, full shapes otherwise")
    n, c = SHAPES[size]
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        x, t = _make(n, c)
        crit = _criterion(which, THREADS)
        benchmark.group = f"cross_entropy-fwd_bwd-float32-{n}x{c}-threads{THREADS}"
        benchmark.extra_info.update(provider=which, n_rows=n, n_cols=c, n_threads=THREADS)
        rounds = 1 if disabled else (10 if n * c > 10**7 else 200)
        benchmark.pedantic(_step, args=(crit, x, t), rounds=rounds, iterations=1,
                           warmup_rounds=0 if disabled else 1)
        ref = torch.nn.functional.cross_entropy(x.detach(), t)
        assert torch.allclose(crit(x.detach(), t), ref, rtol=1e-5)
    finally:
        torch.set_num_threads(old)


def bench_custom_op_overhead_smoke():
    """The --overhead mode's calls run (a smoke run, not a timing)."""
    x, t = _make(2, 50)
    for fn in _overhead_calls(x, t, 1).values():
        fn()


# --------------------------------------------------------------------------- CLI


def _median_time(fn, reps: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _reps(n: int, c: int) -> int:
    return max(5, min(2000, int(2e8 // max(n * c, 1))))


def _rounds(calls: dict, reps: int, rounds: int) -> dict:
    """Each call's per-round medians, the calls alternating round by round."""
    res = {k: [] for k in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            res[name].append(_median_time(fn, reps))
    return res


def _report(label: str, res: dict, ref: str) -> None:
    meds = {k: statistics.median(v) for k, v in res.items()}
    for name, m in meds.items():
        spread = f"{min(res[name]) * 1e3:.3f}..{max(res[name]) * 1e3:.3f}"
        print(f"{label} {name:22s} median {m * 1e3:9.3f} ms  (rounds {spread} ms)  "
              f"{meds[ref] / m:5.2f}x vs {ref}", flush=True)


def _stepper(crit, x, t):
    return lambda: _step(crit, x, t)


def _fwd_bwd(args, baseline) -> None:
    providers = ["xent", "torch"] + (["baseline"] if baseline is not None else [])
    for shape in args.shapes:
        n, c = (int(v) for v in shape.split("x"))
        x, t = _make(n, c)
        calls = {p: _stepper(_criterion(p, args.threads, baseline), x, t) for p in providers}
        res = _rounds(calls, args.repeat or _reps(n, c), args.rounds)
        _report(f"{n}x{c} float32 fwd+bwd threads={args.threads}", res, "torch")


def _overhead_calls(x, t, threads) -> dict:
    """Ways to get the loss and its gradient, from the public function to the raw kernel."""
    from xent.torch._ce import CROSS_ENTROPY, CEOptions
    from xent.torch._engine import fused_call

    opts = CEOptions(-100, "mean", 0.0, 0.0, None, threads)
    op = torch.ops.xent.cross_entropy_and_grad.default
    xd = x.detach()
    return {
        "xt.cross_entropy": lambda: _step(lambda a, b: xt.cross_entropy(
            a, b, num_threads=threads), x, t),
        "torch.ops.xent (op)": lambda: _step(lambda a, b: op(a, b, None, *opts)[0], x, t),
        "fused kernel only": lambda: fused_call(CROSS_ENTROPY, xd, t, None, None, opts),
        "F.cross_entropy": lambda: _step(torch.nn.functional.cross_entropy, x, t),
    }


def _overhead(args) -> None:
    for shape in args.shapes:
        n, c = (int(v) for v in shape.split("x"))
        x, t = _make(n, c)
        res = _rounds(_overhead_calls(x, t, args.threads), args.repeat or 2000, args.rounds)
        _report(f"{n}x{c} float32 loss+grad threads={args.threads}", res, "xt.cross_entropy")


def _load_baseline(path: str):
    spec = importlib.util.spec_from_file_location("xent_torch_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["4096x32000", "8x32000"])
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--repeat", type=int, default=0, help="calls per round (0: by size)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", help="a single-file xent.torch adapter to compare with")
    ap.add_argument("--overhead", action="store_true",
                    help="time the custom-op path against the eager path and the kernel")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.overhead:
        _overhead(args)
    else:
        _fwd_bwd(args, _load_baseline(args.baseline) if args.baseline else None)


if __name__ == "__main__":
    main()
