"""xent.torch.vocab_parallel_cross_entropy: forward + backward time with 1 and 2 gloo ranks.

Each configuration runs in fresh processes (gloo on 127.0.0.1, one torch thread per
rank): one rank holding the whole vocabulary, and two ranks holding half each; for
reference, ``xent.torch.cross_entropy`` and ``torch.nn.functional.cross_entropy`` on
the full logits in one process.  Median of `--repeat` forward + backward steps, in ms
(the slowest rank's), float32, label smoothing 0.1.  Run::

    python -m benchmarks.lab.vocab_parallel [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

CHILD = r"""
import os, statistics, sys, time
import torch, torch.distributed as dist
import torch.nn.functional as F
import xent.torch
rank, world, port, n, v, repeat = (int(a) for a in sys.argv[1:7])
which = sys.argv[7]
torch.set_num_threads(1)
if which == "vp":
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
g = torch.Generator().manual_seed(0)
full = torch.randn(n, v, generator=g)
t = torch.randint(0, v, (n,), generator=g)
lo, hi = rank * v // world, (rank + 1) * v // world
times = []
for _ in range(repeat + 1):
    x = full[:, lo:hi].clone().requires_grad_(True)
    t0 = time.perf_counter()
    if which == "vp":
        loss = xent.torch.vocab_parallel_cross_entropy(x, t, vocab_start=lo, label_smoothing=0.1)
    elif which == "xent":
        loss = xent.torch.cross_entropy(x, t, label_smoothing=0.1)
    else:
        loss = F.cross_entropy(x, t, label_smoothing=0.1)
    loss.backward()
    times.append(time.perf_counter() - t0)
med = statistics.median(times[1:]) * 1e3
if which == "vp":
    out = [None] * world
    dist.all_gather_object(out, med)
    med = max(out)
    dist.destroy_process_group()
if rank == 0:
    print(f"{med:.2f}", flush=True)
"""


def _run(which: str, world: int, n: int, v: int, repeat: int) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(r), str(world), str(port),
                               str(n), str(v), str(repeat), which], env=env,
                              stdout=subprocess.PIPE, text=True) for r in range(world)]
    outs = [p.communicate()[0].strip() for p in procs]
    return outs[0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args(argv)
    n, v = (128, 8000) if a.quick else (1024, 32000)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"N={n} V={v} float32, label_smoothing=0.1, forward+backward, median of "
          f"{a.repeat} (ms, slowest rank); load average {load:.2f}; {os.cpu_count()} CPUs")
    for name, which, world in (("torch F.cross_entropy, 1 process", "torch", 1),
                               ("xent.torch.cross_entropy, 1 process", "xent", 1),
                               ("vocab_parallel, 1 rank", "vp", 1),
                               ("vocab_parallel, 2 ranks (V/2 each)", "vp", 2)):
        print(f"{name:40s} {_run(which, world, n, v, a.repeat):>9s}")


if __name__ == "__main__":
    main()
