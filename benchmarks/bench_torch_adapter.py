"""Forward + backward of xent.torch.CrossEntropyLoss vs torch.nn.CrossEntropyLoss.

pytest-benchmark (self-contained)::

    pytest benchmarks/bench_torch_adapter.py                       # 4096x32000 float32
    pytest benchmarks/bench_torch_adapter.py --benchmark-disable   # smoke shape only, once

By hand (median of --repeat runs, one library after the other with a pause)::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
        python benchmarks/bench_torch_adapter.py --threads 2 --repeat 10

The glibc settings keep the large gradient buffers in the heap instead of fresh
mmap()s, so neither library pays page faults for re-zeroed pages on every call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytest

torch = pytest.importorskip("torch")
xt = pytest.importorskip("xent.torch")

SHAPES = {"smoke": (64, 1000), "4096x32000": (4096, 32000)}
THREADS = 2


def _make(n, c, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=dtype).requires_grad_()
    t = torch.randint(0, c, (n,), generator=g)
    return x, t


def _criterion(provider, threads):
    if provider == "xent":
        return xt.CrossEntropyLoss(num_threads=threads)
    return torch.nn.CrossEntropyLoss()


def _step(crit, x, t):
    x.grad = None
    crit(x, t).backward()


@pytest.mark.parametrize("provider", ["xent", "torch"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_cross_entropy_fwd_bwd(benchmark, request, provider, shape):
    disabled = request.config.getoption("benchmark_disable", False)
    if disabled != (shape == "smoke"):
        pytest.skip("smoke shape with --benchmark-disable, full shapes otherwise")
    n, c = SHAPES[shape]
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        x, t = _make(n, c)
        crit = _criterion(provider, THREADS)
        benchmark.group = f"cross_entropy-fwd_bwd-float32-{n}x{c}-threads{THREADS}"
        benchmark.extra_info.update(provider=provider, n_rows=n, n_cols=c, n_threads=THREADS)
        benchmark.pedantic(_step, args=(crit, x, t), rounds=10 if not disabled else 1,
                           iterations=1, warmup_rounds=0 if disabled else 1)
        ref = torch.nn.functional.cross_entropy(x.detach(), t)
        assert torch.allclose(crit(x.detach(), t), ref, rtol=1e-5)
    finally:
        torch.set_num_threads(old)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--c", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--sleep", type=float, default=2.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, t = _make(args.n, args.c)
    med = {}
    for provider in ("xent", "torch", "xent", "torch"):  # twice, alternating
        crit = _criterion(provider, args.threads)
        _step(crit, x, t)  # warm-up (allocator, page faults)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            _step(crit, x, t)
            times.append(time.perf_counter() - t0)
        m = statistics.median(times)
        med[provider] = min(m, med.get(provider, float("inf")))
        print(f"{provider:6s} {args.n}x{args.c} float32 fwd+bwd threads={args.threads}: "
              f"median {m * 1e3:8.1f} ms  (min {min(times) * 1e3:.1f}, max "
              f"{max(times) * 1e3:.1f}, n={args.repeat})", flush=True)
        time.sleep(args.sleep)
    print(f"speed-up xent/torch (best median): {med['torch'] / med['xent']:.2f}x")


if __name__ == "__main__":
    main()
