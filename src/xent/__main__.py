"""Command line: ``python -m xent info`` and ``python -m xent bench``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build and runtime configuration")
    sub.add_parser("bench", add_help=False,
                   help="benchmark xent against PyTorch and NumPy (from a source checkout; "
                   "python -m xent bench --help for its options)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from ._bench import main as bench

        return bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    import xent

    xent.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
