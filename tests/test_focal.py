"""focal_loss / focal_loss_grad / focal_loss_and_grad against PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    DTYPES,
    REDUCTIONS,
    assert_close,
    backward_numpy,
    finite_diff,
    torch_f64,
    torch_focal,
)

import xent

torch = pytest.importorskip("torch")
F = torch.nn.functional

IGN = -100


def make(rng, shape, c, dtype, n_ignore=1, scale=3.0):
    x = (rng.standard_normal(shape + (c,)) * scale).astype(dtype)
    t = rng.integers(0, c, size=shape)
    if n_ignore and t.size:
        t.reshape(-1)[rng.choice(t.size, size=min(n_ignore, t.size), replace=False)] = IGN
    return x, t


def alpha_value(kind, c, rng):
    if kind is None:
        return None
    if kind == "scalar":
        return 0.25
    return rng.uniform(0.1, 2.0, size=c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("alpha_kind", [None, "scalar", "vector"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(dtype, gamma, alpha_kind, reduction):
    rng = np.random.default_rng(7)
    x, t = make(rng, (13,), 9, dtype, n_ignore=2)
    alpha = alpha_value(alpha_kind, 9, rng)
    kw = dict(gamma=gamma, alpha=alpha, reduction=reduction)
    ref_loss, ref_grad = torch_focal(x, t, gamma, alpha, reduction)
    loss = xent.focal_loss(x, t, **kw)
    l2, g2 = xent.focal_loss_and_grad(x, t, **kw)
    g1 = xent.focal_loss_grad(x, t, **kw)
    assert_close(loss, ref_loss, dtype)
    assert_close(g1, ref_grad, dtype)
    np.testing.assert_array_equal(l2, loss)
    np.testing.assert_array_equal(g2, g1)
    assert g1.dtype == dtype and g1.shape == x.shape
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == t.shape and loss.dtype == dtype
        assert np.all(loss[t == IGN] == 0)
    else:
        assert type(loss) is np.dtype(dtype).type
    assert np.all(g1[t == IGN] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_grad_output(dtype, reduction):
    rng = np.random.default_rng(3)
    x, t = make(rng, (4, 5), 6, dtype)
    go = 0.7
    _, ref = torch_focal(x, t, 1.5, 0.3, reduction, go)
    assert_close(xent.focal_loss_grad(x, t, go, gamma=1.5, alpha=0.3, reduction=reduction),
                 ref, dtype)
    if reduction == "none":
        rows = rng.standard_normal(t.shape).astype(dtype)
        _, ref = torch_focal(x, t, 1.5, 0.3, reduction, rows)
        got = xent.focal_loss_grad(x, t, rows, gamma=1.5, alpha=0.3, reduction="none")
        assert_close(got, ref, dtype)
    else:
        with pytest.raises(ValueError, match="grad_output must be a scalar"):
            xent.focal_loss_grad(x, t, np.ones(t.shape), reduction=reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gamma0_is_cross_entropy(dtype, reduction):
    """gamma=0, alpha=None equals F.cross_entropy (loss and gradient)."""
    rng = np.random.default_rng(11)
    x, t = make(rng, (17,), 33, dtype, n_ignore=3)
    xt = torch_f64(x, requires_grad=True)
    ref = F.cross_entropy(xt, torch.tensor(t), ignore_index=IGN, reduction=reduction)
    g_ref = backward_numpy(ref, xt, reduction)
    loss, grad = xent.focal_loss_and_grad(x, t, gamma=0.0, reduction=reduction)
    assert_close(loss, ref.detach().numpy(), dtype)
    assert_close(grad, g_ref, dtype)
    # and against torch computing in the input's own dtype
    xt32 = torch.tensor(x, requires_grad=True)
    ref32 = F.cross_entropy(xt32, torch.tensor(t), ignore_index=IGN, reduction=reduction)
    assert_close(loss, ref32.detach().numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 7, 8, 9, 16, 17, 31, 33, 65, 1025])
def test_simd_paths(simd, dtype, c):
    rng = np.random.default_rng(c)
    x, t = make(rng, (5,), c, dtype)
    alpha = rng.uniform(0.2, 1.0, size=c)
    ref_loss, ref_grad = torch_focal(x, t, 2.0, alpha, "sum")
    loss, grad = xent.focal_loss_and_grad(x, t, alpha=alpha, reduction="sum")
    assert_close(loss, ref_loss, dtype)
    assert_close(grad, ref_grad, dtype)


def test_threads_bitwise():
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        x, t = make(rng, (300,), 257, dtype, n_ignore=10)
        a1 = xent.focal_loss_and_grad(x, t, gamma=1.5, reduction="none", num_threads=1)
        a2 = xent.focal_loss_and_grad(x, t, gamma=1.5, reduction="none", num_threads=2)
        np.testing.assert_array_equal(a1[0], a2[0])
        np.testing.assert_array_equal(a1[1], a2[1])
        m1 = xent.focal_loss(x, t, num_threads=1)
        m2 = xent.focal_loss(x, t, num_threads=2)
        assert m1 == m2


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_and_inplace(dtype):
    rng = np.random.default_rng(2)
    x, t = make(rng, (6,), 10, dtype)
    loss, grad = xent.focal_loss_and_grad(x, t, gamma=2.0)
    out = np.full_like(x, np.nan)
    l2, g2 = xent.focal_loss_and_grad(x, t, gamma=2.0, out=out)
    assert g2 is out
    np.testing.assert_array_equal(out, grad)
    assert l2 == loss
    g3 = xent.focal_loss_grad(x, t, out=np.empty_like(x))
    np.testing.assert_array_equal(g3, grad)
    xc = x.copy()
    l4, g4 = xent.focal_loss_and_grad(xc, t, gamma=2.0, out=xc)
    assert g4 is xc
    np.testing.assert_array_equal(xc, grad)
    assert l4 == loss
    xc = x.copy()
    xent.focal_loss_grad(xc, t, out=xc)
    np.testing.assert_array_equal(xc, grad)
    # partial overlap with the input: still correct (computed in a temporary)
    big = np.concatenate([x.reshape(-1), np.zeros(10, dtype)])
    xv = big[:x.size].reshape(x.shape)
    ov = big[10:].reshape(x.shape)
    xent.focal_loss_grad(xv, t, out=ov)
    np.testing.assert_array_equal(ov, grad)
    for bad in (np.empty(x.shape, np.float16), np.empty((6, 9), dtype),
                np.empty((10, 6), dtype).T, [0.0] * 60):
        with pytest.raises(ValueError):
            xent.focal_loss_grad(x, t, out=bad)
    ro = np.empty_like(x)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        xent.focal_loss_and_grad(x, t, out=ro)


def test_shapes_and_dtypes():
    rng = np.random.default_rng(9)
    x, t = make(rng, (2, 3), 5, np.float64, n_ignore=0)
    ref_loss, ref_grad = torch_focal(x, t, 2.0, None, "none")
    loss, grad = xent.focal_loss_and_grad(x, t, reduction="none")
    assert loss.shape == (2, 3) and grad.shape == (2, 3, 5)
    assert_close(loss, ref_loss, np.float64)
    assert_close(grad, ref_grad, np.float64)
    # one class: p_t = 1, loss 0, gradient 0
    loss, grad = xent.focal_loss_and_grad(np.array([[3.0], [-1.0]]), [0, 0], reduction="none")
    np.testing.assert_array_equal(loss, 0)
    np.testing.assert_array_equal(grad, 0)
    # empty batch
    e = np.empty((0, 4), np.float32)
    assert np.isnan(xent.focal_loss(e, np.empty(0, np.int64)))
    assert xent.focal_loss(e, np.empty(0, np.int64), reduction="sum") == 0
    assert xent.focal_loss(e, np.empty(0, int), reduction="none").shape == (0,)
    assert xent.focal_loss_grad(e, np.empty(0, int)).shape == (0, 4)
    # all ignored: mean is NaN, gradient zero
    loss, grad = xent.focal_loss_and_grad(np.ones((2, 3)), [IGN, IGN])
    assert np.isnan(loss) and np.all(grad == 0)
    # float16 computes in float32; any integer target dtype; non-contiguous input
    x16 = rng.standard_normal((4, 6)).astype(np.float16)
    l16 = xent.focal_loss(x16, np.array([0, 1, 2, 3], np.uint8))
    assert l16.dtype == np.float32
    assert l16 == xent.focal_loss(x16.astype(np.float32), [0, 1, 2, 3])
    xf = np.asfortranarray(rng.standard_normal((4, 6)))
    assert xent.focal_loss(xf, [1, 2, 3, 4]) == xent.focal_loss(np.ascontiguousarray(xf),
                                                                 [1, 2, 3, 4])


def test_errors():
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(TypeError, match="int64"):
        xent.focal_loss(np.zeros((3, 4), np.int64), t)
    with pytest.raises(TypeError, match="bool"):
        xent.focal_loss(np.zeros((3, 4), bool), t)
    with pytest.raises(TypeError, match="floating"):
        xent.focal_loss(x, t.astype(float))
    with pytest.raises(TypeError, match="bool"):
        xent.focal_loss(x, np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        xent.focal_loss(x, t[:2])
    with pytest.raises(ValueError, match="C == 0"):
        xent.focal_loss(np.zeros((3, 0)), t)
    with pytest.raises(ValueError, match="gamma"):
        xent.focal_loss(x, t, gamma=-0.5)
    with pytest.raises(ValueError, match="gamma"):
        xent.focal_loss(x, t, gamma=float("nan"))
    with pytest.raises(ValueError, match=r"alpha must have shape \(4,\)"):
        xent.focal_loss(x, t, alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="reduction"):
        xent.focal_loss(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="grad_output has shape"):
        xent.focal_loss_grad(x, t, np.ones(2), reduction="none")
    with pytest.raises(ValueError, match="num_threads"):
        xent.focal_loss(x, t, num_threads=0)
    out = np.full_like(x, 7.0)
    with pytest.raises(IndexError, match=r"target 4 at flat position 1 .* 4 classes"):
        xent.focal_loss_and_grad(x, [0, 4, 1], out=out)
    np.testing.assert_array_equal(out, 7.0)  # nothing written on a bad target
    with pytest.raises(IndexError, match=r"target -1 at flat position 2"):
        xent.focal_loss_grad(x, [0, 1, -1], out=out)
    np.testing.assert_array_equal(out, 7.0)
    # -100 is an ordinary (out-of-range) value once ignore_index is something else
    with pytest.raises(IndexError, match=r"target -100 at flat position 2.*ignore_index=1"):
        xent.focal_loss(x, [0, 1, -100], ignore_index=1)
    assert np.isfinite(xent.focal_loss(x, [0, 1, 5], ignore_index=5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_like_torch(dtype):
    x = np.array([[0.0, 1.0, 2.0],
                  [np.nan, 1.0, 2.0],
                  [np.inf, 1.0, 2.0],
                  [-np.inf, 1.0, 2.0],     # target logit -inf: loss inf
                  [-np.inf, -np.inf, -np.inf],
                  [-np.inf, 1.0, 2.0]], dtype)
    t = np.array([1, 1, 1, 0, 0, 2])
    for gamma in (0.0, 2.0):
        loss, grad = xent.focal_loss_and_grad(x, t, gamma=gamma, reduction="none")
        ref, ref_grad = torch_focal(x, t, gamma, None, "none")
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref))
        assert loss[3] == np.inf and ref[3] == np.inf
        fin = np.isfinite(ref)
        assert_close(loss[fin], ref[fin], dtype)
        # finite-gradient rows agree; xent's row 3 is the finite limit alpha_t (p - onehot)
        ok = np.isfinite(ref_grad).all(axis=1)
        assert_close(grad[ok], ref_grad[ok], dtype)
        p3 = np.array([0.0, 1 / (1 + np.e), np.e / (1 + np.e)])
        assert_close(grad[3], p3 - [1, 0, 0], dtype)
        assert np.isnan(grad[1]).all() and np.isnan(grad[2]).all() and np.isnan(grad[4]).all()


def test_confident_rows_accurate():
    """p_t -> 1: exact reference via e = sum_{j != t} exp(x_j - x_t), 1 - p = e / (1 + e)."""
    for d in (5.0, 20.0, 30.0, 36.0):
        x = np.array([[d, 0.0, -1.0]])
        e = np.exp(-d) + np.exp(-1.0 - d)
        logp = -np.log1p(e)
        one_m_p = e / (1 + e)
        for gamma in (0.5, 2.0):
            want = -(one_m_p ** gamma) * logp
            loss, grad = xent.focal_loss_and_grad(x, [0], gamma=gamma, reduction="sum")
            np.testing.assert_allclose(loss, want, rtol=1e-13)
            c = one_m_p ** gamma + gamma * (1 - one_m_p) * (-logp) * one_m_p ** (gamma - 1)
            pj = np.exp(x[0] - x[0, 0]) / (1 + e)
            pj[0] = 1.0
            want_g = c * (pj - [1, 0, 0])
            want_g[0] = -c * one_m_p
            np.testing.assert_allclose(grad[0], want_g, rtol=1e-12)
    # float32: 1 - p_t keeps float32 relative accuracy although p_t rounds to 1
    for d in (8.0, 12.0, 16.0):
        x = np.array([[d, 0.0, -1.0]], np.float32)
        e = np.exp(-d) + np.exp(-1.0 - d)
        want = -((e / (1 + e)) ** 2.0) * -np.log1p(e)
        loss, grad = xent.focal_loss_and_grad(x, [0], gamma=2.0, reduction="sum")
        np.testing.assert_allclose(loss, want, rtol=1e-5)
        omp = e / (1 + e)
        want_gt = -(omp**3 + 2.0 * (1 - omp) * np.log1p(e) * omp**2)  # -c (1 - p_t)
        np.testing.assert_allclose(grad[0, 0], want_gt, rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9])
def test_small_gamma_finite_where_torch_is_nan(gamma):
    """At p_t == 1 (one class, or saturated) autograd of (1-p)**gamma gives NaN; xent 0."""
    x = np.array([[50.0, -50.0, 0.0], [1.0, 2.0, 3.0]])
    t = np.array([0, 2])
    _, ref_grad = torch_focal(x, t, gamma, None, "none")
    loss, grad = xent.focal_loss_and_grad(x, t, gamma=gamma, reduction="none")
    assert np.isnan(ref_grad[0]).any()          # torch's naive formula
    assert np.all(np.isfinite(grad))
    assert np.all(np.abs(grad[0]) < 1e-15)
    assert_close(grad[1], ref_grad[1], np.float64)
    assert_close(loss, np.array([0.0, torch_focal(x[1:], t[1:], gamma, None, "none")[0][0]]),
                 np.float64)


def test_out_overlapping_other_inputs():
    """out= sharing memory with the targets or grad_output is computed via a temporary."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 1))
    t = np.zeros(4, np.int64)
    want = xent.focal_loss_grad(x, t, reduction="none")
    buf = t.copy()
    out = buf.view(np.float64).reshape(4, 1)
    got = xent.focal_loss_grad(x, buf, reduction="none", out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    x = rng.standard_normal((3, 5))
    t = np.array([0, 2, 4])
    go = rng.standard_normal(15)
    want = xent.focal_loss_grad(x, t, go[:3].copy(), reduction="none")
    got = xent.focal_loss_grad(x, t, go[:3], reduction="none", out=go.reshape(3, 5))
    np.testing.assert_array_equal(got, want)


def test_gradients_vs_finite_differences():
    """Closed-form gradients of every variant against finite differences (no torch)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, 4))
    t = np.array([0, 3, 1])
    alpha = np.array([0.2, 0.5, 1.0, 2.0])
    cases = [
        (lambda z: xent.focal_loss(z, t, gamma=0.7, alpha=alpha, reduction="sum"),
         xent.focal_loss_grad(x, t, gamma=0.7, alpha=alpha, reduction="sum")),
        (lambda z: xent.kl_div_with_logits(z, x[::-1] * 2, temperature=1.7),
         xent.kl_div_with_logits_grad(x, x[::-1] * 2, temperature=1.7)),
    ]
    soft = rng.uniform(0, 1, x.shape)
    pw = np.array([0.5, 1.0, 2.0, 3.0])
    cases += [
        (lambda z: xent.sigmoid_focal_loss(z, soft, gamma=1.5, reduction="sum"),
         xent.sigmoid_focal_loss_grad(x, soft, gamma=1.5, reduction="sum")),
        (lambda z: xent.binary_cross_entropy_with_logits(z, soft, pos_weight=pw),
         xent.binary_cross_entropy_with_logits_grad(x, soft, pos_weight=pw)),
    ]
    for f, g in cases:
        np.testing.assert_allclose(g, finite_diff(f, x), rtol=1e-8, atol=1e-10)
    p = rng.uniform(0.05, 0.95, x.shape)
    np.testing.assert_allclose(
        xent.binary_cross_entropy_grad(p, soft, reduction="sum"),
        finite_diff(lambda z: xent.binary_cross_entropy(z, soft, reduction="sum"), p, h=1e-5),
        rtol=1e-7, atol=1e-9)
