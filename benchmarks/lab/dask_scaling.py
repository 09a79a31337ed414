"""xent.dask throughput with 1 and 2 Dask workers against xent in-process.

Two workloads, both float32: perplexity of a logits array ``(N, V)`` and of hidden
states ``(N, D)`` with an output layer ``(V, D)`` (the logits formed chunk by chunk
inside the tasks).  The data is persisted on the cluster first, so the timings are
the scoring alone, and scored `--passes` times in one call (the persisted chunks
concatenated with themselves: more work per call without more memory, as a real
dataset would give, so Dask's fixed cost per call is not what is measured; the
in-process figures score the arrays as many times); each figure is the median of
`--repeat` runs, in tokens per second, and "per core" divides by the cores used
(workers x 1 thread; in-process: ``num_threads``).  The goal of the issue is >= 90%
of the in-process throughput per core.  Run::

    python -m benchmarks.lab.dask_scaling            # processes=True workers
    python -m benchmarks.lab.dask_scaling --threads  # one process, threaded workers
    python -m benchmarks.lab.dask_scaling --quick    # small shapes (a smoke run)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import xent


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up (scatter, imports, page faults)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", action="store_true", help="processes=False workers")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--passes", type=int, default=4)
    p.add_argument("--chunk-rows", type=int, default=0,
                   help="rows per Dask chunk (default N/8); larger chunks amortise "
                        "Dask's cost per task")
    a = p.parse_args(argv)

    import dask
    import dask.array as da
    import distributed

    import xent.dask

    n, v, d = (1024, 4096, 64) if a.quick else (4096, 16384, 128)
    k = 2 if a.quick else a.passes
    chunk = a.chunk_rows or n // 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, v), dtype=np.float32)
    h = rng.standard_normal((n, d), dtype=np.float32)
    w = (rng.standard_normal((v, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    t = rng.integers(0, v, n)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"N={n} V={v} D={d} float32 scored {k} times a call, chunks of {chunk} rows, "
          f"median of {a.repeat}; "
          f"load average {load:.2f}; {os.cpu_count()} CPUs; "
          f"workers: {'threads' if a.threads else 'processes'}")
    rows = []
    for nt in (1, 2):
        rows.append((f"in-process num_threads={nt}", nt,
                     _median_time(lambda nt=nt: [xent.perplexity(x, t, num_threads=nt)
                                                 for _ in range(k)], a.repeat),
                     _median_time(lambda nt=nt: [_linear_in_process(h, w, t, chunk, nt)
                                                 for _ in range(k)], a.repeat)))
    # xent.dask's own cost (graph, exact sums) without a cluster's scheduling
    with dask.config.set(scheduler="synchronous"):
        xs = da.concatenate([da.from_array(x, chunks=(chunk, v))] * k)
        hs = da.concatenate([da.from_array(h, chunks=(chunk, d))] * k)
        tk = np.tile(t, k)
        rows.append(("xent.dask, synchronous scheduler", 1,
                     _median_time(lambda: xent.dask.perplexity(xs, tk, num_threads=1),
                                  a.repeat),
                     _median_time(lambda: xent.dask.linear_perplexity(
                         hs, w, tk, chunk_size=chunk, num_threads=1), a.repeat)))
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                      processes=not a.threads, dashboard_address=":0",
                                      silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:
            xd = client.persist(da.from_array(x, chunks=(chunk, v)))
            hd = client.persist(da.from_array(h, chunks=(chunk, d)))
            distributed.wait([xd, hd])
            xd, hd = da.concatenate([xd] * k), da.concatenate([hd] * k)
            tk = np.tile(t, k)
            wf = client.scatter(w, broadcast=True)
            rows.append((f"xent.dask {workers} worker(s) x 1 thread", workers,
                         _median_time(lambda xd=xd, tk=tk: xent.dask.perplexity(xd, tk), a.repeat),
                         _median_time(lambda hd=hd, wf=wf, tk=tk: xent.dask.linear_perplexity(
                             hd, wf, tk, chunk_size=chunk), a.repeat)))
    base = {i: n * k / rows[0][i] for i in (2, 3)}
    print(f"{'configuration':38s} {'logits tok/s':>13s} {'per core':>9s} "
          f"{'hidden tok/s':>13s} {'per core':>9s}")
    for name, cores, t_logits, t_hidden in rows:
        cells = []
        for i, sec in ((2, t_logits), (3, t_hidden)):
            rate = n * k / sec
            cells.append(f"{rate:13,.0f} {rate / cores / base[i]:8.0%}")
        print(f"{name:38s} {cells[0]} {cells[1]}")
    print("per core: throughput / cores, relative to in-process num_threads=1")


def _linear_in_process(h, w, t, chunk, nt):
    """In-process perplexity from hidden states (xent.linear_cross_entropy's mean)."""
    return np.exp(xent.linear_cross_entropy(h, w, t, chunk_size=chunk, num_threads=nt))


if __name__ == "__main__":
    main()
