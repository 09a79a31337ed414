"""A/B comparison of two primbench binaries, alternated run by run.

    python benchmarks/c/ab.py OLD_BINARY NEW_BINARY [--mode l1|mem] [--runs 5] [--reps 15]

Each run of a binary prints a table (see primbench.c); the runs of the two
binaries alternate so that a noisy neighbour slows both alike.  Printed per
row: the best (l1: minimum; mem: median) of each binary over the runs, and
the ratio new / old.  Build OLD from another tree's kernel headers, e.g.

    git show main:src/xent/_kernels/xent_math.h > /tmp/base/xent_math.h  (every header)
    gcc -O3 -std=c11 -fno-math-errno -fno-trapping-math -fopenmp -DXENT_ISA=1 \\
        -DXENT_F32=1 -I/tmp/base primbench.c /tmp/base/xent_team.c -o old_avx2_f32 -lm
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess

ROW = re.compile(r"^\s{2,}(?P<name>\S.*?)\s{2,}(?P<a>[\d.]+)(?: ms)?\s+(?P<b>[\d.]+)")


def run(binary: str, mode: str, reps: int) -> dict[tuple[str, str], float]:
    out = subprocess.run([binary, mode, str(reps)], capture_output=True, text=True,
                         check=True).stdout
    rows: dict[tuple[str, str], float] = {}
    section = ""
    for line in out.splitlines():
        if line.strip().startswith("threads="):
            section = line.strip()
            continue
        m = ROW.match(line)
        if m and m["name"] not in ("primitive",):
            rows[(section, m["name"].strip())] = float(m["a"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--mode", default="l1", choices=("l1", "mem"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    res: dict[str, dict[tuple[str, str], list[float]]] = {"old": {}, "new": {}}
    for _ in range(a.runs):
        for key, binary in (("old", a.old), ("new", a.new)):
            for k, v in run(binary, a.mode, a.reps).items():
                res[key].setdefault(k, []).append(v)
    pick = min if a.mode == "l1" else statistics.median
    unit = "ns/element, min" if a.mode == "l1" else "ms, median"
    print(f"{'row':48s} {'old':>9s} {'new':>9s} {'new/old':>8s}   ({unit} of {a.runs} runs)")
    for k in res["new"]:
        if k not in res["old"]:
            continue
        o, n = pick(res["old"][k]), pick(res["new"][k])
        label = (k[0] + " " if k[0] else "") + k[1]
        ratio = f"{n / o:8.2f}" if o > 0 else "       -"
        print(f"{label:48s} {o:9.3f} {n:9.3f} {ratio}")


if __name__ == "__main__":
    main()
