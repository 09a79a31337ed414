"""sigmoid_focal_loss against torchvision's formula (written in torch: torchvision is optional)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, REDUCTIONS, assert_close, torch_sigmoid_focal

import xent

pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.25, 0.7, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torchvision_formula(dtype, alpha, gamma, reduction):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((6, 11)) * 3).astype(dtype)
    t = rng.integers(0, 2, (6, 11)).astype(dtype)
    t[0] = rng.uniform(0, 1, 11)  # soft targets too
    want, want_g = torch_sigmoid_focal(x, t, alpha, gamma, reduction)
    kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
    loss = xent.sigmoid_focal_loss(x, t, **kw)
    grad = xent.sigmoid_focal_loss_grad(x, t, **kw)
    l2, g2 = xent.sigmoid_focal_loss_and_grad(x, t, **kw)
    assert_close(loss, want, dtype)
    assert_close(grad, want_g, dtype)
    np.testing.assert_array_equal(l2, loss)
    np.testing.assert_array_equal(g2, grad)
    if reduction == "none":
        assert loss.shape == x.shape and loss.dtype == dtype
    else:
        assert type(loss) is np.dtype(dtype).type


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_reduction_is_none_and_grad_output(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4)).astype(dtype)
    t = rng.integers(0, 2, (3, 4)).astype(dtype)
    assert xent.sigmoid_focal_loss(x, t).shape == (3, 4)
    go = rng.standard_normal((3, 4))
    _, want_g = torch_sigmoid_focal(x, t, 0.25, 2.0, "none", go)
    assert_close(xent.sigmoid_focal_loss_grad(x, t, go), want_g, dtype)
    _, want_g = torch_sigmoid_focal(x, t, 0.25, 2.0, "mean", 3.0)
    assert_close(xent.sigmoid_focal_loss_grad(x, t, 3.0, reduction="mean"), want_g, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 17, 33, 4097])
def test_simd_paths(simd, dtype, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((2, n)) * 5).astype(dtype)
    t = rng.integers(0, 2, (2, n)).astype(dtype)
    for gamma in (2.0, 1.5):
        want, want_g = torch_sigmoid_focal(x, t, 0.25, gamma, "sum")
        loss, grad = xent.sigmoid_focal_loss_and_grad(x, t, gamma=gamma, reduction="sum")
        assert_close(loss, want, dtype)
        assert_close(grad, want_g, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extremes(dtype):
    vals = np.array([-1e4, -80.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 80.0, 1e4], dtype)
    x = np.repeat(vals[None], 2, axis=0)
    t = np.array([[0.0], [1.0]], dtype) * np.ones_like(x)
    for gamma in (0.0, 2.0, 3.5):
        want, want_g = torch_sigmoid_focal(x, t, 0.25, gamma, "none")
        loss, grad = xent.sigmoid_focal_loss_and_grad(x, t, gamma=gamma)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_close(loss, want, dtype)
        assert_close(grad, want_g, dtype)
    # non-finite logits: NaN propagates like torchvision
    xn = np.array([np.nan, np.inf, -np.inf], dtype)
    tn = np.array([1.0, 0.0, 1.0], dtype)
    want, _ = torch_sigmoid_focal(xn, tn, 0.25, 2.0, "none")
    loss = xent.sigmoid_focal_loss(xn, tn)
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(want))
    np.testing.assert_array_equal(loss[~np.isnan(want)], want[~np.isnan(want)])


@pytest.mark.parametrize("gamma", [0.3, 0.5, 0.9])
def test_small_gamma_finite_where_autograd_is_nan(gamma):
    """0 < gamma < 1 at p_t == 1: torchvision's autograd gives NaN, xent the limit 0."""
    x = np.array([50.0, -50.0, 800.0])
    t = np.array([1.0, 0.0, 1.0])
    _, want_g = torch_sigmoid_focal(x, t, 0.25, gamma, "none")
    assert np.isnan(want_g).any()
    loss, grad = xent.sigmoid_focal_loss_and_grad(x, t, gamma=gamma)
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) < 1e-15)
    assert np.all(loss < 1e-20)


def test_confident_accuracy():
    """1 - p_t is sigmoid(-|x|) computed directly: exact reference in float64."""
    x = np.array([20.0, 30.0, 35.0])
    t = np.ones(3)
    m = 1 / (1 + np.exp(x))             # 1 - p_t, exactly representable relative to itself
    ce = np.log1p(np.exp(-x))
    want = 0.25 * ce * m**2
    np.testing.assert_allclose(xent.sigmoid_focal_loss(x, t), want, rtol=1e-13)


def test_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="gamma"):
        xent.sigmoid_focal_loss(x, x, gamma=-1.0)
    with pytest.raises(TypeError, match="alpha"):
        xent.sigmoid_focal_loss(x, x, alpha=None)
    with pytest.raises(TypeError, match="int64"):
        xent.sigmoid_focal_loss(np.zeros((2, 3), np.int64), x)
    with pytest.raises(ValueError, match="shape"):
        xent.sigmoid_focal_loss(x, np.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        xent.sigmoid_focal_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="out"):
        xent.sigmoid_focal_loss_grad(x, x, out=np.zeros((3, 2)))
    e = np.empty((0, 2), np.float32)
    assert xent.sigmoid_focal_loss(e, e).shape == (0, 2)
    assert np.isnan(xent.sigmoid_focal_loss(e, e, reduction="mean"))


def test_out_inplace_and_python_threads():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    t = rng.integers(0, 2, (64, 300)).astype(np.float32)
    loss, grad = xent.sigmoid_focal_loss_and_grad(x, t, gamma=1.5)
    xc = x.copy()
    l2, g2 = xent.sigmoid_focal_loss_and_grad(xc, t, gamma=1.5, out=xc)
    assert g2 is xc
    np.testing.assert_array_equal(xc, grad)
    np.testing.assert_array_equal(l2, loss)
    # the kernels release the GIL and are stateless: concurrent calls agree with serial ones
    s = rng.standard_normal((64, 300))
    tgt = rng.integers(0, 300, 64)
    jobs = [
        (xent.sigmoid_focal_loss_grad, (x, t), dict(gamma=1.5)),
        (xent.focal_loss_and_grad, (s, tgt), {}),
        (xent.kl_div_with_logits_and_grad, (s, s[::-1].copy()), {}),
        (xent.binary_cross_entropy_with_logits_and_grad, (x, t), {}),
        (xent.expected_calibration_error, (s, tgt), {}),
    ] * 4
    serial = [f(*a, **k) for f, a, k in jobs]
    with ThreadPoolExecutor(4) as ex:
        par = list(ex.map(lambda j: j[0](*j[1], **j[2]), jobs))
    for a, b in zip(serial, par):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_array_equal(u, v)
