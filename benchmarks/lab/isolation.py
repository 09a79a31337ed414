"""Worker processes: the malloc environment and process isolation of big inputs.

PyTorch looks several times slower than it is when glibc gives freed memory
back to the system: every call then page-faults its large temporaries in
again.  ``TUNED_ENV`` keeps freed memory in the heap (PyTorch at its best);
the runner times every provider under it and the malloc-sensitive ones again
in the default environment (PyTorch as users meet it).  An environment
variable of glibc only takes effect at process start, hence worker processes.

Under ``TUNED_ENV`` a process's heap never shrinks, and after PyTorch ran on
500 MB inputs it has grown well beyond the memory in use (fragmentation); so
in full mode every case whose input reaches ``BIG_BYTES`` gets a fresh worker
(`plan`).  A library whose thread count is fixed when it starts (XLA's pool,
JAX) needs one worker per thread count: ``plan(..., by_threads=True)``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
BIG_BYTES = 200_000_000
BENCH_DIR = Path(__file__).resolve().parents[1]


def child_env(tuned: bool) -> dict:
    """This process's environment with or without TUNED_ENV, the harness and xent importable."""
    env = {k: v for k, v in os.environ.items() if k not in TUNED_ENV}
    if tuned:
        env.update(TUNED_ENV)
    paths = [str(BENCH_DIR.parent)]
    spec = importlib.util.find_spec("xent")
    if spec is not None and spec.origin:  # the same xent as this process, not another one
        paths.append(str(Path(spec.origin).resolve().parents[1]))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def plan(cases: list, scale: str, by_threads: bool = False) -> list:
    """Case ids grouped per worker process: big inputs alone in full mode, else one group.

    `by_threads`: one group (or more) per thread count, in order of first
    appearance; the ids then come out of case order (the runner puts the
    results back in order).
    """
    if by_threads:
        counts = dict.fromkeys(c.n_threads for c in cases)
        return [g for n in counts for g in plan([c for c in cases if c.n_threads == n], scale)]
    groups, small = [], []
    for case in cases:
        if scale in ("full", "rivals") and case.nbytes >= BIG_BYTES:
            if small:
                groups.append(small)
                small = []
            groups.append([case.id])
        else:
            small.append(case.id)
    if small or not groups:
        groups.append(small)
    return groups


def spawn(config: dict, tuned: bool) -> dict:
    """Run the worker of ``benchmarks.run`` on `config` in a fresh interpreter; its output."""
    with tempfile.TemporaryDirectory(prefix="xent-bench-") as tmp:
        cfg = os.path.join(tmp, "config.json")
        out = os.path.join(tmp, "out.json")
        with open(cfg, "w") as fh:
            json.dump(dict(config, out=out), fh)
        cmd = [sys.executable, str(BENCH_DIR / "__main__.py"), "--worker", cfg]
        proc = subprocess.run(cmd, env=child_env(tuned), check=False)  # noqa: S603
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker {config['label']!r} failed "
                               f"(exit status {proc.returncode})")
        with open(out) as fh:
            return json.load(fh)
