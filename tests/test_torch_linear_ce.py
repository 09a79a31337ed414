"""xent.torch.linear_cross_entropy / LinearCrossEntropyLoss against F.linear + F.cross_entropy."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import xent  # noqa: E402
import xent.torch as xt  # noqa: E402 (needs torch; a broken adapter fails, never skips)

pytestmark = pytest.mark.torch

D, V = 12, 23
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
DTYPES = [torch.float32, torch.float64]


def _params(dtype, bias, seed=0, lead=(3, 5)):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*lead, D, generator=g, dtype=dtype, requires_grad=True)
    w = (torch.randn(V, D, generator=g, dtype=dtype) / D ** 0.5).requires_grad_()
    b = torch.randn(V, generator=g, dtype=dtype, requires_grad=True) if bias else None
    t = torch.randint(0, V, lead, generator=g)
    return h, w, b, t


def _grads(loss, inputs, go):
    return torch.autograd.grad(loss, [x for x in inputs if x is not None], go)


TORCH_CASES = {
    "mean": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight-ignore-smooth": dict(weight=True, label_smoothing=0.15, ignore=True),
    "ignore5-none": dict(ignore_index=5, ignore=True, reduction="none"),
    "soft": dict(soft=True, label_smoothing=0.1, weight=True),
}


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("case", list(TORCH_CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_torch_linear_cross_entropy(dtype, case, bias):
    opts = dict(TORCH_CASES[case])
    soft, ignore = opts.pop("soft", False), opts.pop("ignore", False)
    h, w, b, t = _params(dtype, bias)
    if ignore:
        t.view(-1)[::4] = opts.get("ignore_index", -100)
    if soft:
        t = torch.softmax(torch.randn(*t.shape, V, dtype=dtype), -1)
    if opts.get("weight"):
        opts["weight"] = torch.rand(V, dtype=dtype) + 0.5
    for chunk in (None, 4):  # 4 does not divide the 15 rows
        loss = xt.linear_cross_entropy(h, w, t, b, chunk_size=chunk, **opts)
        logits = F.linear(h, w, b)
        tt = t.flatten(0, 1) if soft else t.flatten()
        ref = F.cross_entropy(logits.flatten(0, 1), tt, **opts)
        ref = ref.reshape(loss.shape)
        assert loss.dtype == dtype
        torch.testing.assert_close(loss, ref, **TOL[dtype])
        go = torch.rand(loss.shape, dtype=dtype) + 0.5 if loss.ndim else torch.tensor(1.5,
                                                                                     dtype=dtype)
        for a, r in zip(_grads(loss, (h, w, b), go), _grads(ref, (h, w, b), go)):
            torch.testing.assert_close(a, r, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_xent_options_match_numpy_api(dtype):
    """z_loss, softcap and sample_weight (no PyTorch counterpart): the NumPy API's values."""
    h, w, b, t = _params(dtype, True, seed=1)
    t.view(-1)[::3] = -100
    sw = torch.rand(t.shape, dtype=dtype)
    opts = dict(z_loss=1e-2, softcap=3.0, label_smoothing=0.05)
    loss = xt.linear_cross_entropy(h, w, t, b, sample_weight=sw, chunk_size=4, **opts)
    grads = _grads(loss, (h, w, b), torch.tensor(2.0, dtype=dtype))
    ref = xent.linear_cross_entropy_and_grad(h.detach().numpy(), w.detach().numpy(), t.numpy(),
                                             b.detach().numpy(), sample_weight=sw.numpy(),
                                             **opts)
    torch.testing.assert_close(loss, torch.tensor(ref[0]), **TOL[dtype])
    for a, r in zip(grads, ref[1:]):
        torch.testing.assert_close(a, 2.0 * torch.from_numpy(r), **TOL[dtype])


def test_backward_paths():
    """Uniform grad_output of "none", retain_graph's second backward, partial requires_grad."""
    h, w, b, t = _params(torch.float64, True, seed=2)
    loss = xt.linear_cross_entropy(h, w, t, b, reduction="none")
    ref = F.cross_entropy(F.linear(h, w, b).flatten(0, 1), t.flatten(),
                          reduction="none").reshape(loss.shape)
    go = torch.full(loss.shape, 0.25, dtype=torch.float64)
    g1 = _grads(loss, (h, w, b), go)  # uniform: the forward's gradients, scaled
    r1 = _grads(ref, (h, w, b), go)
    for a, r in zip(g1, r1):
        torch.testing.assert_close(a, r)

    loss = xt.linear_cross_entropy(h, w, t, b)
    loss.backward(retain_graph=True)
    first = [x.grad.clone() for x in (h, w, b)]
    loss.backward()  # recomputed
    for x, g in zip((h, w, b), first):
        torch.testing.assert_close(x.grad, 2 * g)

    hd = h.detach()  # only the weight needs a gradient
    loss = xt.linear_cross_entropy(hd, w, t)
    (gw,) = torch.autograd.grad(loss, [w])
    (rw,) = torch.autograd.grad(F.cross_entropy(F.linear(hd, w).flatten(0, 1), t.flatten()), [w])
    torch.testing.assert_close(gw, rw)

    with torch.no_grad():
        nog = xt.linear_cross_entropy(h, w, t, b)
    assert not nog.requires_grad
    ref = F.cross_entropy(F.linear(h, w, b).flatten(0, 1), t.flatten())
    torch.testing.assert_close(nog, ref.detach())


def test_all_ignored_and_empty():
    h, w, b, t = _params(torch.float32, True, seed=3)
    t.fill_(-100)
    loss = xt.linear_cross_entropy(h, w, t, b)
    assert torch.isnan(loss)
    loss.backward()
    assert not h.grad.any() and not w.grad.any() and not b.grad.any()
    e = xt.linear_cross_entropy(h[:0], w, t[:0], b, reduction="sum")
    assert e.item() == 0.0


def test_module_matches_cross_entropy_loss():
    h, w, b, t = _params(torch.float32, True, seed=4)
    t.view(-1)[::2] = 0
    cw = torch.rand(V) + 0.5
    crit = xt.LinearCrossEntropyLoss(cw, ignore_index=0, label_smoothing=0.1, chunk_size=3)
    assert torch.equal(crit.state_dict()["weight"], cw)
    ref = torch.nn.CrossEntropyLoss(cw, ignore_index=0, label_smoothing=0.1)(
        F.linear(h, w, b).flatten(0, 1), t.flatten())
    torch.testing.assert_close(crit(h, w, t, b), ref)


def test_errors():
    h, w, b, t = _params(torch.float32, True, seed=5)
    with pytest.raises(RuntimeError, match="same dtype"):
        xt.linear_cross_entropy(h, w.double(), t)
    with pytest.raises(TypeError, match="float32 and float64"):
        xt.linear_cross_entropy(h.half(), w.half(), t)
    with pytest.raises(TypeError, match="torch.Tensor"):
        xt.linear_cross_entropy(h, w.detach().numpy(), t)
    with pytest.raises(ValueError, match=r"expected \(V, 12\)"):
        xt.linear_cross_entropy(h, w[:, :5], t)
    with pytest.raises(IndexError, match="out of range"):
        xt.linear_cross_entropy(h, w, torch.full(t.shape, V))
    soft = torch.rand(*t.shape, V, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        xt.linear_cross_entropy(h, w, soft)
    loss = xt.linear_cross_entropy(h, w, t, b)
    (gh,) = torch.autograd.grad(loss, [h], create_graph=True)
    with pytest.raises(RuntimeError):
        gh.sum().backward()


def test_linear_ce_under_torch_func_says_it_is_unsupported():
    h, w = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor([0, 4, 2, 1])
    with pytest.raises(NotImplementedError, match="torch.func"):
        torch.func.grad(lambda h: xt.linear_cross_entropy(h, w, t))(h)
