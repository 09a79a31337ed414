"""bfloat16 / float16 logits (issue 18): xent's 16-bit kernels against its float32 ones
and PyTorch's bfloat16/float16 CPU path, same process, providers alternating round by
round (median of each round's median)::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \\
        python -m benchmarks.lab.half --shape 4096x32000 --threads 1 2

Rows: logsumexp, loss only, fused loss+grad in place (xent; PyTorch: forward and
backward, its best form), and the adapter's ``CrossEntropyLoss`` forward+backward
(also with the float32 copy of the input it made before issue 18, ``copy``).
Needs ml_dtypes (bfloat16) and torch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

OPS = ("logsumexp", "loss", "fused", "adapter")


def _calls(op: str, dtype: str, x32: np.ndarray, t: np.ndarray, nt: int) -> dict:
    """{provider: (call, restore or None)} for one op and one 16-bit dtype."""
    import ml_dtypes
    import torch

    import xent
    import xent.torch as xtorch

    F = torch.nn.functional
    hdt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    tdt = torch.bfloat16 if dtype == "bfloat16" else torch.float16
    xh = x32.astype(hdt)
    th = torch.from_numpy(xh.view(np.int16)).view(tdt)
    tt = torch.from_numpy(t)
    out = {}
    for name, x in (("xent float32", x32), (f"xent {dtype}", xh)):
        if op == "logsumexp":
            out[name] = (lambda x=x: xent.logsumexp(x, num_threads=nt), None)
        elif op == "loss":
            out[name] = (lambda x=x: xent.cross_entropy(x, t, num_threads=nt), None)
        elif op == "fused":
            w = x.copy()
            out[name] = (lambda w=w: xent.cross_entropy_and_grad(w, t, out=w, num_threads=nt),
                         lambda w=w, x=x: np.copyto(w, x))
    if op == "logsumexp":
        out[f"torch {dtype}"] = (lambda: torch.logsumexp(th, -1), None)
    elif op == "loss":
        out[f"torch {dtype}"] = (lambda: F.cross_entropy(th, tt), None)
    else:
        from xent.torch import _engine

        for name, crit in ((f"torch {dtype}", torch.nn.CrossEntropyLoss()),
                           (f"xent.torch {dtype}", xtorch.CrossEntropyLoss(num_threads=nt)),
                           (f"xent.torch {dtype} copy", xtorch.CrossEntropyLoss(num_threads=nt))):
            if op == "fused" and name.startswith("xent.torch"):
                continue
            leaf = th.clone().requires_grad_()
            copy = name.endswith("copy")

            def step(crit=crit, leaf=leaf, copy=copy):
                leaf.grad = None
                if copy:  # the float32 copy the adapter made before issue 18
                    saved, _engine.half_numpy = _engine.half_numpy, lambda x: None
                try:
                    crit(leaf, tt).backward()
                finally:
                    if copy:
                        _engine.half_numpy = saved

            out[name] = (step, None)
    return out


def run(shape, threads, dtypes, ops, rounds: int, reps: int) -> None:
    import torch

    n, c = shape
    rng = np.random.default_rng(0)
    x32 = (rng.standard_normal((n, c), dtype=np.float32) * 3.0)
    t = rng.integers(0, c, n)
    for nt in threads:
        torch.set_num_threads(nt)
        for dtype in dtypes:
            for op in ops:
                calls = _calls(op, dtype, x32, t, nt)
                times = {k: [] for k in calls}
                for fn, restore in calls.values():  # warm-up
                    fn()
                    if restore:
                        restore()
                for _ in range(rounds):
                    for k, (fn, restore) in calls.items():
                        per = []
                        for _ in range(reps):
                            t0 = time.perf_counter()
                            fn()
                            per.append(time.perf_counter() - t0)
                            if restore:
                                restore()
                        times[k].append(statistics.median(per))
                med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
                base = med["xent float32"] if "xent float32" in med else None
                for k, ms in med.items():
                    rel = f"  {base / ms:5.2f}x xent float32" if base else ""
                    vs = [f"{med[o] / ms:5.2f}x {o}" for o in med if o.startswith("torch")
                          and not k.startswith("torch")]
                    print(f"{op:10s} {n}x{c} t{nt} {k:22s} {ms:9.2f} ms{rel}  "
                          + "  ".join(vs), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="4096x32000")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"])
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    shape = tuple(int(v) for v in a.shape.split("x"))
    import xent

    print(f"xent {xent.__version__}, SIMD path {xent._kernels._core.simd_active()}")
    run(shape, a.threads, a.dtypes, a.ops, a.rounds, a.reps)


if __name__ == "__main__":
    main()
