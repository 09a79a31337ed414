"""Command line: ``python -m xent info`` and ``python -m xent bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build and runtime configuration")
    bench = sub.add_parser("bench", help="benchmark xent against NumPy and PyTorch")
    bench.add_argument("--quick", action="store_true", help="small shapes, under a minute")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="write a bar chart (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.command == "info":
        import xent

        xent.show_config()
        return 0
    from ._bench import run_bench

    return run_bench(quick=args.quick, json_path=args.json, plot_path=args.plot)


if __name__ == "__main__":
    sys.exit(main())
