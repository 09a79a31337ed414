"""Two-thread calls on a machine whose CPUs are busy with other processes.

Each configuration runs in a fresh process (the OpenMP variables are read once, when
the runtime starts): xent's defaults, ``GOMP_SPINCOUNT=1000``, ``XENT_PIN_THREADS=1``
and both, plus PyTorch's ``logsumexp`` with 1 and 2 threads for reference.  Medians
of 150 back-to-back calls per shape, in ms.  Run it while the machine is loaded (and
again idle) and quote the load average printed with the table::

    python -m benchmarks.lab.contention
"""

from __future__ import annotations

import os
import subprocess
import sys

SHAPES = ((8, 128256), (64, 32000), (1024, 1000))
CONFIGS = (
    ("defaults", {}),
    ("GOMP_SPINCOUNT=1000", {"GOMP_SPINCOUNT": "1000"}),
    ("XENT_PIN_THREADS=1", {"XENT_PIN_THREADS": "1"}),
    ("both", {"GOMP_SPINCOUNT": "1000", "XENT_PIN_THREADS": "1"}),
)

CHILD = r"""
import sys, time
import numpy as np
which = sys.argv[1]
shapes = eval(sys.argv[2])
rng = np.random.default_rng(0)
if which == "torch":
    import torch
for n, c in shapes:
    row = []
    for th in (1, 2):
        if which == "torch":
            torch.set_num_threads(th)
            x = torch.randn(n, c)
            call = lambda: torch.logsumexp(x, 1)
        else:
            import xent
            x = rng.standard_normal((n, c), dtype=np.float32)
            y = rng.integers(0, c, n)
            call = lambda: xent.cross_entropy_and_grad(x, y, num_threads=th)
        ts = []
        for _ in range(150):
            t0 = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t0)
        ts.sort()
        row.append(ts[len(ts) // 2] * 1e3)
    print(f"{n}x{c}", *(f"{v:.3f}" for v in row))
"""


def run(which: str, env: dict) -> list[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "XENT_PIN_THREADS")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", CHILD, which, repr(SHAPES)], env=full,
                         capture_output=True, text=True, check=True).stdout
    return out.split("\n")[:-1]


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f}, CPUs: {os.cpu_count()}")
    print(f"{'configuration':34s} {'shape':>11s} {'1 thread':>9s} {'2 threads':>10s}")
    for name, env in CONFIGS:
        for line in run("xent", env):
            shape, t1, t2 = line.split()
            print(f"{'xent fused, ' + name:34s} {shape:>11s} {t1:>9s} {t2:>10s}")
    for line in run("torch", {}):
        shape, t1, t2 = line.split()
        print(f"{'torch.logsumexp, defaults':34s} {shape:>11s} {t1:>9s} {t2:>10s}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
