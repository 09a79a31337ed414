"""xent.token_scores against the NumPy reference (checked against PyTorch in
test_reference.py): every field, tie-aware top-k, non-finite rows, threads, errors."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from helpers import DTYPES, assert_close, tolerance

import xent
from benchmarks import reference


def check(res, want, dtype, has_target=True):
    """Every field of `res` against the reference's, in the computation dtype."""
    assert isinstance(res, xent.TokenScores)
    fields = ["logsumexp", "entropy", "top_logprobs"] + (["logprob"] if has_target else [])
    for f in fields:
        assert getattr(res, f).dtype == dtype, f
        assert_close(getattr(res, f), getattr(want, f), dtype, err_msg=f)
    if has_target:
        assert res.rank.dtype == np.int64
        np.testing.assert_array_equal(res.rank, want.rank)
    else:
        assert res.logprob is None and res.rank is None
    assert res.top_indices.dtype == np.int64
    np.testing.assert_array_equal(res.top_indices, want.top_indices)


def logits_for(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "shape, top_k",
    [
        ((1, 1), 1),
        ((3, 2), 2),
        ((4, 17), 5),
        ((13, 1025), 10),
        ((2, 2048), 3),
        ((2, 2049), 7),
        ((3, 4097), 4097),
        ((2, 3, 50), 6),
        ((7,), 3),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"k{v}",
)
def test_matches_reference(rng, dtype, shape, top_k):
    x = logits_for(rng, shape, dtype)
    t = rng.integers(0, shape[-1], shape[:-1])
    res = xent.token_scores(x, t, top_k=top_k)
    check(res, reference.token_scores(x, t, top_k=top_k), dtype)
    assert res.logsumexp.shape == shape[:-1]
    assert res.top_logprobs.shape == shape[:-1] + (top_k,)


def test_without_target(rng, dtype):
    x = logits_for(rng, (5, 300), dtype)
    res = xent.token_scores(x, top_k=4)
    check(res, reference.token_scores(x, top_k=4), dtype, has_target=False)


def test_all_features_every_simd_path(simd, dtype, rng):
    # masked entries, ties, chunk tails, a temperature, ignored and -inf targets
    n, c = 9, 4100
    x = np.round(logits_for(rng, (n, c), dtype), 1).astype(dtype)  # rounding makes ties
    x[:, rng.choice(c, c // 3, replace=False)] = -np.inf
    x[1, :] = x[1, 0]  # a row of one repeated value
    t = rng.integers(0, c, n)
    t[2] = -100
    t[3] = int(np.flatnonzero(np.isneginf(x[3]))[0])  # -inf target
    for temperature, k in ((1.0, 37), (0.7, 5), (2.0, c)):
        res = xent.token_scores(x, t, top_k=k, temperature=temperature)
        check(res, reference.token_scores(x, t, top_k=k, temperature=temperature), dtype)
    assert res.logprob[3] == -np.inf


def test_random_small_rows(simd, dtype, rng):
    # many short rows mixing ties, -inf and NaN, with every top_k: exercises the
    # vector filter, lane offers and the -inf fill of the top-k heap on each path
    for c in (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100):
        x = np.round(rng.standard_normal((12, c)) * 2).astype(dtype)
        x[rng.random((12, c)) < 0.4] = -np.inf
        x[0, :] = -np.inf
        x[1, rng.random(c) < 0.2] = np.nan
        t = rng.integers(0, c, 12)
        for k in sorted({0, 1, c // 2, c}):
            res = xent.token_scores(x, t, top_k=k)
            want = reference.token_scores(x, t, top_k=k)
            np.testing.assert_array_equal(res.top_indices, want.top_indices)
            np.testing.assert_array_equal(res.rank, want.rank)
            for i in range(12):
                assert len(set(res.top_indices[i])) == k
            ok = slice(2, None)  # rows without NaN or all -inf
            assert_close(res.logprob[ok], want.logprob[ok], dtype)
            assert_close(res.entropy[ok], want.entropy[ok], dtype)
            assert_close(res.top_logprobs[ok], want.top_logprobs[ok], dtype)


def test_confident_rows_relative_precision(simd, dtype, rng):
    # The logprob of a near-certain token (about -5e-7) and the row entropy keep
    # their relative precision (no absolute tolerance); the reference computes
    # log S as log1p(sum of the non-maximal terms), where a plain float64
    # log_softmax is only good to ~1e-8 relative.
    x = logits_for(rng, (16, 5000), dtype, scale=2.0)
    x[:, 7] = 30.0
    t = np.full(16, 7)
    res = xent.token_scores(x, t, top_k=1)
    want = reference.token_scores(x, t, top_k=1)
    assert np.all(want.logprob > -1e-5)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(res.logprob, want.logprob, rtol=rtol, atol=0)
    np.testing.assert_allclose(res.top_logprobs[:, 0], want.logprob, rtol=rtol, atol=0)
    np.testing.assert_allclose(res.entropy, want.entropy, rtol=rtol, atol=0)
    np.testing.assert_array_equal(res.top_indices[:, 0], t)


def test_ties_rank_and_order(dtype, rng):
    x = rng.integers(-3, 3, (6, 40)).astype(dtype)
    t = rng.integers(0, 40, 6)
    res = xent.token_scores(x, t, top_k=40)
    want = reference.token_scores(x, t, top_k=40)
    check(res, want, dtype)
    # equal logits: every tied class gets the same (best) rank
    eq = np.full((1, 10), 2.5, dtype=dtype)
    r = xent.token_scores(eq, np.array([7]), top_k=4)
    assert r.rank[0] == 1
    np.testing.assert_array_equal(r.top_indices[0], [0, 1, 2, 3])


def test_masked_vocabulary(dtype, rng):
    c = 1000
    x = logits_for(rng, (4, c), dtype)
    x[:, 10:] = -np.inf  # only 10 possible tokens per row
    t = np.array([3, 500, 9, 999])  # rows 1 and 3 target masked tokens
    res = xent.token_scores(x, t, top_k=15)  # more than the 10 finite entries
    want = reference.token_scores(x, t, top_k=15)
    check(res, want, dtype)
    assert np.all(np.isfinite(res.entropy))
    assert res.logprob[1] == -np.inf and res.logprob[3] == -np.inf
    assert np.all(res.rank[[1, 3]] == 11)
    # the masked entries fill the last top-k slots in index order
    np.testing.assert_array_equal(res.top_indices[:, 10:], np.tile(np.arange(10, 15), (4, 1)))
    assert np.all(np.isneginf(res.top_logprobs[:, 10:]))
    # entropy equals the entropy of the 10 finite entries alone
    np.testing.assert_allclose(
        res.entropy, xent.token_scores(x[:, :10]).entropy, rtol=tolerance(dtype) * 10
    )


def test_non_finite_rows(dtype):
    c = 70
    x = np.zeros((4, c), dtype=dtype)
    x[0, :] = -np.inf  # all -inf
    x[1, 5] = np.inf  # +inf entry
    x[2, 9] = np.nan  # NaN entry
    x[3, 2049 % c] = np.nan
    x[3, 3] = -np.inf
    t = np.array([0, 5, 1, 3])
    res = xent.token_scores(x, t, top_k=3)
    want = reference.token_scores(x, t, top_k=3)
    np.testing.assert_array_equal(res.logsumexp, want.logsumexp.astype(dtype))
    assert np.isneginf(res.logsumexp[0]) and np.isposinf(res.logsumexp[1])
    assert np.all(np.isnan(res.logsumexp[2:]))
    for field in ("entropy", "logprob"):
        assert np.all(np.isnan(getattr(res, field))), field
        assert np.all(np.isnan(getattr(want, field))), field
    assert np.all(np.isnan(res.top_logprobs)) and np.all(np.isnan(want.top_logprobs))
    np.testing.assert_array_equal(res.rank, want.rank)
    np.testing.assert_array_equal(res.top_indices, want.top_indices)
    assert res.top_indices[1, 0] == 5 and res.top_indices[2, 0] == 9


def test_nan_in_long_row(dtype, rng):
    # a NaN in a later chunk, after the running max: every float field is NaN
    x = logits_for(rng, (2, 5000), dtype)
    x[0, 4500] = np.nan
    x[1, :2048] = -np.inf  # a first chunk of only -inf, then finite values
    t = np.array([1, 3000])
    res = xent.token_scores(x, t, top_k=2)
    want = reference.token_scores(x, t, top_k=2)
    assert np.isnan(res.logsumexp[0]) and np.isnan(res.entropy[0]) and np.isnan(res.logprob[0])
    assert res.top_indices[0, 0] == 4500
    check(xent.TokenScores(*(f[1:] for f in res)),
          reference.TokenScores(*(f[1:] for f in want)), dtype)


@pytest.mark.parametrize("scale", [3.0, 1e4])
def test_262144_classes(dtype, rng, scale):
    c = 262_144
    x = (rng.uniform(-scale, scale, (1, c))).astype(dtype)
    t = np.array([int(np.argmax(x[0]))])
    res = xent.token_scores(x, t, top_k=3)
    check(res, reference.token_scores(x, t, top_k=3), dtype)


def test_ignored_targets(dtype, rng):
    x = logits_for(rng, (3, 4, 20), dtype)
    t = rng.integers(0, 20, (3, 4))
    t[0, 1] = -100
    t[2, 3] = -100
    res = xent.token_scores(x, t)
    check(res, reference.token_scores(x, t), dtype)
    assert np.isnan(res.logprob[0, 1]) and res.rank[0, 1] == -1
    # a custom ignore_index may be a valid class index
    t2 = t.copy()
    t2[t2 == -100] = 7
    res2 = xent.token_scores(x, t2, ignore_index=7)
    ign = t2 == 7
    assert np.all(np.isnan(res2.logprob[ign])) and np.all(res2.rank[ign] == -1)
    np.testing.assert_array_equal(res2.logprob[~ign], res.logprob[~ign])


def test_top_k_zero(dtype, rng):
    x = logits_for(rng, (2, 3, 11), dtype)
    res = xent.token_scores(x, top_k=0)
    assert res.top_logprobs.shape == (2, 3, 0) and res.top_logprobs.dtype == dtype
    assert res.top_indices.shape == (2, 3, 0) and res.top_indices.dtype == np.int64
    check(res, reference.token_scores(x, top_k=0), dtype, has_target=False)


def test_top_k_equals_c(dtype, rng):
    x = logits_for(rng, (3, 129), dtype)
    x[0, ::5] = x[0, 0]  # ties
    t = rng.integers(0, 129, 3)
    res = xent.token_scores(x, t, top_k=129)
    check(res, reference.token_scores(x, t, top_k=129), dtype)
    # the target's logprob appears, bitwise, at its place in the full ranking
    for i in range(3):
        pos = int(np.flatnonzero(res.top_indices[i] == t[i])[0])
        assert res.top_logprobs[i, pos] == res.logprob[i]


def test_top_k_1000_of_32000(rng):
    x = logits_for(rng, (3, 32000), np.float32)
    t = rng.integers(0, 32000, 3)
    res = xent.token_scores(x, t, top_k=1000)
    check(res, reference.token_scores(x, t, top_k=1000), np.dtype(np.float32))
    # worst case for the heap: increasing logits (every element enters)
    inc = np.tile(np.arange(32000, dtype=np.float32) / 1000, (2, 1))
    r2 = xent.token_scores(inc, top_k=1000)
    np.testing.assert_array_equal(r2.top_indices, np.tile(np.arange(31999, 30999, -1), (2, 1)))


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.5, 10.0])
def test_temperature(dtype, rng, temperature):
    x = logits_for(rng, (2, 3, 2500), dtype)
    t = rng.integers(0, 2500, (2, 3))
    res = xent.token_scores(x, t, top_k=8, temperature=temperature)
    check(res, reference.token_scores(x, t, top_k=8, temperature=temperature), dtype)


def test_temperature_one_is_plain(dtype, rng):
    x = logits_for(rng, (4, 600), dtype)
    t = rng.integers(0, 600, 4)
    a = xent.token_scores(x, t, top_k=3)
    b = xent.token_scores(x * dtype.type(2), t, top_k=3, temperature=2.0)  # exact scaling
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb)


def test_dtype_policy_and_inputs(rng):
    x16 = logits_for(rng, (3, 40), np.float16)
    t = rng.integers(0, 40, 3).astype(np.int8)
    res = xent.token_scores(x16, t, top_k=2)  # float16 is native: results keep the dtype
    assert res.logsumexp.dtype == np.float16 and res.top_logprobs.dtype == np.float16
    check(res, reference.token_scores(x16.astype(np.float32), t, top_k=2), np.dtype(np.float16))
    # any integer target dtype, read-only and non-contiguous inputs, no mutation
    x = logits_for(rng, (40, 6), np.float64).T  # (6, 40), not C-contiguous
    x.setflags(write=False)
    before = x.copy()
    for tdt in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64):
        tt = rng.integers(0, 40, 6).astype(tdt)
        r = xent.token_scores(x, tt, top_k=3)
        check(r, reference.token_scores(x, tt.astype(np.int64), top_k=3), np.dtype(np.float64))
    np.testing.assert_array_equal(x, before)
    r = xent.token_scores([[1.0, 2.0], [3.0, 3.0]], [1, 0], top_k=1)  # lists
    np.testing.assert_array_equal(r.rank, [1, 1])


def test_empty_leading(dtype):
    x = np.zeros((0, 3, 5), dtype=dtype)
    res = xent.token_scores(x, np.zeros((0, 3), dtype=np.int64), top_k=2)
    assert res.logsumexp.shape == (0, 3) and res.rank.shape == (0, 3)
    assert res.top_indices.shape == (0, 3, 2)


# --------------------------------------------------------------------------- threads


def test_num_threads_bitwise(dtype, rng):
    x = logits_for(rng, (32, 8192), dtype)  # above the parallel threshold
    x[3, ::3] = -np.inf
    t = rng.integers(0, 8192, 32)
    t[5] = -100
    a = xent.token_scores(x, t, top_k=20, temperature=0.8, num_threads=1)
    b = xent.token_scores(x, t, top_k=20, temperature=0.8, num_threads=2)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
    check(a, reference.token_scores(x, t, top_k=20, temperature=0.8), dtype)


def test_concurrent_python_threads(rng):
    data = []
    for i in range(16):
        dt = DTYPES[i % 2]
        x = logits_for(rng, (8, 3000 + 17 * i), dt)
        t = rng.integers(0, x.shape[-1], 8)
        data.append((x, t, 1 + i % 9))
    expected = [xent.token_scores(x, t, top_k=k, num_threads=1) for x, t, k in data]

    def run(i):
        x, t, k = data[i]
        return xent.token_scores(x, t, top_k=k, num_threads=1 + i % 2)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(run, range(len(data))))
    for g, e in zip(got, expected):
        for fg, fe in zip(g, e):
            np.testing.assert_array_equal(fg, fe)
    x, t, k = data[1]
    check(got[1], reference.token_scores(x, t, top_k=k), np.dtype(x.dtype))


# --------------------------------------------------------------------------- errors


def test_errors():
    x = np.zeros((2, 5), dtype=np.float32)
    t = np.array([0, 1])
    with pytest.raises(ValueError, match=r"top_k must be in \[0, C\] = \[0, 5\], got 6"):
        xent.token_scores(x, t, top_k=6)
    with pytest.raises(ValueError, match="got -1"):
        xent.token_scores(x, t, top_k=-1)
    for bad_k in (2.5, True, "3", None):
        with pytest.raises(TypeError, match="top_k"):
            xent.token_scores(x, t, top_k=bad_k)
    for bad_t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            xent.token_scores(x, t, temperature=bad_t)
    for bad_t in (1e-50, 1e39):  # 0 or inf in float32 (fine in float64)
        with pytest.raises(ValueError, match="positive finite float32"):
            xent.token_scores(x, t, temperature=bad_t)
        xent.token_scores(x.astype(np.float64), t, temperature=bad_t)
    with pytest.raises(TypeError, match="temperature"):
        xent.token_scores(x, t, temperature="hot")
    with pytest.raises(ValueError, match="C == 0"):
        xent.token_scores(np.zeros((2, 0)), None)
    with pytest.raises(ValueError, match="0-d"):
        xent.token_scores(np.float64(1.0))
    with pytest.raises(TypeError, match="int64"):
        xent.token_scores(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(TypeError, match="bool"):
        xent.token_scores(np.zeros((2, 5), dtype=bool))
    with pytest.raises(TypeError, match="complex"):
        xent.token_scores(np.zeros((2, 5), dtype=complex))
    with pytest.raises(TypeError, match="floating"):
        xent.token_scores(x, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="bool"):
        xent.token_scores(x, np.array([True, False]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
        xent.token_scores(x, np.array([0, 1, 2]))
    with pytest.raises(IndexError, match=r"target 5 at flat position 1 .* 5 classes"):
        xent.token_scores(x, np.array([0, 5]))
    with pytest.raises(IndexError, match=r"target -1 at flat position 0 .* 5 classes"):
        xent.token_scores(x, np.array([-1, 2]))
    with pytest.raises(IndexError, match=r"target 7 at flat position 3"):
        xent.token_scores(np.zeros((2, 2, 5)), np.array([[0, -100], [1, 7]]))
    with pytest.raises(TypeError, match="ignore_index"):
        xent.token_scores(x, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="num_threads"):
        xent.token_scores(x, t, num_threads=0)
    with pytest.raises(TypeError):
        xent.token_scores(x, t, 3)  # top_k is keyword-only
