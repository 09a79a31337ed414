"""Arrays of more than 2**31 elements (64-bit indexing in every kernel).

Slow and memory hungry (~8.6 GB): skipped unless ``XENT_RUN_SLOW=1`` (conftest.py) and
unless enough memory is available.  Run with
``XENT_RUN_SLOW=1 python -m pytest -m slow tests/test_huge.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import xent
from benchmarks import reference as ref

N, C = 2**16 + 1, 2**15  # N * C = 2**31 + 2**15 float32 elements (8.6 GB)
CHUNK = 2048

pytestmark = pytest.mark.slow  # conftest: skipped unless XENT_RUN_SLOW=1


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def test_more_than_2_31_elements():
    need = N * C * 4
    if _available_bytes() < need * 1.25 + (1 << 30):
        pytest.skip(f"needs ~{need * 1.25 / 2**30:.1f} GiB of free memory")
    x = np.empty((N, C), dtype=np.float32)
    rng = np.random.default_rng(0)
    for s in range(0, N, CHUNK):
        x[s:s + CHUNK] = rng.standard_normal((min(CHUNK, N - s), C), dtype=np.float32) * 3
    # make the last rows distinctive, so an index that wrapped at 2**31 shows up
    x[-1, -1] = 40.0
    x[-2, 5] = -30.0
    t = rng.integers(0, C, size=N)
    t[-1] = C - 1

    loss = xent.cross_entropy(x, t, reduction="none")
    lse = xent.logsumexp(x)
    mean = xent.cross_entropy(x, t)
    ref_sum = 0.0
    for s in range(0, N, CHUNK):
        e = min(s + CHUNK, N)
        r_lse = ref.logsumexp(x[s:e])
        r_loss = ref.cross_entropy(x[s:e], t[s:e], reduction="none")
        # float32 contract: absolute part scaled by the magnitude involved (the row's lse)
        scale = max(np.abs(r_lse).max(), np.abs(r_loss).max(), 1.0)
        np.testing.assert_allclose(lse[s:e], r_lse, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(loss[s:e], r_loss, rtol=1e-5, atol=1e-5 * scale)
        ref_sum += r_loss.sum()
    np.testing.assert_allclose(mean, ref_sum / N, rtol=1e-5)

    # gradient in place (out=logits): check the first and the last rows
    head, tail = x[:3].astype(np.float64), x[-3:].astype(np.float64)
    loss2, g = xent.cross_entropy_and_grad(x, t, out=x)
    assert g is x
    np.testing.assert_allclose(loss2, mean, rtol=1e-6)
    for rows, idx in ((head, np.arange(3)), (tail, np.arange(N - 3, N))):
        want = ref.cross_entropy_grad(rows, t[idx], reduction="sum") / N
        np.testing.assert_allclose(g[idx], want, rtol=1e-4, atol=1e-6 / N)
