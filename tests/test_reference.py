"""Validate the NumPy oracles of reference.py against PyTorch (float64, autograd), exact
closed forms and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    CONFIDENT_ROWS,
    assert_close,
    finite_diff,
    torch_bce,
    torch_bce_with_logits,
    torch_ce,
    torch_focal,
    torch_kl,
    torch_nll,
    torch_sigmoid_focal,
)

from benchmarks import reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-12
REDUCTIONS = ["none", "mean", "sum"]


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
    assert_close(ref.logsumexp(x), torch.logsumexp(tx, -1).numpy(), rtol=RTOL)
    assert_close(ref.softmax(x), torch.softmax(tx, -1).numpy(), rtol=RTOL)
    assert_close(ref.log_softmax(x), torch.log_softmax(tx, -1).numpy(), rtol=RTOL)


def test_primitives_axis_keepdims_empty_0d(rng):
    x = rng.standard_normal((3, 4, 5))
    for axis in (0, 1, 2, -1):
        tx = _t(x)
        assert_close(ref.logsumexp(x, axis, keepdims=True),
                     torch.logsumexp(tx, axis, keepdim=True).numpy(), rtol=RTOL)
        assert_close(ref.softmax(x, axis), torch.softmax(tx, axis).numpy(), rtol=RTOL)
        assert_close(ref.log_softmax(x, axis), torch.log_softmax(tx, axis).numpy(), rtol=RTOL)
    x = np.zeros((3, 0))
    assert_close(ref.logsumexp(x), np.full(3, -np.inf), rtol=RTOL)
    assert ref.softmax(x).shape == (3, 0) and ref.log_softmax(x).shape == (3, 0)
    assert ref.logsumexp(np.float64(2.5)) == 2.5 and ref.softmax(np.float64(2.5)) == 1.0


def _class_case(rng, n, c, ignore_frac=0.3, ignore_index=-100):
    x = rng.standard_normal((n, c)) * 2
    t = rng.integers(0, c, size=n)
    t[rng.random(n) < ignore_frac] = ignore_index
    return x, t


def _go(reduction, n):
    return np.linspace(0.5, 1.5, n) if reduction == "none" else 0.75


def _check_loss_and_grad(name, args, torch_loss_grad, go, **kw):
    """ref.NAME and ref.NAME_grad(go) against (loss, grad) computed by PyTorch."""
    want_loss, want_grad = torch_loss_grad
    assert_close(getattr(ref, name)(*args, **kw), want_loss, rtol=RTOL)
    assert_close(getattr(ref, name + "_grad")(*args, go, **kw), want_grad, rtol=RTOL)
    loss, grad = getattr(ref, name + "_and_grad")(*args, **kw)
    assert_close(loss, want_loss, rtol=RTOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_ce_class_targets_match_torch(rng, reduction, label_smoothing, weighted, ignore_index):
    c = 7
    x, t = _class_case(rng, 23, c, ignore_index=ignore_index)
    kw = dict(weight=rng.random(c) + 0.1 if weighted else None, ignore_index=ignore_index,
              reduction=reduction, label_smoothing=label_smoothing)
    go = _go(reduction, 23)
    _check_loss_and_grad("cross_entropy", (x, t), torch_ce(x, t, grad_output=go, **kw), go,
                         **kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_prob_targets_match_torch(rng, reduction, label_smoothing, weighted):
    n, c = 11, 6
    x = rng.standard_normal((n, c)) * 2
    t = rng.random((n, c))
    t /= t.sum(1, keepdims=True)
    t[0] = 0.0
    t[1] = np.eye(c)[3]
    kw = dict(weight=rng.random(c) + 0.1 if weighted else None, reduction=reduction,
              label_smoothing=label_smoothing)
    go = _go(reduction, n)
    _check_loss_and_grad("cross_entropy", (x, t), torch_ce(x, t, grad_output=go, **kw), go,
                         **kw)


def test_ce_leading_axes_match_flat(rng):
    x = rng.standard_normal((2, 3, 5))
    t = rng.integers(0, 5, size=(2, 3))
    t[0, 1] = -100
    go = np.linspace(0.5, 1.5, 6).reshape(2, 3)
    loss_t, grad_t = torch_ce(x, t, grad_output=go, reduction="none")
    assert_close(ref.cross_entropy(x, t, reduction="none"), loss_t, rtol=RTOL)
    grad = ref.cross_entropy_grad(x, t, go, reduction="none")
    assert_close(grad, grad_t, rtol=RTOL)
    assert np.all(grad[0, 1] == 0)


@pytest.mark.parametrize("weighted", [False, True])
def test_ce_mean_over_nothing_is_nan(rng, weighted):
    x, _ = _class_case(rng, 4, 3)
    t = np.full(4, -100)
    w = np.array([1.0, 2.0, 3.0]) if weighted else None
    loss_t, grad_t = torch_ce(x, t, weight=w, label_smoothing=0.1)
    assert np.isnan(loss_t)
    assert np.isnan(ref.cross_entropy(x, t, weight=w, label_smoothing=0.1))
    g = ref.cross_entropy_grad(x, t, weight=w, label_smoothing=0.1)
    assert np.array_equal(g, np.zeros_like(x)) and np.array_equal(g, grad_t)


def test_ce_nonfinite_rows(rng):
    x, t = _class_case(rng, 6, 4, ignore_frac=0.0)
    x[0, 1] = np.inf
    x[1, :] = -np.inf
    x[2, 2] = np.nan
    x[3, 0] = -np.inf
    t[3] = 1
    t[4] = -100
    x[4] = np.nan  # ignored: must contribute exactly 0 and get zero gradient
    go = np.linspace(0.5, 1.5, 6)
    loss_t, grad_t = torch_ce(x, t, grad_output=go, reduction="none")
    loss_r = ref.cross_entropy(x, t, reduction="none")
    assert_close(loss_r, loss_t, rtol=RTOL)
    assert loss_r[4] == 0
    g = ref.cross_entropy_grad(x, t, go, reduction="none")
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
        row.backward(_t(np.broadcast_to(grad_output, (n,)).copy()))
        return row.detach().numpy(), tx.grad.numpy()
    if reduction == "sum":
        loss = row.sum()
    else:
        denom = (sw * w_row)[keep].sum() if (not soft or sample_weight is not None) else n
        loss = row.sum() / denom
    loss.backward(torch.tensor(float(grad_output), dtype=torch.float64))
    return loss.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
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
    _check_loss_and_grad("cross_entropy", (x, t), _torch_extended(x, t, grad_output=go, **kw),
                         go, **kw)
    if not soft:
        assert np.all(ref.cross_entropy_grad(x, t, go, **kw)[[2, 5]] == 0)


def test_ce_sample_weight_ones_is_identity(rng):
    x, t = _class_case(rng, 10, 4)
    w = rng.random(4) + 0.5
    for red in REDUCTIONS:
        a = ref.cross_entropy(x, t, weight=w, reduction=red, label_smoothing=0.1, z_loss=0.1)
        b = ref.cross_entropy(x, t, weight=w, reduction=red, label_smoothing=0.1, z_loss=0.1,
                              sample_weight=np.ones(10))
        assert_close(a, b, rtol=RTOL)


@pytest.mark.parametrize("bad", [-1, 5, -101])
def test_ce_reference_rejects_out_of_range_targets(bad):
    x = np.zeros((2, 5))
    with pytest.raises(IndexError):
        ref.cross_entropy(x, np.array([0, bad]))
    with pytest.raises(IndexError):
        ref.cross_entropy_grad(x, np.array([bad, 1]))


# ---- the other families against PyTorch ----


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_and_perplexity_match_torch(rng, reduction, weighted):
    x, t = _class_case(rng, 17, 6, ignore_index=1)
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    kw = dict(weight=rng.random(6) + 0.1 if weighted else None, ignore_index=1,
              reduction=reduction)
    go = _go(reduction, 17)
    _check_loss_and_grad("nll_loss", (lp, t), torch_nll(lp, t, grad_output=go, **kw), go, **kw)
    assert_close(ref.perplexity(x, t, ignore_index=1),
                 np.exp(torch_ce(x, t, ignore_index=1)[0]), rtol=RTOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma, alpha", [(0.0, None), (2.0, 0.25), (0.5, "vector"),
                                          (3.7, None)])
def test_focal_matches_torch(rng, reduction, gamma, alpha):
    x, t = _class_case(rng, 15, 7)
    x *= 2
    alpha = rng.uniform(0.1, 2.0, 7) if alpha == "vector" else alpha
    go = _go(reduction, 15)
    kw = dict(gamma=gamma, alpha=alpha, reduction=reduction)
    _check_loss_and_grad("focal_loss", (x, t), torch_focal(x, t, gamma, alpha, reduction, go),
                         go, **kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", [{}, {"weight": "row", "pos_weight": True}, {"weight": "full"}])
def test_binary_losses_match_torch(rng, reduction, opts):
    shape = (6, 9)
    x = rng.standard_normal(shape) * 4
    x[0, :3] = [-40.0, 40.0, 0.0]
    y = rng.uniform(0, 1, shape)
    y[1] = np.round(y[1])
    w = {None: None, "row": rng.uniform(0.1, 2, 9), "full": rng.uniform(0.1, 2, shape)}[
        opts.get("weight")]
    pw = rng.uniform(0.5, 3, 9) if opts.get("pos_weight") else None
    go = rng.uniform(-2, 2, shape) if reduction == "none" else 0.75
    kw = dict(weight=w, pos_weight=pw, reduction=reduction)
    _check_loss_and_grad("binary_cross_entropy_with_logits", (x, y),
                         torch_bce_with_logits(x, y, w, pw, reduction, go), go, **kw)
    p = rng.uniform(0, 1, shape)
    p[0, :4] = [0.0, 1.0, 1e-30, 1 - 1e-7]  # the -100 clamp and the backward's EPSILON
    kw = dict(weight=w, reduction=reduction)
    _check_loss_and_grad("binary_cross_entropy", (p, y), torch_bce(p, y, w, reduction, go), go,
                         **kw)
    for alpha, gamma in ((0.25, 2.0), (-1.0, 0.5), (0.7, 0.0), (0.5, 3.3)):
        kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
        _check_loss_and_grad("sigmoid_focal_loss", (x, y),
                             torch_sigmoid_focal(x, y, alpha, gamma, reduction, go), go, **kw)


@pytest.mark.parametrize("reduction", ["batchmean", *REDUCTIONS])
@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.5])
def test_kl_matches_torch(rng, reduction, temperature):
    s = rng.standard_normal((2, 5, 13)) * 3
    t = rng.standard_normal((2, 5, 13)) * 3
    t[0, 0, :4] = -np.inf  # masked teacher classes contribute 0
    go = rng.uniform(-2, 2, (2, 5)) if reduction == "none" else 0.75
    kw = dict(temperature=temperature, reduction=reduction)
    _check_loss_and_grad("kl_div_with_logits", (s, t),
                         torch_kl(s, t, temperature, reduction, go), go, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_scores_match_torch(rng, dtype, temperature):
    x = np.round(rng.standard_normal((5, 40)) * 3, 1).astype(dtype)  # ties
    x[1, ::3] = -np.inf
    x[2, 7] = np.nan
    x[3, :] = -np.inf
    x[4, 5] = np.inf
    t = rng.integers(0, 40, 5)
    t[0] = -100
    got = ref.token_scores(x, t, top_k=40, temperature=temperature)
    s = torch.from_numpy(x) / temperature if temperature != 1.0 else torch.from_numpy(x)
    sd = s.double()
    lp = torch.log_softmax(sd, -1)
    assert_close(got.logsumexp, torch.logsumexp(sd, -1).numpy(), rtol=RTOL)
    assert_close(got.entropy, torch.special.entr(lp.exp()).sum(-1).numpy(), rtol=RTOL)
    want = lp.gather(-1, torch.from_numpy(np.maximum(t, 0))[:, None])[:, 0].numpy()
    assert_close(got.logprob[1:], want[1:], rtol=RTOL)
    assert np.isnan(got.logprob[0]) and got.rank[0] == -1
    st = s.gather(-1, torch.from_numpy(np.maximum(t, 0))[:, None])
    np.testing.assert_array_equal(got.rank[1:], ((s > st).sum(-1) + 1).numpy()[1:])
    # descending, NaN first, ties by the lower index (torch.sort is stable)
    order = torch.sort(torch.where(torch.isnan(s), np.inf, s), dim=-1, descending=True,
                       stable=True).indices.numpy()
    np.testing.assert_array_equal(got.top_indices, order)
    assert_close(got.top_logprobs, np.take_along_axis(lp.numpy(), order, -1), rtol=RTOL)


# ---- near-certain rows: exact closed forms (nothing rounds a quantity near 1) ----

CONFIDENT_X = np.concatenate([CONFIDENT_ROWS, [[36.0, 0.0, -1.0, 0.0, 0.0]]])


def test_confident_rows_exact():
    """Target = the row's unique maximum, r = sum_{j != t} exp(x_j - x_t): CE loss
    log1p(r), grad_j = exp(x_j - x_t) / (1 + r), grad_t = -r / (1 + r); focal and token
    scores from 1 - p_t = r / (1 + r)."""
    x, t = CONFIDENT_X, np.zeros(len(CONFIDENT_X), np.int64)
    e = np.exp(x - x[:, :1])
    e[:, 0] = 0.0
    r = e.sum(1)
    grad = e / (1 + r)[:, None]
    grad[:, 0] = -r / (1 + r)
    loss, g = ref.cross_entropy_and_grad(x, t, reduction="none")
    np.testing.assert_allclose(loss, np.log1p(r), rtol=1e-14, atol=0)
    np.testing.assert_allclose(g, grad, rtol=1e-14, atol=0)
    one_m_p = r / (1 + r)
    for gamma in (0.5, 2.0):
        want = one_m_p**gamma * np.log1p(r)
        np.testing.assert_allclose(ref.focal_loss(x, t, gamma=gamma, reduction="none"), want,
                                   rtol=1e-14, atol=0)
    ts = ref.token_scores(x, t, top_k=1)
    np.testing.assert_allclose(ts.logprob, -np.log1p(r), rtol=1e-14, atol=0)
    d = x - x[:, :1]
    ent = np.log1p(r) - (np.exp(d) * d).sum(-1) / (1 + r)
    np.testing.assert_allclose(ts.entropy, ent, rtol=1e-13, atol=0)


# ---- every gradient against finite differences (no torch) ----


def _fd_cases(rng):
    x = rng.standard_normal((3, 4))
    t = np.array([1, -100, 3])
    soft = rng.uniform(0, 1, x.shape)
    w4 = rng.random(4) + 0.5
    return [
        ("cross_entropy", (x, t), dict(weight=w4, label_smoothing=0.3, z_loss=0.2, softcap=2.5,
                                       sample_weight=rng.random(3) + 0.5)),
        ("cross_entropy", (x, soft / soft.sum(1, keepdims=True)), dict(softcap=1.5, z_loss=0.5)),
        ("nll_loss", (x, t), dict(weight=w4)),
        ("focal_loss", (x, t), dict(gamma=0.7, alpha=w4)),
        ("binary_cross_entropy_with_logits", (x, soft), dict(weight=w4, pos_weight=w4[::-1])),
        ("binary_cross_entropy", (rng.uniform(0.05, 0.95, x.shape), soft), dict(weight=w4)),
        ("sigmoid_focal_loss", (x, soft), dict(gamma=1.5, alpha=0.3)),
        ("kl_div_with_logits", (x, x[::-1] * 2), dict(temperature=1.7)),
    ]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_match_finite_differences(rng, reduction):
    for name, (x, y), kw in _fd_cases(rng):
        fd = finite_diff(lambda z, name=name, y=y, kw=kw: getattr(ref, name)(
            z, y, reduction=reduction, **kw), x, h=1e-5)
        np.testing.assert_allclose(getattr(ref, name + "_grad")(x, y, reduction=reduction, **kw),
                                   fd, rtol=1e-7, atol=1e-9, err_msg=name)
