"""Results (``--json`` or ``--csv`` files of ``python -m xent bench``) -> a table.

Usage::

    python benchmarks/report.py results.json [more.json|more.csv ...] [--format md|text]

One line per case (and per run, when several files are given): the median of
every provider, xent's speedup over each of them (their time / xent's), and
xent's time over the copy and read-pass yardsticks (``xent/copy``,
``xent/read``: 1.0 means as fast as one pass over the logits).  Providers
timed again in the default malloc environment get a ``(def)`` column.

Standalone (standard library only) so that it runs as a plain script.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

YARDSTICKS = ("copy", "read")
SCHEMA_VERSION = 2  # the results this script reads (schema.py)
_NUMERIC = ("n_rows", "n_cols", "n_threads", "median_ms", "p20_ms", "p80_ms", "min_ms",
            "compile_ms", "xent_speedup", "time_vs_copy", "time_vs_read", "gbps")


def _number(v):
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def load(paths: list) -> list:
    """Every row of the given JSON or CSV results files."""
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            if path.endswith(".csv"):
                rows += [{k: _number(v) if k in _NUMERIC else v for k, v in r.items()}
                         for r in csv.DictReader(fh)]
            else:
                doc = json.load(fh)
                if doc.get("schema_version") != SCHEMA_VERSION:
                    raise ValueError(f"{path}: results schema {doc.get('schema_version', 1)}, "
                                     f"this report reads schema {SCHEMA_VERSION}")
                rows += doc["rows"]
    return rows


def _column(row: dict, both_envs: set) -> str:
    name = row["provider"]
    return f"{name}(def)" if name in both_envs and row["malloc_env"] == "default" else name


def _groups(rows: list) -> list:
    """Rows grouped per (run, case), in first-seen order, as {column: row}."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["timestamp"], row["case_id"]), []).append(row)
    out = []
    for members in groups.values():
        envs: dict = {}
        for r in members:
            envs.setdefault(r["provider"], set()).add(r["malloc_env"])
        both = {p for p, e in envs.items() if len(e) > 1}
        out.append({_column(r, both): r for r in members})
    return out


def _columns(groups: list) -> list:
    seen: dict = {}
    for g in groups:
        seen.update(dict.fromkeys(g))
    impls = [c for c in seen if c not in YARDSTICKS]
    return impls + [c for c in YARDSTICKS if c in seen]


def _fmt(v, spec: str = ".3g", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def ratio(a, b):
    """a / b, or None when either is missing or b is 0."""
    return None if a is None or b is None or not b else a / b


def pivot(rows: list) -> tuple:
    """(columns, cases): every case as ``(its first row, {column: median ms})``."""
    groups = _groups(rows)
    cols = _columns(groups)
    cases = [(next(iter(g.values())), {c: g[c]["median_ms"] for c in cols if c in g})
             for g in groups]
    return cols, cases


def table(rows: list) -> tuple:
    """(header, lines of cells): the pivoted table of `rows`."""
    cols, cases = pivot(rows)
    others = [c for c in cols if c != "xent" and c not in YARDSTICKS]
    head = ["op", "shape", "dtype", "thr", "simd"] + [f"{c} ms" for c in cols]
    head += [f"vs {c}" for c in others] + [f"xent/{y}" for y in YARDSTICKS]
    body = []
    for first, ms in cases:
        line = [first["label"], f"{int(first['n_rows'])}x{int(first['n_cols'])}",
                first["dtype"], str(int(first["n_threads"])), str(first["simd"])]
        line += [_fmt(ms.get(c)) for c in cols]
        line += [_fmt(ratio(ms.get(c), ms.get("xent")), ".2f", "x") for c in others]
        line += [_fmt(ratio(ms.get("xent"), ms.get(y)), ".2f") for y in YARDSTICKS]
        body.append(line)
    return head, body


def markdown(rows: list) -> str:
    """The table as GitHub Markdown."""
    head, body = table(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])


def text(rows: list) -> str:
    """The table as fixed-width text (the runner prints this)."""
    head, body = table(rows)
    width = [max(len(c) for c in col) for col in zip(head, *body)]
    left = 3  # op, shape and dtype are left-aligned; numbers to the right

    def line(cells):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, width))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in width])] + [line(b) for b in body])


def main(argv=None) -> int:
    """Command line: print the table of the given results files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON or CSV files of python -m xent bench")
    parser.add_argument("--format", choices=("md", "text"), default="md")
    args = parser.parse_args(argv)
    rows = load(args.results)
    print(markdown(rows) if args.format == "md" else text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
