"""xent.dask on a dask.distributed LocalCluster of 2 workers (threads, in this process).

References: xent's in-process functions on the whole array, and for the reductions the
correctly rounded sum (math.fsum) of xent.cross_entropy's per-token losses, which
xent.dask's exact reduction must equal bit for bit whatever the chunking.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import xent  # noqa: E402
import xent.dask  # noqa: E402
from xent.dask import ExactSums, task_threads  # noqa: E402

V = 37


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _data(rng, dtype, shape=(3, 11)):
    x = (rng.standard_normal(shape + (V,)) * 3).astype(dtype)
    t = rng.integers(0, V, shape)
    t.flat[[1, 7]] = -100
    return x, t


def _fsum_loglik(x, t):
    """Correctly rounded per-sequence sums of the in-process per-token log-probabilities."""
    lp = -xent.cross_entropy(x, t, reduction="none").astype(np.float64)
    keep = t != -100
    ll = np.array([math.fsum(lp[i][keep[i]]) for i in np.ndindex(t.shape[:-1])])
    return ll.reshape(t.shape[:-1]), keep.sum(-1)


def test_token_scores_on_cluster(client, dtype, rng):
    x, t = _data(rng, dtype)
    s = xent.dask.token_scores(da.from_array(x, chunks=(2, 4, V)), t, top_k=3,
                               temperature=0.7)
    got = dask.compute(*s)
    ref = xent.token_scores(x, t, top_k=3, temperature=0.7)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_array_equal(g, r)  # the same kernel on the same rows


def test_token_scores_without_target_and_chunked_classes(client, rng):
    x, _ = _data(rng, np.float64)
    s = xent.dask.token_scores(da.from_array(x, chunks=(1, 5, 10)))  # class axis merged
    assert s.logprob is None and s.rank is None and s.top_indices.shape == (3, 11, 0)
    np.testing.assert_array_equal(s.entropy.compute(), xent.token_scores(x).entropy)


def test_linear_token_scores_broadcast_weight(client, dtype, rng):
    h = rng.standard_normal((4, 6, 8)).astype(dtype)
    w = rng.standard_normal((V, 8)).astype(dtype)
    b = rng.standard_normal(V).astype(dtype)
    t = rng.integers(0, V, (4, 6))
    s = xent.dask.linear_token_scores(da.from_array(h, chunks=(3, 4, 8)), w, t, bias=b,
                                      top_k=2, chunk_size=5)
    ref = xent.linear_token_scores(h, w, t, bias=b, top_k=2, chunk_size=5)
    for g, r in zip(dask.compute(*s), ref):
        np.testing.assert_allclose(g, r, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("chunks", [(3, 11, V), (1, 4, V), (2, 1, V)],
                         ids=["one", "rows", "tokens"])
def test_sequence_log_likelihood_exact(client, dtype, rng, chunks):
    x, t = _data(rng, dtype)
    ll, n = xent.dask.sequence_log_likelihood(da.from_array(x, chunks=chunks), t)
    ref_ll, ref_n = _fsum_loglik(x, t)
    np.testing.assert_array_equal(ll, ref_ll)  # the exact sum, whatever the chunking
    np.testing.assert_array_equal(n, ref_n)
    assert ll.dtype == np.float64 and n.dtype == np.int64
    # and the float64 oracle
    from benchmarks import reference
    lp = reference.log_softmax(x.astype(np.float64))
    keep = t != -100
    oracle = np.where(keep, np.take_along_axis(lp, np.where(keep, t, 0)[..., None], -1)[..., 0],
                      0).sum(-1)
    np.testing.assert_allclose(ll, oracle, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_perplexity_independent_of_chunks_and_workers(client, dtype, rng):
    x, t = _data(rng, dtype, (5, 9))
    values = [xent.dask.perplexity(da.from_array(x, chunks=c), t)
              for c in [(5, 9, V), (2, 3, V), (1, 1, V)]]
    with dask.config.set(scheduler="synchronous"):  # one thread, no cluster
        values.append(xent.dask.perplexity(da.from_array(x, chunks=(4, 2, V)), t))
    ll, n = _fsum_loglik(x.reshape(1, -1, V), t.reshape(1, -1))
    assert all(v == np.exp(-ll[0] / n[0]) for v in values), values
    assert type(values[0]) is np.float64
    np.testing.assert_allclose(values[0], xent.perplexity(x, t),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_linear_reductions(client, rng):
    h = rng.standard_normal((3, 7, 8))
    w = rng.standard_normal((V, 8))
    t = rng.integers(0, V, (3, 7))
    t[1, 2] = -100
    hd = da.from_array(h, chunks=(2, 3, 8))
    ll, n = xent.dask.linear_sequence_log_likelihood(hd, w, t, chunk_size=4)
    ref_ll, ref_n = _fsum_loglik(h @ w.T, t)
    np.testing.assert_allclose(ll, ref_ll, rtol=1e-12)
    np.testing.assert_array_equal(n, ref_n)
    np.testing.assert_allclose(xent.dask.linear_perplexity(hd, w, t), xent.perplexity(h @ w.T, t),
                               rtol=1e-12)


def test_all_ignored_is_nan(client):
    x = da.zeros((2, 3, 4), chunks=(1, 3, 4))
    t = np.full((2, 3), -100)
    assert np.isnan(xent.dask.perplexity(x, t))
    ll, n = xent.dask.sequence_log_likelihood(x, t)
    np.testing.assert_array_equal(ll, [0.0, 0.0])
    np.testing.assert_array_equal(n, [0, 0])


def test_exact_sums():
    v = np.array([1e16, 1.0, -1e16, 5e-324, 2.0**-1022, -3.5, 1e300, -1e300])
    seg = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    s = ExactSums.of(v, seg, 4)
    np.testing.assert_array_equal(s.values(), [1.0, math.fsum(v[3:6]), 0.0, 0.0])
    np.testing.assert_array_equal(s.count, [3, 3, 2, 0])
    special = ExactSums.of(np.array([np.inf, 1.0, np.nan, -np.inf, np.inf, 2.0, -np.inf]),
                           np.array([0, 0, 1, 2, 2, 3, 3]), 4)
    np.testing.assert_array_equal(special.values(), [np.inf, np.nan, np.nan, -np.inf])


def test_exact_sums_random_order(rng):
    v = rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000)
    seg = np.zeros(2000, dtype=np.int64)
    expected = math.fsum(v)
    for _ in range(3):
        p = rng.permutation(2000)
        assert ExactSums.of(v[p], seg, 1).values()[0] == expected


def test_task_threads(client):
    assert task_threads(3) == 3
    assert task_threads(None) is None  # not in a worker: xent's default
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    expected = int(env) if env.isdigit() and int(env) > 0 else max(1, cores // 2)
    assert client.submit(task_threads, None, pure=False).result() == expected


@pytest.mark.parametrize("call,exc,match", [
    (lambda: xent.dask.token_scores(da.zeros(5), None), ValueError, "row axis"),
    (lambda: xent.dask.token_scores(da.zeros((2, 3)), np.zeros(3, int)), ValueError,
     "expected"),
    (lambda: xent.dask.token_scores(da.zeros((2, 3)), np.zeros(2)), TypeError, "integer"),
    (lambda: xent.dask.token_scores(da.zeros((2, 3), dtype=int)), TypeError, "floating"),
    (lambda: xent.dask.token_scores(da.zeros((2, 3)), top_k=4), ValueError, "top_k"),
    (lambda: xent.dask.linear_token_scores(da.zeros((2, 3)), np.zeros((4, 2))), ValueError,
     "weight has shape"),
    (lambda: xent.dask.perplexity(da.zeros((2, 3)), np.array([0, 3])), IndexError, "3"),
])
def test_errors(call, exc, match):
    with dask.config.set(scheduler="synchronous"), pytest.raises(exc, match=match):
        call()
