"""``python -m benchmarks`` (from the checkout root) or ``python benchmarks/__main__.py``
with the checkout root on PYTHONPATH: the runner of ``python -m xent bench``."""

import sys

from benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main())
