"""Memory-leak check: 100,000 mixed calls (including error paths) must not grow RSS.

Linux only (RSS from /proc/self/statm).  Small arrays keep it at a few seconds.
XENT_LEAK_CALLS overrides the number of calls.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

import xent

# AddressSanitizer's quarantine keeps freed memory resident by design (.ci/sanitize.sh)
_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm"),
    pytest.mark.skipif(_ASAN, reason="RSS is meaningless under AddressSanitizer"),
]

N_CALLS = int(os.environ.get("XENT_LEAK_CALLS", "100000"))
LIMIT = 1 << 20  # 1 MiB


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _workload():
    """A list of zero-argument callables: successes and every kind of error path."""
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((4, 7)).astype(np.float32)
    x64 = rng.standard_normal((2, 3, 5))
    xf = np.asfortranarray(rng.standard_normal((3, 6)))
    t32 = np.array([0, 6, -100, 3])
    t64 = np.array([[0, 4, 1], [-100, 2, 2]])
    bad = np.array([0, 7, 1, 2])
    out32 = np.empty_like(x32)
    calls = [
        lambda: xent.logsumexp(x32),
        lambda: xent.softmax(x64, axis=1),
        lambda: xent.log_softmax(xf, out=None, num_threads=2),
        lambda: xent.softmax(x32, out=out32),
        lambda: xent.cross_entropy(x32, t32),
        lambda: xent.cross_entropy(x64, t64, reduction="none", label_smoothing=0.1),
        lambda: xent.cross_entropy_and_grad(x32, t32, out=out32, num_threads=2),
        lambda: xent.cross_entropy_grad(x64, t64, z_loss=1e-3, softcap=5.0),
        lambda: xent.nll_loss_and_grad(x64, t64),
        lambda: xent.perplexity(x32, t32),
    ]
    errors = [
        (IndexError, lambda: xent.cross_entropy(x32, bad)),
        (IndexError, lambda: xent.cross_entropy_and_grad(x32, bad, out=out32)),
        (IndexError, lambda: xent.nll_loss(x32, bad)),
        (TypeError, lambda: xent.cross_entropy(x32.astype(np.int32), t32)),
        (TypeError, lambda: xent.softmax(np.ones(3, dtype=complex))),
        (TypeError, lambda: xent.cross_entropy(x32, t32.astype(bool))),
        (ValueError, lambda: xent.cross_entropy(x32, t32, reduction="avg")),
        (ValueError, lambda: xent.softmax(x32, out=np.empty((1, 7), np.float32))),
        (ValueError, lambda: xent.cross_entropy(x32, t32[:3])),
    ]
    calls += [
        lambda: xent.focal_loss_and_grad(x32, t32),
        lambda: xent.binary_cross_entropy_with_logits_and_grad(x64, np.full_like(x64, 0.3)),
        lambda: xent.sigmoid_focal_loss(x32, np.zeros_like(x32)),
        lambda: xent.kl_div_with_logits_and_grad(x32, x32[::-1].copy()),
        lambda: xent.binary_cross_entropy(np.full((3, 2), 0.4), np.full((3, 2), 0.5)),
        lambda: xent.expected_calibration_error(x32, t32),
        lambda: xent.token_scores(x32, t32, top_k=3),
    ]
    errors += [
        (IndexError, lambda: xent.focal_loss(x32, bad)),
        (IndexError, lambda: xent.token_scores(x32, bad)),
    ]

    def wrap(exc, f):
        def g():
            try:
                f()
            except exc:
                return
            raise AssertionError("expected " + exc.__name__)
        return g

    return calls + [wrap(e, f) for e, f in errors]


def test_no_rss_growth():
    work = _workload()
    k = len(work)
    for i in range(2000):  # warm-up: caches, lazily allocated pools, thread team
        work[i % k]()
    gc.collect()
    before = rss_bytes()
    for i in range(N_CALLS):
        work[i % k]()
    gc.collect()
    grown = rss_bytes() - before
    assert grown < LIMIT, f"RSS grew by {grown / 1024:.0f} KiB over {N_CALLS} calls"
