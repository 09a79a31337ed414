"""Issue 17's table: xent against torch eager, torch.compile and JAX, with yardsticks.

    python benchmarks/issue17_table.py [--dtypes float32,float64] [--threads 1,2]
                                       [--rows fused,loss,...] [--rounds 7] [--json FILE]

For every thread count and row a worker process is started (XLA's thread count
is fixed when JAX is imported, see rivals.jax_env; and a process's heap does not
shrink under the tuned malloc) with glibc's malloc tuned as in
``python -m xent bench`` (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=1e11: PyTorch
at its best).  In the worker, for each row: the logits (N(0, 3^2)) and targets are
built, every rival's call is prepared (compile time measured, reported and
excluded) and checked against xent's outputs, then all providers are timed in
rounds, taking turns (the first provider rotates), with a 20 ms pause before each
call so that the previous library's OpenMP pool is idle.  Medians are printed.

Yardsticks, with the same thread count: ``read`` is ``np.add.reduce`` over row
blocks, one block per thread (a read-only pass over the logits), and ``copy`` is
``np.copyto`` of the logits into a preallocated array, also per row block.  With
one thread they are exactly ``np.add.reduce(x, axis=None)`` and ``np.copyto``.

Goals checked (issue 17): read-only rows (logsumexp, loss only) at <= 1.25x the
read pass; fused in place at <= 1.2x the copy; every rival at >= 2x xent's time;
one thread at >= 0.55x the two-thread speed on the read-only rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rivals  # noqa: E402

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
PAUSE_S = 0.02

# (key, label, op, shape, xent in place); "op" is the rivals' operation
ROWS = [
    ("fused", "fused loss+grad", "fused", (4096, 32000), True),
    ("fused_vocab", "fused", "fused", (1024, 128256), True),
    ("loss", "loss only", "loss", (4096, 32000), False),
    ("loss_vocab", "loss only", "loss", (1024, 128256), False),
    ("loss_mid", "loss only", "loss", (32768, 1000), False),
    ("logsumexp", "logsumexp", "logsumexp", (4096, 32000), False),
    ("few_fused", "few classes fused", "fused", (262144, 10), True),
    ("few_loss", "few classes loss", "loss", (262144, 10), False),
    ("latency", "latency fused (out of place)", "fused", (8, 128256), False),
]
READ_ONLY_OPS = ("loss", "logsumexp")


def _logits(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape, dtype=np.float32) * 3.0).astype(dtype)


def _blocks(n_rows: int, threads: int) -> list[slice]:
    edges = np.linspace(0, n_rows, threads + 1).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _yardsticks(x: np.ndarray, threads: int, pool: ThreadPoolExecutor | None):
    dst = np.empty_like(x)
    blocks = _blocks(x.shape[0], threads)

    if threads == 1:
        return (lambda: np.add.reduce(x, axis=None)), (lambda: np.copyto(dst, x))

    def read():
        return sum(pool.map(lambda b: np.add.reduce(x[b], axis=None), blocks))

    def copy():
        list(pool.map(lambda b: np.copyto(dst[b], x[b]), blocks))

    return read, copy


def _xent_call(op: str, x, t, threads: int, in_place: bool):
    """(setup, run) of xent for the row."""
    import xent

    if op == "fused" and in_place:
        work = x.copy()
        return (lambda: np.copyto(work, x)), (
            lambda: xent.cross_entropy_and_grad(work, t, out=work, num_threads=threads)
        )
    if op == "fused":
        return None, lambda: xent.cross_entropy_and_grad(x, t, num_threads=threads)
    if op == "loss":
        return None, lambda: xent.cross_entropy(x, t, num_threads=threads)
    return None, lambda: xent.logsumexp(x, num_threads=threads)


def _time_rounds(calls: dict, rounds: int) -> dict:
    """Median seconds of each provider, providers taking turns within each round."""
    names = list(calls)
    for n in names:  # warm-up: two calls each
        for _ in range(2):
            setup, run = calls[n]
            if setup:
                setup()
            run()
    times = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            setup, run = calls[n]
            if setup:
                setup()
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            run()
            times[n].append(time.perf_counter() - t0)
    return {n: float(np.median(v)) for n, v in times.items()}


def worker(args) -> dict:
    import xent

    threads = args.threads_one
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    have = {r: rivals.unavailable(r) for r in rivals.RIVALS}
    skipped = {r: why for r, why in have.items() if why}
    out = {"threads": threads, "rows": [], "skipped_rivals": skipped}
    if not have["torch"]:
        import torch

        torch.set_num_threads(threads)
    for dtype in args.dtypes:
        for key, label, op, shape, in_place in ROWS:
            if args.rows and key not in args.rows:
                continue
            x = _logits(shape, dtype)
            t = np.random.default_rng(1).integers(0, shape[-1], size=shape[0], dtype=np.int64)
            row = {"key": key, "label": label, "op": op, "shape": list(shape), "dtype": dtype,
                   "threads": threads, "ms": {}, "compile_s": {}, "notes": {}}
            calls = {"xent": _xent_call(op, x, t, threads, in_place)}
            read, copy = _yardsticks(x, threads, pool)
            calls["read"] = (None, read)
            calls["copy"] = (None, copy)
            want = rivals.xent_reference(op, x, t if op != "logsumexp" else None, threads)
            for r in rivals.RIVALS:
                if have[r]:
                    row["notes"][r] = f"skipped: {have[r]}"
                    continue
                try:
                    prep = rivals.prepare(r, op, x, t, threads)
                    bad = rivals.check(prep.run(), want, dtype)
                except Exception as exc:  # noqa: BLE001 - a rival failing is a table note
                    row["notes"][r] = f"failed: {type(exc).__name__}: {exc}"[:300]
                    continue
                if bad:
                    row["notes"][r] = f"not timed, wrong result: {bad}"
                    continue
                row["compile_s"][r] = prep.compile_s
                calls[r] = (prep.setup, prep.run)
            del want
            rounds = args.rounds * (3 if np.prod(shape) < 2_000_000 else 1)
            for name, sec in _time_rounds(calls, rounds).items():
                row["ms"][name] = sec * 1e3
            out["rows"].append(row)
            times = ", ".join(f"{k} {v:.2f}" for k, v in row["ms"].items())
            print(f"  [t{threads}] {dtype} {label} {shape}: {times}", file=sys.stderr, flush=True)
            del calls, x, t
            gc.collect()
    out["xent"] = xent.__version__
    return out


def _fmt_ratio(r: float) -> str:
    return f"{r:.2f}x" if np.isfinite(r) else "-"


def print_table(results: list, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    rows_by = {}
    for res in results:
        for row in res["rows"]:
            rows_by[(row["dtype"], row["threads"], row["key"])] = row
    p(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
      f"medians of same-run alternating rounds; rival ratio = rival ms / xent ms; "
      f"compile time (s) in brackets, excluded")
    for res in results:
        for r, why in res.get("skipped_rivals", {}).items():
            p(f"note: {r} {why}")
        break
    for dtype in sorted({k[0] for k in rows_by}):
        for threads in sorted({k[1] for k in rows_by}):
            p(f"\n### {dtype}, {threads} thread(s)\n")
            p("| case | xent ms | read ms | copy ms | xent/read | xent/copy | torch eager "
              "| torch.compile | JAX | best rival / xent |")
            p("|---|---|---|---|---|---|---|---|---|---|")
            for key, label, _op, shape, _in_place in ROWS:
                row = rows_by.get((dtype, threads, key))
                if row is None:
                    continue
                ms = row["ms"]
                xm = ms["xent"]
                cells = []
                best = np.inf
                for r in rivals.RIVALS:
                    if r in ms:
                        ratio = ms[r] / xm
                        best = min(best, ratio)
                        c = f"{ms[r]:.1f} ({_fmt_ratio(ratio)})"
                        if r in row["compile_s"] and row["compile_s"][r] > 0:
                            c += f" [{row['compile_s'][r]:.1f}s]"
                    else:
                        c = "n/a"
                    cells.append(c)
                shp = "x".join(map(str, shape))
                p(f"| {label} {shp} | {xm:.2f} | {ms['read']:.2f} | {ms['copy']:.2f} "
                  f"| {xm / ms['read']:.2f} | {xm / ms['copy']:.2f} | " + " | ".join(cells)
                  + f" | {_fmt_ratio(best)} |")
            notes = [(k, r, n) for (d, th, k), row in rows_by.items()
                     if d == dtype and th == threads for r, n in row["notes"].items()]
            for k, r, n in notes:
                p(f"- {k}: {r} {n}")
    # goals
    p("\n### goals (issue 17)\n")
    for (dtype, threads, key), row in sorted(rows_by.items()):
        op = row["op"]
        ms = row["ms"]
        xm = ms["xent"]
        line = []
        if op in READ_ONLY_OPS:
            line.append(f"read-only {xm / ms['read']:.2f}x read (goal <= 1.25)")
            other = rows_by.get((dtype, 2, key)) if threads == 1 else None
            if other:
                speed = other["ms"]["xent"] / xm
                line.append(f"1 thread at {speed:.2f}x the 2-thread speed (goal >= 0.55)")
        if op == "fused" and key != "latency":
            line.append(f"fused {xm / ms['copy']:.2f}x copy (goal <= 1.2)")
        rv = [ms[r] / xm for r in rivals.RIVALS if r in ms]
        if rv:
            line.append(f"best rival {min(rv):.2f}x xent (goal >= 2)")
        shp = "x".join(map(str, row["shape"]))
        p(f"- {dtype} t{threads} {row['label']} {shp}: " + "; ".join(line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--threads", default="1,2")
    keys = ",".join(r[0] for r in ROWS)
    ap.add_argument("--rows", default="", help="comma-separated row keys: " + keys)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default="")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--threads-one", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.dtypes = [d for d in a.dtypes.split(",") if d]
    a.rows = [r for r in a.rows.split(",") if r]
    if a.worker:
        with open(a.out, "w") as fh:
            json.dump(worker(a), fh)
        return
    results = []
    keys = a.rows or [r[0] for r in ROWS]
    for th in (int(s) for s in a.threads.split(",")):
        env = dict(os.environ, **TUNED_ENV, **rivals.jax_env(th))
        merged = {"threads": th, "rows": []}
        # one process per row: under the tuned malloc environment a process's heap
        # never shrinks, and the rows' inputs (up to 1 GB each) would pile up
        for dtype in a.dtypes:
            for key in keys:
                with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                    path = tmp.name
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--out", path,
                       "--threads-one", str(th), "--dtypes", dtype, "--rows", key,
                       "--rounds", str(a.rounds)]
                subprocess.run(cmd, env=env, check=True)
                with open(path) as fh:
                    res = json.load(fh)
                os.unlink(path)
                merged["rows"] += res["rows"]
                merged["skipped_rivals"] = res["skipped_rivals"]
                merged["xent"] = res["xent"]
        results.append(merged)
    print_table(results)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
