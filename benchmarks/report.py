"""Results (``--json`` or ``--csv`` files of ``python -m xent bench``) -> a table.

Usage::

    python benchmarks/report.py results.json [more.json|more.csv ...] [--format md|text]

One line per case (and per run, when several files are given): the median of
every provider, xent's speedup over each of them (their time / xent's) and over
the fastest rival (``vs best``: torch, torch.compile, jax), and xent's time over
the copy and read-pass yardsticks (``xent/copy``, ``xent/read``: 1.0 means as
fast as one pass over the logits).  Providers timed again in the default malloc
environment get a ``(def)`` column.  A second table lists the compile times
(torch.compile, JAX), which are excluded from the medians.

Standalone (standard library only) so that it runs as a plain script.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

YARDSTICKS = ("copy", "read")
#: ``vs best`` is xent's speedup over the fastest of these (issue 17's rivals).
RIVALS = ("torch", "torch.compile", "jax")
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
    """xent, the rivals (each with its default-env column), NumPy, others, the yardsticks."""
    seen: dict = {}
    for g in groups:
        seen.update(dict.fromkeys(g))
    order = ("xent", *RIVALS, "numpy")

    def rank(col: str) -> tuple:
        base = col.removesuffix("(def)")
        return (order.index(base) if base in order else len(order), col != base)

    impls = sorted((c for c in seen if c not in YARDSTICKS), key=rank)  # stable: others as seen
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
    rivals = [c for c in RIVALS if c in cols]
    head = _case_head() + ["simd"] + [f"{c} ms" for c in cols]
    head += [f"vs {c}" for c in others] + (["vs best"] if rivals else [])
    head += [f"xent/{y}" for y in YARDSTICKS]
    body = []
    for first, ms in cases:
        line = _case_cells(first) + [str(first["simd"])]
        line += [_fmt(ms.get(c)) for c in cols]
        line += [_fmt(ratio(ms.get(c), ms.get("xent")), ".2f", "x") for c in others]
        if rivals:
            best = min((ms[c] for c in rivals if c in ms), default=None)
            line.append(_fmt(ratio(best, ms.get("xent")), ".2f", "x"))
        line += [_fmt(ratio(ms.get("xent"), ms.get(y)), ".2f") for y in YARDSTICKS]
        body.append(line)
    return head, body


def _case_head() -> list:
    return ["op", "shape", "dtype", "thr"]


def _case_cells(row: dict) -> list:
    return [row["label"], f"{int(row['n_rows'])}x{int(row['n_cols'])}", row["dtype"],
            str(int(row["n_threads"]))]


def _note(what: str) -> str:
    """The bracketed note at the end of a row's ``what`` (how the call ran), or ""."""
    _, sep, tail = what.rpartition(" [")
    return tail[:-1] if sep and tail.endswith("]") else ""


def compile_table(rows: list) -> tuple:
    """(header, lines of cells): seconds of every compile step, with its note; () if none."""
    timed = [r for r in rows if r.get("compile_ms") is not None]
    if not timed:
        return ()
    cols = list(dict.fromkeys(r["provider"] for r in timed))
    cases: dict = {}
    for r in timed:
        cases.setdefault((r["timestamp"], r["case_id"]), {})[r["provider"]] = r
    body = []
    for group in cases.values():
        first = next(iter(group.values()))
        line = _case_cells(first)
        for c in cols:
            r = group.get(c)
            note = _note(r.get("what") or "") if r else ""
            cell = _fmt(r["compile_ms"] / 1e3, ".2f") if r else "-"
            line.append(f"{cell} ({note})" if note else cell)
        body.append(line)
    return _case_head() + [f"{c} compile s" for c in cols], body


def _markdown(head: list, body: list) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])


def markdown(rows: list) -> str:
    """The table as GitHub Markdown."""
    return _markdown(*table(rows))


def text(rows: list) -> str:
    """The table as fixed-width text (the runner prints this)."""
    return _text(*table(rows))


def compile_text(rows: list) -> str:
    """The compile table as fixed-width text, or "" when nothing was compiled."""
    found = compile_table(rows)
    return _text(*found) if found else ""


def _text(head: list, body: list) -> str:
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
    compiled = compile_table(rows)
    if compiled:
        print("\nCompile time (s), excluded from the medians:\n")
        print(_markdown(*compiled) if args.format == "md" else _text(*compiled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
