"""Validate the NumPy oracles of reference.py against PyTorch (float64, autograd)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close
from reference import (
    ref_cross_entropy,
    ref_cross_entropy_grad,
    ref_log_softmax,
    ref_logsumexp,
    ref_softmax,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-12


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _special_rows(rng, c):
    x = rng.standard_normal((8, c)) * 3
    x[1, :] = -np.inf
    x[2, 0] = np.inf
    x[3, -1] = np.nan
    x[4, 0], x[4, -1] = np.inf, -np.inf
    x[5, ::2] = -np.inf
    x[6, 0] = np.inf
    x[6, -1] = np.nan
    x[7] *= 1e4
    return x


@pytest.mark.parametrize("c", [1, 2, 5, 64])
def test_primitives_match_torch(rng, c):
    x = _special_rows(rng, c)
    tx = _t(x)
    assert_close(ref_logsumexp(x), torch.logsumexp(tx, -1).numpy(), rtol=RTOL)
    assert_close(ref_softmax(x), torch.softmax(tx, -1).numpy(), rtol=RTOL)
    assert_close(ref_log_softmax(x), torch.log_softmax(tx, -1).numpy(), rtol=RTOL)


def test_primitives_axis_keepdims(rng):
    x = rng.standard_normal((3, 4, 5))
    for axis in (0, 1, 2, -1):
        tx = _t(x)
        assert_close(ref_logsumexp(x, axis, keepdims=True),
                     torch.logsumexp(tx, axis, keepdim=True).numpy(), rtol=RTOL)
        assert_close(ref_softmax(x, axis), torch.softmax(tx, axis).numpy(), rtol=RTOL)
        assert_close(ref_log_softmax(x, axis), torch.log_softmax(tx, axis).numpy(), rtol=RTOL)


def test_primitives_empty_axis():
    x = np.zeros((3, 0))
    assert_close(ref_logsumexp(x), np.full(3, -np.inf), rtol=RTOL)
    assert ref_softmax(x).shape == (3, 0)
    assert ref_log_softmax(x).shape == (3, 0)


def _torch_ce(x, t, *, weight=None, ignore_index=-100, reduction="mean",
              label_smoothing=0.0):
    tx = _t(x).requires_grad_(True)
    tt = _t(t)
    kw = {"weight": None if weight is None else _t(weight), "reduction": reduction,
          "label_smoothing": label_smoothing}
    if t.dtype.kind != "f":
        kw["ignore_index"] = ignore_index
    loss = F.cross_entropy(tx.reshape(-1, x.shape[-1]),
                           tt.reshape(-1) if t.dtype.kind != "f" else tt.reshape(-1, x.shape[-1]),
                           **kw)
    if reduction == "none":
        go = torch.linspace(0.5, 1.5, loss.numel(), dtype=torch.float64)
        loss.backward(go)
        return loss.detach().numpy().reshape(x.shape[:-1]), tx.grad.numpy(), go.numpy()
    loss.backward(torch.tensor(0.75, dtype=torch.float64))
    return loss.detach().numpy(), tx.grad.numpy(), 0.75


def _class_case(rng, n, c, ignore_frac=0.3, ignore_index=-100):
    x = rng.standard_normal((n, c)) * 2
    t = rng.integers(0, c, size=n)
    t[rng.random(n) < ignore_frac] = ignore_index
    return x, t


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_ce_class_targets_match_torch(rng, reduction, label_smoothing, weighted, ignore_index):
    c = 7
    x, t = _class_case(rng, 23, c, ignore_index=ignore_index)
    w = rng.random(c) + 0.1 if weighted else None
    loss_t, grad_t, go = _torch_ce(x, t, weight=w, ignore_index=ignore_index,
                                   reduction=reduction, label_smoothing=label_smoothing)
    kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
              label_smoothing=label_smoothing)
    assert_close(ref_cross_entropy(x, t, **kw), loss_t, rtol=RTOL)
    go_ref = go.reshape(t.shape) if reduction == "none" else go
    assert_close(ref_cross_entropy_grad(x, t, go_ref, **kw), grad_t, rtol=RTOL)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_prob_targets_match_torch(rng, reduction, label_smoothing, weighted):
    n, c = 11, 6
    x = rng.standard_normal((n, c)) * 2
    t = rng.random((n, c))
    t /= t.sum(1, keepdims=True)
    t[0] = 0.0
    t[1] = np.eye(c)[3]
    w = rng.random(c) + 0.1 if weighted else None
    loss_t, grad_t, go = _torch_ce(x, t, weight=w, reduction=reduction,
                                   label_smoothing=label_smoothing)
    kw = dict(weight=w, reduction=reduction, label_smoothing=label_smoothing)
    assert_close(ref_cross_entropy(x, t, **kw), loss_t, rtol=RTOL)
    go_ref = go.reshape(n) if reduction == "none" else go
    assert_close(ref_cross_entropy_grad(x, t, go_ref, **kw), grad_t, rtol=RTOL)


def test_ce_leading_axes_match_flat(rng):
    x = rng.standard_normal((2, 3, 5))
    t = rng.integers(0, 5, size=(2, 3))
    t[0, 1] = -100
    loss_t, grad_t, _ = _torch_ce(x, t, reduction="none")
    assert_close(ref_cross_entropy(x, t, reduction="none"), loss_t, rtol=RTOL)
    grad = ref_cross_entropy_grad(x, t, np.linspace(0.5, 1.5, 6).reshape(2, 3),
                                  reduction="none")
    assert_close(grad, grad_t.reshape(x.shape), rtol=RTOL)
    assert np.all(grad[0, 1] == 0)


@pytest.mark.parametrize("weighted", [False, True])
def test_ce_mean_over_nothing_is_nan(rng, weighted):
    x, _ = _class_case(rng, 4, 3)
    t = np.full(4, -100)
    w = np.array([1.0, 2.0, 3.0]) if weighted else None
    loss_t, grad_t, _ = _torch_ce(x, t, weight=w, label_smoothing=0.1)
    assert np.isnan(loss_t)
    assert np.isnan(ref_cross_entropy(x, t, weight=w, label_smoothing=0.1))
    g = ref_cross_entropy_grad(x, t, weight=w, label_smoothing=0.1)
    assert np.array_equal(g, np.zeros_like(x))
    assert np.array_equal(g, grad_t)


def test_ce_nonfinite_rows(rng):
    x, t = _class_case(rng, 6, 4, ignore_frac=0.0)
    x[0, 1] = np.inf
    x[1, :] = -np.inf
    x[2, 2] = np.nan
    x[3, 0] = -np.inf
    t[3] = 1
    t[4] = -100
    x[4] = np.nan  # ignored: must contribute exactly 0 and get zero gradient
    loss_t, grad_t, go = _torch_ce(x, t, reduction="none")
    loss_r = ref_cross_entropy(x, t, reduction="none")
    assert_close(loss_r, loss_t, rtol=RTOL)
    assert loss_r[4] == 0
    g = ref_cross_entropy_grad(x, t, go, reduction="none")
    # API.md: ignored rows get exactly zero gradient even with NaN logits (torch: NaN).
    assert np.all(g[4] == 0)
    assert_close(g[[3, 5]], grad_t[[3, 5]], rtol=RTOL)
    assert np.isnan(g[:3]).all(axis=1).tolist() == np.isnan(grad_t[:3]).all(axis=1).tolist()


# ---- options torch does not have: compare with an autograd expression ----


def _torch_extended(x, t, *, weight, ignore_index, reduction, label_smoothing, z_loss,
                    softcap, sample_weight, grad_output):
    """API.md's definition written with torch ops; returns (loss, grad)."""
    c = x.shape[-1]
    tx = _t(x).requires_grad_(True)
    z = tx.reshape(-1, c)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    soft = t.dtype.kind == "f"
    tt = _t(t).reshape(-1, c) if soft else _t(t).reshape(-1)
    tw = None if weight is None else _t(weight)
    kw = {"weight": tw, "reduction": "none", "label_smoothing": label_smoothing}
    if not soft:
        kw["ignore_index"] = ignore_index
    row = F.cross_entropy(z, tt, **kw)
    lse = torch.logsumexp(z, -1)
    n = z.shape[0]
    if soft:
        keep = torch.ones(n, dtype=torch.bool)
        w_row = torch.ones(n, dtype=torch.float64)
    else:
        keep = tt != ignore_index
        w_row = torch.ones(n, dtype=torch.float64) if tw is None else tw[tt.clamp(min=0)]
        w_row = torch.where(keep, w_row, torch.zeros_like(w_row))
    row = row + torch.where(keep, z_loss * w_row * lse**2, torch.zeros_like(lse))
    sw = torch.ones(n, dtype=torch.float64) if sample_weight is None else _t(
        sample_weight).reshape(-1)
    row = row * sw
    if reduction == "none":
        loss = row
        loss.backward(_t(np.broadcast_to(grad_output, (n,)).copy()))
        return loss.detach().numpy().reshape(t.shape if not soft else x.shape[:-1]), \
            tx.grad.numpy()
    if reduction == "sum":
        loss = row.sum()
    else:
        denom = (sw * w_row)[keep].sum() if (not soft or sample_weight is not None) else n
        loss = row.sum() / denom
    loss.backward(torch.tensor(float(grad_output), dtype=torch.float64))
    return loss.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(
    "opts",
    [
        dict(z_loss=1e-2),
        dict(softcap=3.0),
        dict(sample_weight=True),
        dict(z_loss=0.5, softcap=2.0, sample_weight=True, weighted=True, label_smoothing=0.2),
        dict(z_loss=1e-3, weighted=True),
        dict(softcap=30.0, sample_weight=True, weighted=True),
    ],
    ids=["zloss", "softcap", "sample_weight", "all", "zloss_w", "softcap_sw_w"],
)
def test_ce_extended_options_match_torch_expression(rng, reduction, soft, opts):
    opts = dict(opts)
    n, c = 13, 9
    x = rng.standard_normal((n, c)) * 4
    if soft:
        t = rng.random((n, c))
        t /= t.sum(1, keepdims=True)
    else:
        t = rng.integers(0, c, size=n)
        t[[2, 5]] = -100
    w = rng.random(c) + 0.2 if opts.pop("weighted", False) else None
    sw = rng.random(n) + 0.5 if opts.pop("sample_weight", False) else None
    kw = dict(weight=w, ignore_index=-100, reduction=reduction,
              label_smoothing=opts.get("label_smoothing", 0.0), z_loss=opts.get("z_loss", 0.0),
              softcap=opts.get("softcap"), sample_weight=sw)
    go = np.linspace(0.25, 2.0, n) if reduction == "none" else 1.5
    loss_t, grad_t = _torch_extended(x, t, grad_output=go, **kw)
    assert_close(ref_cross_entropy(x, t, **kw), loss_t, rtol=RTOL)
    assert_close(ref_cross_entropy_grad(x, t, go, **kw), grad_t, rtol=RTOL)
    if not soft:
        g = ref_cross_entropy_grad(x, t, go, **kw)
        assert np.all(g[[2, 5]] == 0)


def test_ce_sample_weight_ones_is_identity(rng):
    x, t = _class_case(rng, 10, 4)
    w = rng.random(4) + 0.5
    for red in ("none", "mean", "sum"):
        a = ref_cross_entropy(x, t, weight=w, reduction=red, label_smoothing=0.1, z_loss=0.1)
        b = ref_cross_entropy(x, t, weight=w, reduction=red, label_smoothing=0.1, z_loss=0.1,
                              sample_weight=np.ones(10))
        assert_close(a, b, rtol=RTOL)


def test_ce_grad_matches_finite_differences(rng):
    """A second, torch-free check of the closed-form gradient (all options on)."""
    n, c = 3, 5
    x = rng.standard_normal((n, c))
    t = np.array([1, -100, 4])
    kw = dict(weight=rng.random(c) + 0.5, label_smoothing=0.3, z_loss=0.2, softcap=2.5,
              sample_weight=rng.random(n) + 0.5)
    g = ref_cross_entropy_grad(x, t, **kw)
    h = 1e-6
    fd = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (ref_cross_entropy(xp, t, **kw) - ref_cross_entropy(xm, t, **kw)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("bad", [-1, 5, -101])
def test_ce_reference_rejects_out_of_range_targets(bad):
    x = np.zeros((2, 5))
    with pytest.raises(IndexError):
        ref_cross_entropy(x, np.array([0, bad]))
    with pytest.raises(IndexError):
        ref_cross_entropy_grad(x, np.array([bad, 1]))
