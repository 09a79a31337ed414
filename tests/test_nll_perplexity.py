"""xent.nll_loss family against F.nll_loss, and xent.perplexity."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, REDUCTIONS, assert_close, make_targets, torch_ce, torch_nll

import xent

pytest.importorskip("torch")


def _log_probs(rng, shape, dtype):
    x = rng.standard_normal(shape) * 2
    x = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("shape", [(9, 6), (2, 3, 7), (2, 2, 3, 5)])
def test_nll_matches_torch(dtype, reduction, use_weight, ignore_index, shape):
    rng = np.random.default_rng(30)
    c = shape[-1]
    lp = _log_probs(rng, shape, dtype)
    t = make_targets(rng, shape[:-1], c, ignore_index)
    weight = (rng.random(c) + 0.1).astype(dtype) if use_weight else None
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction)
    go = rng.standard_normal(shape[:-1]) if reduction == "none" else -0.6
    el, eg = torch_nll(lp, t, grad_output=go, **kw)
    _, eg1 = torch_nll(lp, t, **kw)
    loss = xent.nll_loss(lp, t, **kw)
    if reduction == "none":
        assert loss.shape == shape[:-1] and loss.dtype == dtype
    else:
        assert type(loss) is np.dtype(dtype).type
    assert_close(loss, el, dtype)
    grad = xent.nll_loss_grad(lp, t, go, **kw)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, eg, dtype)
    l2, g2 = xent.nll_loss_and_grad(lp, t, **kw)
    assert_close(l2, el if reduction != "none" else torch_nll(lp, t, **kw)[0], dtype)
    assert_close(g2, eg1, dtype)
    # fused == separate, bitwise; in place == out of place, bitwise
    assert np.asarray(l2).tobytes() == np.asarray(xent.nll_loss(lp, t, **kw)).tobytes()
    assert g2.tobytes() == xent.nll_loss_grad(lp, t, **kw).tobytes()
    buf = lp.copy()
    l3, g3 = xent.nll_loss_and_grad(buf, t, out=buf, **kw)
    assert g3 is buf and g3.tobytes() == g2.tobytes()
    buf = lp.copy()
    assert xent.nll_loss_grad(buf, t, out=buf, **kw).tobytes() == g2.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_all_ignored_and_special_values(dtype):
    lp = np.array([[-0.5, -np.inf, np.nan], [-1.0, -2.0, -0.1], [np.inf, 0.0, -1.0]],
                  dtype=dtype)
    t_all = np.full(3, -100)
    for red in REDUCTIONS:
        el, eg = torch_nll(lp, t_all, reduction=red)
        loss, grad = xent.nll_loss_and_grad(lp, t_all, reduction=red)
        assert_close(loss, el, dtype)
        assert_close(grad, eg, dtype)
        assert np.all(grad == 0)
    assert np.isnan(xent.nll_loss(lp, t_all))
    t = np.array([1, 0, 0])  # -inf, finite, +inf picked
    for red in REDUCTIONS:
        el, eg = torch_nll(lp, t, reduction=red)
        loss, grad = xent.nll_loss_and_grad(lp, t, reduction=red)
        assert_close(loss, el, dtype)
        assert_close(grad, eg, dtype)
    t = np.array([2, -100, -100])  # NaN picked
    assert np.isnan(xent.nll_loss(lp, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_of_log_softmax_is_cross_entropy(dtype):
    rng = np.random.default_rng(31)
    x = rng.standard_normal((4, 5, 13)).astype(np.float64)
    lp = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(dtype)
    t = make_targets(rng, (4, 5), 13)
    w = rng.random(13) + 0.5
    for red in REDUCTIONS:
        ce = xent.cross_entropy(x.astype(dtype), t, weight=w, reduction=red)
        assert_close(xent.nll_loss(lp, t, weight=w, reduction=red), ce, dtype)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.int32, np.uint64])
def test_nll_target_dtypes(tdtype):
    rng = np.random.default_rng(32)
    lp = _log_probs(rng, (3, 4, 6), np.float32)
    t = rng.integers(0, 6, size=(3, 4))
    ref = xent.nll_loss_and_grad(lp, t, reduction="none")
    got = xent.nll_loss_and_grad(lp, t.astype(tdtype), reduction="none")
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_out_of_range(dtype):
    lp = np.zeros((2, 3, 5), dtype)
    t = np.array([[0, 1, 2], [3, 5, 0]])
    for fn in (xent.nll_loss_grad, xent.nll_loss_and_grad):
        out = np.full_like(lp, 7.0)
        with pytest.raises(IndexError, match=r"5 at flat position 4 .*5 classes"):
            fn(lp, t, out=out)
        assert np.all(out == 7.0)
    with pytest.raises(IndexError, match=r"-100 at flat position 0"):
        xent.nll_loss(lp, np.full((2, 3), -100), ignore_index=0)


def test_nll_layouts_and_float16():
    rng = np.random.default_rng(33)
    lp = _log_probs(rng, (6, 10), np.float64)
    t = rng.integers(0, 5, size=6)
    view = lp[:, ::2]
    before = lp.copy()
    ref = xent.nll_loss_and_grad(np.ascontiguousarray(view), t, reduction="none")
    got = xent.nll_loss_and_grad(view, t, reduction="none")
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(lp, before)
    lp16 = lp.astype(np.float16)
    loss = xent.nll_loss(lp16, rng.integers(0, 10, size=6))
    assert type(loss) is np.float32


def test_nll_threads_bitwise():
    rng = np.random.default_rng(34)
    lp = _log_probs(rng, (64, 4096), np.float32)
    t = make_targets(rng, (64,), 4096)
    w = rng.random(4096).astype(np.float32)
    a = xent.nll_loss_and_grad(lp, t, weight=w, num_threads=1)
    b = xent.nll_loss_and_grad(lp, t, weight=w, num_threads=2)
    assert np.asarray(a[0]).tobytes() == np.asarray(b[0]).tobytes()
    assert a[1].tobytes() == b[1].tobytes()


# ---------------------------------------------------------------------------
# perplexity


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("ignore_index", [-100, 0])
@pytest.mark.parametrize("shape", [(5, 7), (2, 6, 11), (2, 2, 3, 4)])
def test_perplexity_matches_torch(dtype, ignore_index, shape):
    rng = np.random.default_rng(40)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    t = make_targets(rng, shape[:-1], shape[-1], ignore_index)
    t.reshape(-1)[0] = 1  # at least one real target
    ppl = xent.perplexity(x, t, ignore_index=ignore_index)
    assert type(ppl) is np.float64
    el, _ = torch_ce(x, t, ignore_index=ignore_index)  # float64 torch on the same values
    cdt = np.float64 if dtype == np.float64 else np.float32
    assert_close(ppl, np.exp(el), cdt)
    ce = xent.cross_entropy(x, t, ignore_index=ignore_index)
    assert_close(np.log(ppl), ce, cdt)


def test_perplexity_accumulated_in_float64():
    """float32 logits: the mean is not rounded to float32 before exp."""
    rng = np.random.default_rng(41)
    x = (rng.standard_normal((50, 300)) * 3).astype(np.float32)
    t = rng.integers(0, 300, size=50)
    rows = xent.cross_entropy(x, t, reduction="none")  # float32 per-row losses
    el, _ = torch_ce(x, t)
    assert_close(xent.perplexity(x, t), np.exp(el), np.float32)
    # the float64 result must not be the float32 mean in disguise
    ppl = xent.perplexity(x, t)
    assert ppl != np.float64(np.exp(np.float64(np.float32(rows.mean()))))
    assert ppl != np.float64(np.exp(np.float32(rows.mean())))


@pytest.mark.parametrize("dtype", DTYPES)
def test_perplexity_all_ignored_and_empty(dtype):
    x = np.zeros((3, 4, 5), dtype)
    p = xent.perplexity(x, np.full((3, 4), -100))
    assert type(p) is np.float64 and np.isnan(p)
    p = xent.perplexity(np.zeros((0, 5), dtype), np.zeros(0, np.int64))
    assert type(p) is np.float64 and np.isnan(p)
    # uniform logits: perplexity is the vocabulary size
    t = np.zeros((3, 4), np.int64)
    t[0, 0] = -100
    assert_close(xent.perplexity(x, t), 5.0, dtype)


def test_perplexity_special_values():
    x = np.zeros((3, 4))
    x[1, 2] = np.inf
    t = np.array([0, 1, 2])
    assert np.isnan(xent.perplexity(x, t))
    x = np.zeros((2, 4))
    x[0, 1] = -np.inf
    assert xent.perplexity(x, np.array([1, 0])) == np.inf
    assert xent.perplexity(x, np.array([1, -100])) == np.inf
    assert_close(xent.perplexity(x, np.array([-100, 3])), 4.0, np.float64)


def test_perplexity_out_of_range():
    x = np.zeros((2, 3, 6), np.float32)
    t = np.array([[0, 1, 2], [3, 4, 6]])
    with pytest.raises(IndexError, match=r"6 at flat position 5 .*6 classes"):
        xent.perplexity(x, t)


def test_perplexity_threads_bitwise():
    rng = np.random.default_rng(42)
    x = rng.standard_normal((64, 4096)).astype(np.float32)
    t = make_targets(rng, (64,), 4096)
    a = xent.perplexity(x, t, num_threads=1)
    b = xent.perplexity(x, t, num_threads=2)
    assert a.tobytes() == b.tobytes()
