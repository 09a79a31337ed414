"""Benchmark xent.token_scores against the equivalent PyTorch sequence.

Both providers compute the same fields from float32 logits of shape (N, V)
with class targets and top_k=20: logsumexp, entropy, target logprob, target
rank, top-k logprobs and indices.  PyTorch's sequence is log_softmax, gather,
topk, entropy (from the log-softmax) and rank (a comparison and a sum).

Run:    pytest benchmarks/bench_token_scores.py --benchmark-group-by=group
Smoke:  pytest benchmarks/bench_token_scores.py --benchmark-disable -q
Self-contained (needs pytest-benchmark; torch is skipped when missing).
Threads are pinned to N_THREADS for both libraries (num_threads= for xent,
torch.set_num_threads for torch); inputs are built outside the timed region.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import xent

pytest.importorskip("pytest_benchmark")

N_THREADS = int(os.environ.get("XENT_BENCH_THREADS", "2"))
TOP_K = 20
SHAPES = [(8, 128256), (64, 32000), (1, 128256)]  # Llama-3 / Llama-2 vocabularies
PROVIDERS = ["xent", "torch"]


def _data(n, v):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, v)) * 3).astype(np.float32)
    t = rng.integers(0, v, n)
    return x, t


def _torch_scores(torch, x, t, k):
    lp = torch.log_softmax(x, -1)
    tl = lp.gather(-1, t[:, None]).squeeze(-1)
    top_lp, top_ix = torch.topk(lp, k, -1)
    ent = -(lp.exp() * lp).sum(-1)
    rank = (x > x.gather(-1, t[:, None])).sum(-1) + 1
    lse = torch.logsumexp(x, -1)
    return lse, ent, tl, rank, top_lp, top_ix


def _provider(name, x, t):
    """A zero-argument callable computing every field with `name`."""
    if name == "xent":
        return lambda: xent.token_scores(x, t, top_k=TOP_K, num_threads=N_THREADS)
    torch = pytest.importorskip("torch")
    torch.set_num_threads(N_THREADS)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)  # zero-copy, outside the timing
    return lambda: _torch_scores(torch, xt, tt, TOP_K)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_token_scores(benchmark, provider, shape):
    x, t = _data(*shape)
    fn = _provider(provider, x, t)
    benchmark.group = f"token_scores float32 {shape[0]}x{shape[1]} top_k={TOP_K}"
    benchmark.extra_info.update(
        provider=provider, n_rows=shape[0], n_cols=shape[1], n_threads=N_THREADS, top_k=TOP_K
    )
    out = benchmark(fn)
    # both providers agree on the discrete fields (checked once, outside the timing)
    idx = out.top_indices if provider == "xent" else out[5].numpy()
    ref = xent.token_scores(x, t, top_k=TOP_K, num_threads=1)
    np.testing.assert_array_equal(idx, ref.top_indices)
