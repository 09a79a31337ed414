"""xent.torch beyond first-order backward: double backward, forward-mode AD, torch.func,
retain_graph, and in-place gradients on views (issue 16).

References are PyTorch's own losses (or, for xent's own losses, the formulas of
API.md written with PyTorch ops: helpers.torch_*), differentiated by PyTorch's autograd.
"""

from __future__ import annotations

import pytest
from helpers import (
    torch_ce_ext,
    torch_focal_loss,
    torch_kl_div_with_logits,
    torch_sigmoid_focal_loss,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional
import xent.torch as xt  # noqa: E402 (needs torch; a broken adapter fails, never skips)

fwAD = torch.autograd.forward_ad

pytestmark = [
    pytest.mark.torch,
    # PyTorch's forward-mode AD loads its decompositions with torch.jit.script on first use
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]

D = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def close(a, b, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


# --------------------------------------------------------------------------- cases


# (id, xent call, PyTorch reference call, input factory) -- float64, reduction varies
def _cases():
    x = torch.randn(5, 4, dtype=D)
    t = torch.tensor([0, 3, 1, 1, 2])
    t_ign = torch.tensor([0, -100, 1, 3, 2])
    q = torch.softmax(torch.randn(5, 4, dtype=D), 1)
    w = torch.rand(4, dtype=D) + 0.5
    y = torch.rand(5, 4, dtype=D)
    p = torch.rand(5, 4, dtype=D) * 0.9 + 0.05
    x3 = torch.randn(2, 4, 3, dtype=D)
    t3 = torch.randint(0, 4, (2, 3))
    teacher = torch.randn(2, 3, 4, dtype=D)
    cases = []
    for red in ("mean", "sum", "none"):
        cases += [
            (f"ce-{red}", lambda z, r=red: xt.cross_entropy(z, t, reduction=r),
             lambda z, r=red: F.cross_entropy(z, t, reduction=r), x),
            (f"ce-weight-smooth-ignore-{red}",
             lambda z, r=red: xt.cross_entropy(z, t_ign, w, reduction=r, label_smoothing=0.2),
             lambda z, r=red: F.cross_entropy(z, t_ign, w, reduction=r, label_smoothing=0.2), x),
            (f"ce-ncd-{red}", lambda z, r=red: xt.cross_entropy(z, t3, reduction=r),
             lambda z, r=red: F.cross_entropy(z, t3, reduction=r), x3),
            (f"ce-probs-{red}",
             lambda z, r=red: xt.cross_entropy(z, q, w, reduction=r, label_smoothing=0.1),
             lambda z, r=red: F.cross_entropy(z, q, w, reduction=r, label_smoothing=0.1), x),
            (f"ce-zloss-softcap-{red}",
             lambda z, r=red: xt.cross_entropy(z, t_ign, w, reduction=r, z_loss=0.1,
                                               softcap=2.0, label_smoothing=0.1),
             lambda z, r=red: torch_ce_ext(z, t_ign, 0.1, 2.0, weight=w, reduction=r,
                                         label_smoothing=0.1), x),
            (f"ce-zloss-{red}",
             lambda z, r=red: xt.cross_entropy(z, t, w, reduction=r, z_loss=0.3),
             lambda z, r=red: torch_ce_ext(z, t, 0.3, weight=w, reduction=r), x),
            (f"nll-{red}", lambda z, r=red: xt.nll_loss(z, t_ign, w, reduction=r),
             lambda z, r=red: F.nll_loss(z, t_ign, w, reduction=r), x),
            (f"focal-{red}",
             lambda z, r=red: xt.focal_loss(z, t_ign, gamma=1.5, alpha=w, reduction=r),
             lambda z, r=red: torch_focal_loss(z, t_ign, 1.5, w, reduction=r), x),
            (f"bcel-{red}",
             lambda z, r=red: xt.binary_cross_entropy_with_logits(z, y, w, reduction=r,
                                                                  pos_weight=w),
             lambda z, r=red: F.binary_cross_entropy_with_logits(z, y, w, reduction=r,
                                                                 pos_weight=w), x),
            (f"bce-{red}", lambda z, r=red: xt.binary_cross_entropy(z, y, w, reduction=r),
             lambda z, r=red: F.binary_cross_entropy(z, y, w, reduction=r), p),
            (f"sigmoid-focal-{red}",
             lambda z, r=red: xt.sigmoid_focal_loss(z, (y > 0.5).double(), reduction=r),
             lambda z, r=red: torch_sigmoid_focal_loss(z, (y > 0.5).double(), reduction=r), x),
        ]
    for red in ("batchmean", "mean", "sum", "none"):
        cases.append((f"kl-3d-{red}",
                      lambda z, r=red: xt.kl_div_with_logits(z, teacher, temperature=2.0,
                                                             reduction=r),
                      lambda z, r=red: torch_kl_div_with_logits(z, teacher, 2.0, r),
                      teacher * 0.5 + 0.1))
    cases += [
        ("log_softmax", lambda z: xt.log_softmax(z, 1), lambda z: F.log_softmax(z, 1), x),
        ("log_softmax-dim0", lambda z: xt.log_softmax(z, 0), lambda z: F.log_softmax(z, 0), x),
        ("softmax", lambda z: xt.softmax(z, 1), lambda z: F.softmax(z, 1), x),
        ("logsumexp", lambda z: xt.logsumexp(z, 1), lambda z: torch.logsumexp(z, 1), x),
        ("logsumexp-dims", lambda z: xt.logsumexp(z, (0, 2), keepdim=True),
         lambda z: torch.logsumexp(z, (0, 2), keepdim=True), x3),
    ]
    return cases


CASES = _cases()
IDS = [c[0] for c in CASES]


def _cotangent(out, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=g, dtype=out.dtype)


# --------------------------------------------------------------------------- double backward


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_penalty_matches_torch(case):
    """loss + 10 * |d loss / d x|^2, differentiated again (issue 16, item 1)."""
    _, mine, ref, x0 = case

    def penalised(fn):
        x = x0.clone().requires_grad_()
        out = fn(x)
        go = _cotangent(out)
        (g,) = torch.autograd.grad(out, x, go, create_graph=True)
        (out * go).sum().add(10 * g.pow(2).sum()).backward()
        return x.grad

    close(penalised(mine), penalised(ref))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hvp_matches_torch(case):
    _, mine, ref, x0 = case
    v = torch.randn_like(x0)
    go = _cotangent(ref(x0))

    def scalar(fn):
        return lambda z: (fn(z) * go).sum()

    _, h = torch.autograd.functional.hvp(scalar(mine), x0, v)
    _, h_ref = torch.autograd.functional.hvp(scalar(ref), x0, v)
    assert h.abs().max() > 0 or h_ref.abs().max() == 0  # not a silent zero
    close(h, h_ref)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradgradcheck(case):
    _, mine, _, x0 = case
    x = x0.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(mine, (x,), check_fwd_over_rev=True, fast_mode=True)


def test_hessian_of_cross_entropy_matches_torch():
    x = torch.randn(3, 5, dtype=D)
    t = torch.tensor([1, 4, 0])
    h = torch.autograd.functional.hessian(lambda z: xt.cross_entropy(z, t), x)
    close(h, torch.autograd.functional.hessian(lambda z: F.cross_entropy(z, t), x))
    h = torch.func.hessian(lambda z: xt.cross_entropy(z, t, label_smoothing=0.3))(x)
    close(h, torch.func.hessian(lambda z: F.cross_entropy(z, t, label_smoothing=0.3))(x))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_soft_target_second_order_mixed_terms(reduction):
    """Probability targets that require grad: gradgradcheck over (input, target)."""
    x = torch.randn(4, 3, dtype=D, requires_grad=True)
    q = torch.softmax(torch.randn(4, 3, dtype=D), 1).requires_grad_()
    w = torch.rand(3, dtype=D) + 0.5
    for kw in (dict(weight=w, label_smoothing=0.2), dict(softcap=1.5, z_loss=0.2)):
        def f(a, b, kw=kw):
            return xt.cross_entropy(a, b, reduction=reduction, **kw)
        assert torch.autograd.gradcheck(f, (x, q), check_forward_ad=True)
        assert torch.autograd.gradgradcheck(f, (x, q), check_fwd_over_rev=True)
    y = torch.rand(4, 3, dtype=D, requires_grad=True)
    p = (torch.rand(4, 3, dtype=D) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda a, b: xt.binary_cross_entropy_with_logits(a, b, pos_weight=w, reduction=reduction),
        (x, y), check_fwd_over_rev=True)
    assert torch.autograd.gradgradcheck(
        lambda a, b: xt.binary_cross_entropy(a, b, reduction=reduction), (p, y),
        check_fwd_over_rev=True)


def test_third_order_of_cross_entropy_matches_torch():
    x0 = torch.randn(3, 4, dtype=D)
    t = torch.tensor([0, 2, 3])
    v = torch.randn(3, 4, dtype=D)

    def third(fn):
        x = x0.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(x, t), x, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), x, create_graph=True)
        (k,) = torch.autograd.grad((h * v).sum(), x)
        return k

    close(third(xt.cross_entropy), third(F.cross_entropy))


# --------------------------------------------------------------------------- forward AD


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_ad_tangent_matches_torch(case):
    """make_dual on an input that does not require grad (issue 16, item 2)."""
    _, mine, ref, x0 = case
    tangent = torch.randn_like(x0)
    with fwAD.dual_level():
        out = mine(fwAD.make_dual(x0, tangent))
        out_ref = ref(fwAD.make_dual(x0, tangent))
        t_mine, t_ref = fwAD.unpack_dual(out).tangent, fwAD.unpack_dual(out_ref).tangent
    assert t_mine is not None
    close(fwAD.unpack_dual(out).primal, fwAD.unpack_dual(out_ref).primal)
    close(t_mine, t_ref)


def test_torch_func_jvp_jacfwd_and_forward_over_reverse():
    x = torch.randn(4, 5, dtype=D)
    t = torch.randint(0, 5, (4,))
    v = torch.randn_like(x)

    def mine(z):
        return xt.cross_entropy(z, t, reduction="none", label_smoothing=0.1)

    def ref(z):
        return F.cross_entropy(z, t, reduction="none", label_smoothing=0.1)

    close(torch.func.jvp(mine, (x,), (v,))[1], torch.func.jvp(ref, (x,), (v,))[1])
    close(torch.func.jacfwd(mine)(x), torch.func.jacfwd(ref)(x))
    close(torch.func.jacfwd(torch.func.jacrev(lambda z: mine(z).sum()))(x),
          torch.func.jacfwd(torch.func.jacrev(lambda z: ref(z).sum()))(x))


# --------------------------------------------------------------------------- torch.func


def test_torch_func_grad_and_vjp():
    x = torch.randn(6, 5, dtype=D)
    t = torch.randint(0, 5, (6,))
    close(torch.func.grad(lambda z: xt.cross_entropy(z, t))(x),
          torch.func.grad(lambda z: F.cross_entropy(z, t))(x))
    out, vjp = torch.func.vjp(lambda z: xt.log_softmax(z, 1), x)
    out_ref, vjp_ref = torch.func.vjp(lambda z: F.log_softmax(z, 1), x)
    v = torch.randn_like(out)
    close(out, out_ref)
    close(vjp(v)[0], vjp_ref(v)[0])


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "log_softmax", "logsumexp",
                                  "binary_cross_entropy_with_logits"])
def test_vmap_per_sample_gradients_match_torch(name):
    """vmap(grad(loss)): one kernel call per batch entry, same result as PyTorch."""
    xs = torch.randn(3, 4, 5, dtype=D)
    ts = torch.randint(0, 5, (3, 4))
    ys = torch.rand(3, 4, 5, dtype=D)
    calls = {
        "cross_entropy": lambda m, z, t, y: m.cross_entropy(z, t),
        "nll_loss": lambda m, z, t, y: m.nll_loss(z, t),
        "log_softmax": lambda m, z, t, y: m.log_softmax(z, 1).sum(),
        "logsumexp": lambda m, z, t, y: m.logsumexp(z, 1).pow(2).sum(),
        "binary_cross_entropy_with_logits":
            lambda m, z, t, y: m.binary_cross_entropy_with_logits(z, y),
    }
    ref_mod = type("R", (), {"cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss,
                             "log_softmax": F.log_softmax, "logsumexp": torch.logsumexp,
                             "binary_cross_entropy_with_logits":
                                 F.binary_cross_entropy_with_logits})
    f = calls[name]
    g = torch.func.vmap(torch.func.grad(lambda z, t, y: f(xt, z, t, y)))(xs, ts, ys)
    g_ref = torch.func.vmap(torch.func.grad(lambda z, t, y: f(ref_mod, z, t, y)))(xs, ts, ys)
    close(g, g_ref)
    out = torch.func.vmap(lambda z, t: xt.cross_entropy(z, t, reduction="none"))(xs, ts)
    close(out, torch.func.vmap(lambda z, t: F.cross_entropy(z, t, reduction="none"))(xs, ts))


@pytest.mark.parametrize("name", ["ce", "log_softmax", "softmax", "logsumexp", "bce"])
def test_batched_gradients(name):
    """gradcheck's check_batched_grad: vmap over the backward passes."""
    x = torch.randn(3, 4, dtype=D, requires_grad=True)
    t = torch.tensor([0, 3, 1])
    fns = {"ce": lambda z: xt.cross_entropy(z, t, reduction="none", z_loss=0.1),
           "log_softmax": lambda z: xt.log_softmax(z, 1),
           "softmax": lambda z: xt.softmax(z, 0),
           "logsumexp": lambda z: xt.logsumexp(z, 1),
           "bce": lambda z: xt.binary_cross_entropy(torch.sigmoid(z), torch.rand(3, 4,
                                                    dtype=D, generator=torch.Generator()))}
    assert torch.autograd.gradcheck(fns[name], (x,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fns[name], (x,), check_batched_grad=True)


# --------------------------------------------------------------------------- retain_graph


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_retain_graph_never_hands_out_the_saved_gradient(scale):
    """x.grad is never the saved buffer while the graph is kept (issue 16, item 3)."""
    x = torch.randn(4, 5, dtype=D, requires_grad=True)
    t = torch.randint(0, 5, (4,))
    loss = xt.cross_entropy(x, t) * scale
    expected = torch.autograd.grad(F.cross_entropy(x, t) * scale, x)[0]
    loss.backward(retain_graph=True)
    close(x.grad, expected)
    x.grad.data.zero_()  # must not zero the saved gradient
    loss.backward(retain_graph=True)
    close(x.grad, expected)
    torch.nn.utils.clip_grad_norm_([x], 1e-3)  # in-place on x.grad between backwards
    loss.backward(retain_graph=True)
    loss.backward()  # a fourth, freeing the graph
    close(x.grad, expected * (2 + 1e-3 / (expected.norm() + 1e-6)))  # clip's coefficient


def test_retain_graph_with_reduction_none_and_half_dtype():
    x = torch.randn(4, 5).half().requires_grad_()
    t = torch.randint(0, 5, (4,))
    loss = xt.cross_entropy(x, t, reduction="none")
    go = torch.rand(4).half()
    (g1,) = torch.autograd.grad(loss, x, go, retain_graph=True)
    g1c = g1.clone()
    g1.zero_()
    (g2,) = torch.autograd.grad(loss, x, go)
    assert torch.equal(g2, g1c)


# --------------------------------------------------------------------------- in-place views


def _chunked(loss_fn, lin, h, t, bounds, **kw):
    logits = lin(h)
    return sum(loss_fn(logits[a:b], t[a:b], reduction="sum", **kw) for a, b in bounds)


def test_inplace_backward_on_two_views_of_one_logits_tensor():
    """The chunked-loss pattern: logits[:n], logits[n:] (issue 16, item 4)."""
    lin = torch.nn.Linear(6, 5).double()
    h = torch.randn(8, 6, dtype=D)
    t = torch.randint(0, 5, (8,))
    bounds = [(0, 3), (3, 8)]
    _chunked(xt.cross_entropy, lin, h, t, bounds, inplace_backward=True).backward()
    grads = [p.grad.clone() for p in lin.parameters()]
    lin.zero_grad()
    _chunked(F.cross_entropy, lin, h, t, bounds).backward()
    for g, p in zip(grads, lin.parameters()):
        close(g, p.grad)
    lin.zero_grad()  # and scaled (grad_output != 1), three views
    (2.5 * _chunked(xt.cross_entropy, lin, h, t, [(0, 2), (2, 5), (5, 8)],
                    inplace_backward=True)).backward()
    close(lin.weight.grad, 2.5 * grads[0])


def test_inplace_backward_views_still_detect_foreign_writes():
    lin = torch.nn.Linear(6, 5).double()
    logits = lin(torch.randn(8, 6, dtype=D))
    t = torch.randint(0, 5, (8,))
    l1 = xt.cross_entropy(logits[:3], t[:3], inplace_backward=True)
    l2 = xt.cross_entropy(logits[3:], t[3:], inplace_backward=True)
    with torch.no_grad():
        logits[5:].add_(1.0)  # someone else writes into the storage
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (l1 + l2).backward()


def test_inplace_backward_on_split_views_raises_clearly():
    logits = torch.nn.Linear(6, 5)(torch.randn(8, 6))
    t = torch.randint(0, 5, (8,))
    a, b = logits.split(4)
    xt.cross_entropy(a, t[:4], inplace_backward=True)
    with pytest.raises(RuntimeError, match=r"split, chunk, unbind.*logits\[i:j\]"):
        xt.cross_entropy(b, t[4:], inplace_backward=True)


def test_inplace_backward_with_create_graph_raises():
    logits = torch.nn.Linear(6, 5)(torch.randn(8, 6))
    loss = xt.cross_entropy(logits, torch.randint(0, 5, (8,)), inplace_backward=True)
    with pytest.raises(RuntimeError, match="double backward.*inplace_backward=True"):
        torch.autograd.grad(loss, logits, create_graph=True)


def test_inplace_backward_is_skipped_with_a_differentiable_target_or_tangent():
    h = torch.randn(4, 3, dtype=D, requires_grad=True)
    q = torch.softmax(torch.randn(4, 3, dtype=D), 1).requires_grad_()
    logits = h * 2
    before = logits.detach().clone()
    loss = xt.cross_entropy(logits, q, inplace_backward=True)
    assert torch.equal(logits.detach(), before)
    g = torch.autograd.grad(loss, (h, q))
    ref = torch.autograd.grad(F.cross_entropy(h * 2, q), (h, q))
    close(g[0], ref[0])
    close(g[1], ref[1])
    with fwAD.dual_level():
        x = fwAD.make_dual(torch.randn(4, 3, dtype=D), torch.ones(4, 3, dtype=D))
        out = xt.cross_entropy(x, torch.tensor([0, 1, 2, 0]), inplace_backward=True)
        assert fwAD.unpack_dual(out).tangent is not None


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_focal_losses_second_order_for_every_gamma(gamma):
    """The focal terms' second derivatives have gamma-dependent special cases."""
    x = torch.randn(5, 4, dtype=D)
    t = torch.tensor([0, 3, 1, -100, 2])
    y = (torch.rand(5, 4, dtype=D) > 0.5).double()
    for a in (None, 0.3):
        close(_hvp(lambda z, a=a: xt.focal_loss(z, t, gamma=gamma, alpha=a), x),
              _hvp(lambda z, a=a: torch_focal_loss(z, t, gamma, a), x))
    for a in (0.25, -1.0):
        close(_hvp(lambda z, a=a: xt.sigmoid_focal_loss(z, y, a, gamma, "sum"), x),
              _hvp(lambda z, a=a: torch_sigmoid_focal_loss(z, y, a, gamma, "sum"), x))


def _hvp(fn, x):
    v = torch.linspace(-1, 1, x.numel(), dtype=x.dtype).reshape(x.shape)
    return torch.autograd.functional.hvp(fn, x, v)[1]


@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.1, weight=True), dict(z_loss=1e-3)],
                         ids=["plain", "smooth-weight", "zloss"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_float32_hvp_of_cross_entropy_is_accurate(kw, scale):
    """float32 second derivatives (p recovered from the saved float32 gradient) within
    1e-5 of the float64 ones, relative to the largest entry (API.md's float32 bound)."""
    x = scale * torch.randn(8, 1000)
    t = torch.randint(0, 1000, (8,))
    v = torch.randn(8, 1000)
    kw = dict(kw)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(1000) + 0.5

    def hvp(fn, dtype):
        z = x.to(dtype).requires_grad_()
        kk = {k: (a.to(dtype) if torch.is_tensor(a) else a) for k, a in kw.items()}
        (g,) = torch.autograd.grad(fn(z, t, **kk), z, create_graph=True)
        return torch.autograd.grad((g * v.to(dtype)).sum(), z)[0]

    ref = hvp(lambda z, t, **k: torch_ce_ext(z, t, k.pop("z_loss", 0.0), **k), D)
    got = hvp(xt.cross_entropy, torch.float32).double()
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
