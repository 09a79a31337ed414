"""xent.torch.CrossEntropyLoss fwd+bwd: before/after comparisons and the custom-op overhead.

The harness (``python -m xent bench``, case ``adapter``) times the adapter against
PyTorch.  This lab script answers two narrower questions, providers alternating
round by round in one process (median of each round's median)::

    # a change against another single-file adapter (e.g. `git show <rev>:src/xent/torch.py`)
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \\
        python -m benchmarks.lab.torch_adapter --baseline /tmp/torch_old.py \\
        --shapes 4096x32000 8x32000 --threads 2

    # what the torch.library custom op (the path torch.compile traces) costs per call,
    # against the eager path, the bare kernel and F.cross_entropy
    python -m benchmarks.lab.torch_adapter --overhead --shapes 1x32000

``--paired`` times the providers call by call in alternation instead (and also
reports process CPU time): better on a noisy machine for small shapes.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

THREADS = 2


def _make(n: int, c: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g).requires_grad_()
    return x, torch.randint(0, c, (n,), generator=g)


def _step(crit, x, t) -> None:
    x.grad = None
    crit(x, t).backward()


def _criterion(name: str, threads: int, baseline=None):
    import torch

    if name == "xent":
        import xent.torch as xt

        return xt.CrossEntropyLoss(num_threads=threads)
    if name == "baseline":
        return baseline.CrossEntropyLoss(num_threads=threads)
    return torch.nn.CrossEntropyLoss()


def overhead_calls(x, t, threads: int) -> dict:
    """Ways to get the loss and its gradient, from the public function to the bare kernel."""
    import torch

    import xent.torch as xt
    from xent.torch._ce import CROSS_ENTROPY, CEOptions
    from xent.torch._engine import fused_call

    opts = CEOptions(-100, "mean", 0.0, 0.0, None, threads)
    op = torch.ops.xent.cross_entropy_and_grad.default
    xd = x.detach()
    return {
        "xt.cross_entropy": lambda: _step(
            lambda a, b: xt.cross_entropy(a, b, num_threads=threads), x, t),
        "torch.ops.xent (op)": lambda: _step(lambda a, b: op(a, b, None, *opts)[0], x, t),
        "fused kernel only": lambda: fused_call(CROSS_ENTROPY, xd, t, None, None, opts),
        "F.cross_entropy": lambda: _step(torch.nn.functional.cross_entropy, x, t),
    }


def _median_time(fn, reps: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rounds(calls: dict, reps: int, rounds: int) -> dict:
    """Each call's per-round medians, the calls alternating round by round."""
    res = {k: [] for k in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            res[name].append(_median_time(fn, reps))
    return res


def _paired(calls: dict, reps: int) -> dict:
    """(wall, cpu) per call, the calls alternating call by call (starting one rotating)."""
    names = list(calls)
    res = {k: ([], []) for k in names}
    for fn in calls.values():
        fn()
    for i in range(reps):
        for k in names[i % len(names):] + names[:i % len(names)]:
            w0, c0 = time.perf_counter(), time.process_time()
            calls[k]()
            res[k][0].append(time.perf_counter() - w0)
            res[k][1].append(time.process_time() - c0)
    return res


def _report(label: str, res: dict, ref: str) -> None:
    meds = {k: statistics.median(v) for k, v in res.items()}
    for name, m in meds.items():
        spread = f"{min(res[name]) * 1e3:.3f}..{max(res[name]) * 1e3:.3f}"
        print(f"{label} {name:22s} median {m * 1e3:9.3f} ms  (rounds {spread} ms)  "
              f"{meds[ref] / m:5.2f}x vs {ref}", flush=True)


def _report_paired(label: str, res: dict) -> None:
    for name, (wall, cpu) in res.items():
        print(f"{label} {name:22s} wall median {statistics.median(wall) * 1e3:9.3f} ms  "
              f"cpu median {statistics.median(cpu) * 1e3:9.3f} ms  (n={len(wall)})",
              flush=True)


def _reps(n: int, c: int) -> int:
    return max(5, min(2000, int(2e8 // max(n * c, 1))))


def _calls(args, n: int, c: int, baseline) -> dict:
    x, t = _make(n, c)
    if args.overhead:
        return overhead_calls(x, t, args.threads)
    names = ["xent", "torch"] + (["baseline"] if baseline is not None else [])
    crits = {k: _criterion(k, args.threads, baseline) for k in names}
    return {k: (lambda crit=crit: _step(crit, x, t)) for k, crit in crits.items()}


def _load_baseline(path: str):
    spec = importlib.util.spec_from_file_location("xent_torch_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["4096x32000", "8x32000"])
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--repeat", type=int, default=0, help="calls per round (0: by size)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", help="a single-file xent.torch adapter to compare with")
    ap.add_argument("--overhead", action="store_true",
                    help="the custom-op path against the eager path and the bare kernel")
    ap.add_argument("--paired", action="store_true", help="alternate call by call")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    for shape in args.shapes:
        n, c = (int(v) for v in shape.split("x"))
        calls = _calls(args, n, c, baseline)
        label = f"{n}x{c} float32 fwd+bwd threads={args.threads}"
        reps = args.repeat or _reps(n, c)
        if args.paired:
            _report_paired(label, _paired(calls, reps * args.rounds))
        else:
            ref = "xt.cross_entropy" if args.overhead else "torch"
            _report(label, _rounds(calls, reps, args.rounds), ref)


if __name__ == "__main__":
    main()
