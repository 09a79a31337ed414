"""``python -m xent bench``: run the benchmark harness of a xent source checkout.

The harness (cases, providers, timing, reports) lives in the checkout's
``benchmarks/`` folder, not in the package.  It is looked for in
``XENT_BENCH_DIR``, then in the current directory and its parents, then next
to this package (editable installs), and run in a fresh interpreter with the
same xent importable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Files that identify xent's harness folder.
_MARKERS = ("__main__.py", "run.py", "cases.py", "providers.py")

_NOT_FOUND = """\
error: `python -m xent bench` runs the benchmarks/ folder of a xent source checkout,
and none was found here. Run it from the root of the checkout:

    git clone <xent repository> && cd xent
    pip install ".[bench]" && python -m xent bench --quick

or point XENT_BENCH_DIR at the checkout's benchmarks/ folder."""


def find_harness() -> Path | None:
    """The harness folder (see the module docstring), or None."""
    env = os.environ.get("XENT_BENCH_DIR")
    if env:
        candidates = [Path(env)]
    else:
        cwd = Path.cwd()
        here = Path(__file__).resolve().parent
        candidates = [d / "benchmarks" for d in (cwd, *cwd.parents, *here.parents)]
    for folder in candidates:
        if all((folder / name).is_file() for name in _MARKERS):
            return folder.resolve()
    return None


def main(argv: list) -> int:
    """Run the harness with the command line arguments `argv`; its exit status."""
    folder = find_harness()
    if folder is None:
        print(_NOT_FOUND, file=sys.stderr)
        return 2
    paths = [str(folder.parent), str(Path(__file__).resolve().parents[1])]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    cmd = [sys.executable, str(folder / "__main__.py"), *argv]
    return subprocess.call(cmd, env=env)  # noqa: S603 - our interpreter, the checkout's harness
