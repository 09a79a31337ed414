"""Fused linear + cross-entropy (issue 19): peak extra memory and time of one training step.

Each (method, shape, environment) runs in a fresh process: the inputs are made
(hidden ``(N, D)``, weight ``(V, D)``, targets, a fraction of them ignored), every
library is warmed up, the free heap is trimmed and the high-water mark (VmHWM) reset;
then one forward + backward gives the peak extra memory (VmHWM after the step minus the
resident set before it: gradients, logits and every temporary) and further steps give
the time (median).

Methods: ``eager`` (``F.cross_entropy(F.linear(h, W), t)`` + backward), ``compile``
(the same under ``torch.compile``), ``torch_chunked`` (PyTorch's own
``F.linear_cross_entropy`` with chunking options), ``xent_numpy``
(``xent.linear_cross_entropy_and_grad``, NumPy's OpenBLAS) and ``xent_torch``
(``xent.torch.linear_cross_entropy`` + backward, PyTorch's BLAS).

    python -m benchmarks.lab.linear_ce                        # the issue's shapes
    python -m benchmarks.lab.linear_ce --shapes 1024x256x8000 --methods eager,xent_numpy
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \\
        python -m benchmarks.lab.linear_ce --interleave 5   # time ratios, one process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
METHODS = ("eager", "compile", "torch_chunked", "xent_numpy", "xent_torch")


def _peak_rss_mb() -> float:
    """The resident set's high-water mark (VmHWM, resettable; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current resident set (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _release_free_heap() -> None:
    """glibc's malloc_trim(0): free heap memory left by the warm-up would otherwise stay
    resident and be reused by the step (not counted as its memory)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _rss_mb() -> float:
    """The resident set now (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _step_fn(method, h, w, t, chunk):
    """A callable doing one forward + backward of `method` (returns the loss)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if method == "xent_numpy":
        import xent
        hn, wn, tn = h.numpy(), w.numpy(), t.numpy()

        def step():
            return float(xent.linear_cross_entropy_and_grad(hn, wn, tn, chunk_size=chunk)[0])
        return step
    hp = h.clone().requires_grad_()
    wp = w.clone().requires_grad_()
    if method == "xent_torch":
        import xent.torch as xt

        def loss_fn(a, b):
            return xt.linear_cross_entropy(a, b, t, chunk_size=chunk)
    elif method == "torch_chunked":
        opts = (torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk) if chunk
                else torch.nn.LinearCrossEntropyOptions())

        def loss_fn(a, b):
            return F.linear_cross_entropy(a, b, t, options=opts)
    else:
        def loss_fn(a, b):
            return F.cross_entropy(F.linear(a, b), t)
        if method == "compile":
            loss_fn = torch.compile(loss_fn)

    def step():
        hp.grad = wp.grad = None
        loss = loss_fn(hp, wp)
        loss.backward()
        return float(loss.detach())
    del np
    return step


def child(method, n, d, v, ignored, chunk, repeats, seed=0):
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g).div_(d ** 0.5)  # no temporary: the peak is the step's
    t = torch.randint(0, v, (n,), generator=g)
    if ignored:
        t[torch.rand(n, generator=g) < ignored] = -100
    # load every library and its BLAS/thread pools on a tiny problem first, and touch
    # both BLAS libraries' per-thread packing buffers with one large product each
    # (a fixed per-process cost that would otherwise count as the step's memory)
    import numpy as np
    a = np.ones((2048, 2048), np.float32)
    np.matmul(a, a)
    torch.mm(torch.from_numpy(a), torch.from_numpy(a))
    a, b = np.ones((512, 32000), np.float32), np.ones((512, 256), np.float32)
    np.matmul(a.T, b)  # OpenBLAS keeps ~29 MB more for products with a transposed operand
    torch.mm(torch.from_numpy(a).t(), torch.from_numpy(b))
    del a, b
    small = _step_fn(method, h[:8, :16].contiguous(), w[:32, :16].contiguous(),
                     t[:8].clamp(max=31), None)
    small()
    small()
    step = _step_fn(method, h, w, t, chunk)
    _release_free_heap()
    _reset_peak_rss()
    before, high_before = _rss_mb(), _peak_rss_mb()
    t0 = time.perf_counter()
    loss = step()
    first = time.perf_counter() - t0
    high = _peak_rss_mb()
    # without a reset high-water mark, an earlier peak above the step's gives no number
    peak = round(high - before, 1) if high > high_before else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps(dict(method=method, n=n, d=d, v=v, ignored=ignored, chunk=chunk,
                          loss=loss, peak_extra_mb=peak,
                          rss_before_mb=round(before, 1), first_s=round(first, 3),
                          median_s=round(statistics.median(times), 3) if times else None,
                          times=[round(x, 3) for x in times])))


def interleaved(methods, n, d, v, ignored, chunk, rounds, seed=0):
    """Time every method in one process, one step each per round (load drift hits all alike).

    Prints per method the median time and the median over rounds of its ratio to
    the first method's time in the same round.
    """
    import torch
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g).div_(d ** 0.5)
    t = torch.randint(0, v, (n,), generator=g)
    if ignored:
        t[torch.rand(n, generator=g) < ignored] = -100
    steps = {m: _step_fn(m, h, w, t, chunk) for m in methods}
    for m in methods:  # warm-up (and compilation)
        steps[m]()
    times = {m: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            t0 = time.perf_counter()
            steps[m]()
            times[m].append(time.perf_counter() - t0)
    base = methods[0]
    for m in methods:
        ratios = [a / b for a, b in zip(times[m], times[base])]
        print(json.dumps(dict(method=m, n=n, d=d, v=v, ignored=ignored, rounds=rounds,
                              median_s=round(statistics.median(times[m]), 3),
                              times=[round(x, 3) for x in times[m]],
                              median_ratio_vs_first=round(statistics.median(ratios), 3),
                              malloc="tuned" if os.environ.get("MALLOC_MMAP_MAX_") == "0"
                              else "default")), flush=True)


def run(method, shape, ignored, chunk, repeats, tuned):
    n, d, v = shape
    env = {k: val for k, val in os.environ.items() if k not in TUNED_ENV}
    if tuned:
        env.update(TUNED_ENV)
    cmd = [sys.executable, "-m", "benchmarks.lab.linear_ce", "--child", method,
           f"{n}x{d}x{v}", str(ignored), str(chunk or 0), str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        return dict(method=method, n=n, d=d, v=v, ignored=ignored,
                    error=out.stderr.strip().splitlines()[-1:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["malloc"] = "tuned" if tuned else "default"
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--shapes", default="4096x2048x32000,4096x256x32000",
                   help="comma-separated NxDxV")
    p.add_argument("--ignored", default="0,0.5", help="fractions of ignored targets")
    p.add_argument("--methods", default="eager,xent_numpy,xent_torch")
    p.add_argument("--chunk", type=int, default=0, help="rows per chunk (0: xent's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--malloc", default="tuned,default", help="glibc malloc settings to run")
    p.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                   help="time only: all methods in this process, ROUNDS interleaved rounds "
                        "(run it under the malloc environment wanted)")
    a = p.parse_args(argv)
    if a.interleave:
        for shape in a.shapes.split(","):
            n, d, v = map(int, shape.split("x"))
            for ignored in map(float, a.ignored.split(",")):
                interleaved(a.methods.split(","), n, d, v, ignored, a.chunk or None,
                            a.interleave)
        return
    if a.child:
        method, shape, ignored, chunk, repeats = a.child
        n, d, v = map(int, shape.split("x"))
        child(method, n, d, v, float(ignored), int(chunk) or None, int(repeats))
        return
    for shape in a.shapes.split(","):
        n, d, v = map(int, shape.split("x"))
        for ignored in map(float, a.ignored.split(",")):
            for tuned in (m == "tuned" for m in a.malloc.split(",")):
                rows = [run(m, (n, d, v), ignored, a.chunk or None, a.repeats, tuned)
                        for m in a.methods.split(",")]
                base = next((r for r in rows if r["method"] == "eager" and "error" not in r),
                            None)
                for r in rows:
                    if base and "error" not in r and r["median_s"] and base["median_s"]:
                        r["time_vs_eager"] = round(r["median_s"] / base["median_s"], 3)
                    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
