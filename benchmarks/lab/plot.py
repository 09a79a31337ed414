"""Bar chart of xent's speedups from a results file (needs matplotlib).

Usage (from the checkout root)::

    python -m benchmarks.lab.plot results.json speedups.png
"""

from __future__ import annotations

import argparse
import sys

from .. import report


def _series(rows: list) -> tuple:
    """(bar labels, {"vs provider": xent's speedups, 0 where missing})."""
    cols, cases = report.pivot(rows)
    labels = [f"{r['label']}\n{int(r['n_rows'])}x{int(r['n_cols'])} {r['dtype']} "
              f"t{int(r['n_threads'])}" for r, _ in cases]
    series = {}
    for col in cols:
        if col == "xent" or col in report.YARDSTICKS:
            continue
        vals = [report.ratio(ms.get(col), ms.get("xent")) or 0.0 for _, ms in cases]
        if any(vals):
            series[f"vs {col}"] = vals
    return labels, series


def write_plot(rows: list, path: str, title: str = "") -> None:
    """Horizontal bars (log scale) of xent's speedup over every provider, per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, series = _series(rows)
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(4, len(labels)) + 1.5))
    y = np.arange(len(labels))
    h = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        ax.barh(y + i * h, vals, height=h, label=name)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y + h * (len(series) - 1) / 2, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speedup of xent (x, higher is better)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    """Command line: results file(s) -> PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("png")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    write_plot(report.load(args.results), args.png, args.title)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
