"""xent.torch: the PyTorch adapter, against PyTorch's own losses."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    assert_close,
    torch_ce_ext,
    torch_focal_loss,
    torch_kl_div_with_logits,
    torch_sigmoid_focal_loss,
)

import xent

torch = pytest.importorskip("torch")
F = torch.nn.functional
import xent.torch as xt  # noqa: E402 (needs torch; a broken adapter fails, never skips)

pytestmark = pytest.mark.torch

def grads(loss, x, go):
    (g,) = torch.autograd.grad(loss, x, go)
    return g


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# (input shape, target shape): PyTorch's layouts, classes on dim 1 (dim 0 for 1-D)
LAYOUTS = {
    "NC": ((13, 7), (13,)),
    "N1": ((1, 1), (1,)),
    "N0": ((0, 4), (0,)),
    "NCd": ((3, 5, 4), (3, 4)),
    "NCdd": ((2, 6, 3, 2), (2, 3, 2)),
    "C": ((9,), ()),
}

CE_OPTIONS = [
    dict(),
    dict(weight=True),
    dict(ignore_index=2),
    dict(label_smoothing=0.3),
    dict(weight=True, ignore_index=0, label_smoothing=0.1),
]


def _ce_args(opts, c, dtype):
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(c, dtype=dtype) + 0.5
    return kw


# --------------------------------------------------------------------------- import


def test_import_xent_does_not_import_torch():
    code = "import xent, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_xent_torch_imports_torch():
    code = "import sys, xent.torch; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_xent_torch_without_torch_says_how_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import xent.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert "xent[torch]" in out


# --------------------------------------------------------------------------- cross_entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_ce_matches_torch(dtype, layout, reduction, opts):
    shape, tshape = LAYOUTS[layout]
    c = shape[1] if len(shape) > 1 else shape[0]
    x = (3 * torch.randn(shape, dtype=dtype)).requires_grad_()
    t = torch.randint(0, c, tshape)
    if "ignore_index" in opts and t.numel() > 1:
        t.view(-1)[::3] = opts["ignore_index"]
    kw = _ce_args(opts, c, dtype)
    loss = xt.cross_entropy(x, t, reduction=reduction, **kw)
    ref = F.cross_entropy(x, t, reduction=reduction, **kw)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["NC", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [dict(), dict(weight=True, label_smoothing=0.2)],
                         ids=["plain", "weight-smooth"])
def test_ce_probability_targets_match_torch(dtype, layout, reduction, opts):
    shape, _ = LAYOUTS[layout]
    cdim = 1 if len(shape) > 1 else 0
    c = shape[cdim]
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    q = torch.softmax(torch.randn(shape, dtype=dtype), cdim)
    kw = _ce_args(opts, c, dtype)
    loss = xt.cross_entropy(x, q, reduction=reduction, **kw)
    ref = F.cross_entropy(x, q, reduction=reduction, **kw)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("layout", ["NC", "NCd", "C"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_half_dtypes_compute_in_float32(dtype, layout, reduction):
    shape, tshape = LAYOUTS[layout]
    c = shape[1] if len(shape) > 1 else shape[0]
    x = torch.randn(shape).to(dtype).requires_grad_()
    t = torch.randint(0, c, tshape)
    x32 = x.detach().float().requires_grad_()
    loss = xt.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1)
    ref32 = F.cross_entropy(x32, t, reduction=reduction, label_smoothing=0.1)
    assert loss.dtype == dtype
    # Reference: the exact float32 result rounded once to the half type.
    assert_close(loss, ref32.to(dtype))
    go = torch.randn_like(ref32) * 1000  # loss scaling: applied before the final rounding
    g = grads(loss, x, go.to(dtype))
    assert g.dtype == dtype
    assert_close(g, grads(ref32, x32, go.to(dtype).float()).to(dtype))
    # and close to PyTorch's own half-precision loss
    ref = F.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1)
    assert_close(loss, ref)


@pytest.mark.parametrize("layout", ["NC", "NCd", "C"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_z_loss_and_softcap_extensions(layout, reduction):
    shape, tshape = LAYOUTS[layout]
    cdim = 1 if len(shape) > 1 else 0
    c = shape[cdim]
    x = (5 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
    t = torch.randint(0, c, tshape)
    if t.numel() > 1:
        t.view(-1)[0] = -100
    z, cap = 1e-2, 3.0
    loss = xt.CrossEntropyLoss(reduction=reduction, z_loss=z, softcap=cap)(x, t)
    ref = torch_ce_ext(x, t, z, cap, reduction=reduction)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))


@pytest.mark.parametrize("tdtype", [torch.uint8, torch.int8, torch.int16, torch.int32,
                                    torch.int64])
def test_ce_any_integer_target_dtype(tdtype):
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 4, 2, 1, 3, 4])
    loss = xt.cross_entropy(x, t.to(tdtype))
    ref = F.cross_entropy(x, t)
    assert_close(loss, ref)
    assert_close(grads(loss, x, torch.tensor(1.0, dtype=torch.float64)),
                 grads(ref, x, torch.tensor(1.0, dtype=torch.float64)))


def test_ce_non_contiguous_input():
    base = torch.randn(7, 11, dtype=torch.float64)
    x = base.t().requires_grad_()  # (11, 7), non-contiguous
    t = torch.randint(0, 7, (11,))
    loss = xt.cross_entropy(x, t, reduction="sum")
    ref = F.cross_entropy(x, t, reduction="sum")
    assert_close(loss, ref)
    go = torch.tensor(2.0, dtype=torch.float64)
    assert_close(grads(loss, x, go), grads(ref, x, go))


def test_ce_all_ignored_mean_is_nan_like_torch():
    x = torch.randn(3, 4, requires_grad=True)
    t = torch.full((3,), -100)
    loss = xt.cross_entropy(x, t)
    assert torch.isnan(loss) and torch.isnan(F.cross_entropy(x, t))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_gradcheck(layout, reduction):
    shape, tshape = LAYOUTS[layout]
    c = shape[1] if len(shape) > 1 else shape[0]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, c, tshape)
    w = torch.rand(c, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda z: xt.cross_entropy(z, t, weight=w, reduction=reduction, label_smoothing=0.1),
        (x,))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_ce_gradcheck_probability_targets(reduction):
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(3, 4, 2, dtype=torch.float64), 1)
    assert torch.autograd.gradcheck(
        lambda z: xt.cross_entropy(z, q, reduction=reduction, label_smoothing=0.2), (x,))


def test_ce_retain_graph_backward_twice():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (5,))
    loss = xt.cross_entropy(x, t, reduction="none")
    ref = F.cross_entropy(x, t, reduction="none")
    for k in (2.0, 3.0, 1.0):
        go = torch.full((5,), k, dtype=torch.float64)
        (g,) = torch.autograd.grad(loss, x, go, retain_graph=True)
        (r,) = torch.autograd.grad(ref, x, go, retain_graph=True)
        assert_close(g, r)


def test_gh16_ce_double_backward_matches_torch():
    """Second-order terms are implemented (test_torch_autograd.py checks every loss)."""
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2])
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    out = []
    for fn in (xt.cross_entropy, F.cross_entropy):
        (g,) = torch.autograd.grad(fn(x, t) * w, x, create_graph=True)
        out.append(torch.autograd.grad(g.pow(2).sum(), (x, w)))
    assert_close(out[0][0], out[1][0])
    assert_close(out[0][1], out[1][1])


# --------------------------------------------------------------------------- CrossEntropyLoss


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(reduction="sum", ignore_index=1),
    dict(reduction="none", label_smoothing=0.25),
    dict(weight=True, label_smoothing=0.05),
])
def test_ce_module_matches_torch(kwargs):
    kw = _ce_args(kwargs, 6, torch.float32)
    mine, ref_mod = xt.CrossEntropyLoss(**kw), torch.nn.CrossEntropyLoss(**kw)
    assert isinstance(mine, torch.nn.CrossEntropyLoss)
    assert mine.state_dict().keys() == ref_mod.state_dict().keys()
    x = torch.randn(10, 6, 3, requires_grad=True)
    t = torch.randint(0, 6, (10, 3))
    loss, ref = mine(x, t), ref_mod(x, t)
    assert_close(loss, ref)
    go = torch.rand_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))


@pytest.mark.parametrize("size_average", [None, True, False])
@pytest.mark.parametrize("reduce", [None, True, False])
def test_ce_module_legacy_reduction_args(size_average, reduce):
    if size_average is None and reduce is None:
        mine = xt.CrossEntropyLoss(reduction="sum")
        ref_mod = torch.nn.CrossEntropyLoss(reduction="sum")
    else:
        with pytest.warns(UserWarning):
            mine = xt.CrossEntropyLoss(size_average=size_average, reduce=reduce)
        with pytest.warns(UserWarning):
            ref_mod = torch.nn.CrossEntropyLoss(size_average=size_average, reduce=reduce)
    assert mine.reduction == ref_mod.reduction
    x = torch.randn(4, 3)
    t = torch.tensor([0, 1, 2, 1])
    assert_close(mine(x, t), ref_mod(x, t))


def test_ce_functional_legacy_reduction_args():
    x = torch.randn(4, 3)
    t = torch.tensor([0, 1, 2, 1])
    with pytest.warns(UserWarning):
        loss = xt.cross_entropy(x, t, size_average=False)
    with pytest.warns(UserWarning):
        ref = F.cross_entropy(x, t, size_average=False)
    assert_close(loss, ref)


def test_ce_module_weight_buffer_moves_with_to():
    w = torch.rand(4) + 0.5
    crit = xt.CrossEntropyLoss(weight=w).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randint(0, 4, (5,))
    assert crit.weight.dtype == torch.float64
    assert_close(crit(x, t), F.cross_entropy(x, t, weight=w.double()))


# --------------------------------------------------------------------------- memory, no-grad


class _Spy:
    """Wraps a xent function, records its calls, optionally forbids them."""

    def __init__(self, fn, forbid=False):
        self.fn, self.forbid, self.calls, self.results = fn, forbid, [], []

    def __call__(self, *args, **kwargs):
        if self.forbid:
            raise AssertionError(f"{self.fn.__name__} must not be called")
        self.calls.append((args, kwargs))
        self.results.append(self.fn(*args, **kwargs))
        return self.results[-1]

    def grad_ptr(self) -> int:
        """Address of the gradient array the (single) fused call wrote."""
        (result,) = self.results
        return result[1].__array_interface__["data"][0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(16, 33), (33,)])
def test_ce_zero_copy_for_contiguous_input(monkeypatch, dtype, shape):
    spy = _Spy(xent.cross_entropy_and_grad)
    monkeypatch.setattr(xent, "cross_entropy_and_grad", spy)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    t = torch.randint(0, shape[-1], shape[:-1])
    seen = []
    x.register_hook(lambda g: seen.append(g.data_ptr()))
    xt.cross_entropy(x, t).backward()
    (args, kwargs), = spy.calls
    assert np.shares_memory(args[0], x.detach().numpy())  # logits not copied
    assert np.shares_memory(args[1], t.numpy())  # int64 targets not copied
    # the buffer the kernel wrote is the very gradient autograd received (no copy, and
    # grad_output == 1 means no scaling pass)
    assert seen == [spy.grad_ptr()]
    assert "out" not in kwargs  # xent allocates it: the NumPy API's lean path


def test_ce_backward_scales_in_place(monkeypatch):
    spy = _Spy(xent.cross_entropy_and_grad)
    monkeypatch.setattr(xent, "cross_entropy_and_grad", spy)
    x = torch.randn(8, 5, requires_grad=True)
    t = torch.randint(0, 5, (8,))
    seen = []
    x.register_hook(lambda g: seen.append(g.data_ptr()))
    (xt.cross_entropy(x, t) * 3.0).backward()
    assert seen == [spy.grad_ptr()]
    assert_close(x.grad, grads(F.cross_entropy(x, t) * 3.0, x, torch.tensor(1.0)))


@pytest.mark.parametrize("mode", ["requires_grad_false", "no_grad", "inference_mode"])
def test_ce_no_grad_path_skips_gradient_work(monkeypatch, mode):
    monkeypatch.setattr(xent, "cross_entropy_and_grad",
                        _Spy(xent.cross_entropy_and_grad, forbid=True))
    x = torch.randn(6, 4, requires_grad=(mode != "requires_grad_false"))
    t = torch.randint(0, 4, (6,))
    ref = F.cross_entropy(x.detach(), t)
    if mode == "no_grad":
        with torch.no_grad():
            loss = xt.cross_entropy(x, t)
    elif mode == "inference_mode":
        with torch.inference_mode():
            loss = xt.cross_entropy(x, t)
    else:
        loss = xt.cross_entropy(x, t)
    assert not loss.requires_grad
    assert_close(loss, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n,c", [(13, 7), (1, 1), (1, 32000), (0, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mode", ["constant", "no_grad"])
def test_ce_serving_call_matches_torch(dtype, n, c, reduction, mode):
    # (N, C) logits, int64 targets, default options, no autograd: the lean path
    x = (3 * torch.randn(n, c, dtype=dtype)).requires_grad_(mode == "no_grad")
    t = torch.randint(0, max(c, 1), (n,))
    if n > 2:
        t[::3] = -100
    with torch.no_grad():
        loss = xt.cross_entropy(x, t, reduction=reduction)
        ref = F.cross_entropy(x, t, reduction=reduction)
    assert loss.dtype == ref.dtype and loss.shape == ref.shape and not loss.requires_grad
    assert_close(loss, ref)


@pytest.mark.parametrize("bad", [7, -1, -101])
def test_ce_serving_call_raises_torch_index_error(bad):
    x, t = torch.randn(4, 7), torch.tensor([0, 1, bad, 2])
    with pytest.raises(IndexError) as ours:
        xt.cross_entropy(x, t)
    with pytest.raises(IndexError) as theirs:
        F.cross_entropy(x, t)
    assert str(ours.value).startswith(str(theirs.value))  # ours adds the position
    assert "flat position 2" in str(ours.value)
    with pytest.raises(ValueError, match="batch_size"):
        xt.cross_entropy(x, t[:3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(1, 32000), (13, 7), (3,), (2, 3, 5), (2, 0), (0, 3)])
@pytest.mark.parametrize("last", [-1, "positive"])
def test_softmax_family_serving_calls_match_torch(dtype, shape, last):
    x = 4 * torch.randn(shape, dtype=dtype)
    dim = -1 if last == -1 else len(shape) - 1
    for ours, theirs in [(xt.log_softmax, torch.log_softmax), (xt.softmax, torch.softmax),
                         (xt.logsumexp, torch.logsumexp)]:
        y, ref = ours(x, dim), theirs(x, dim)
        assert y.dtype == ref.dtype and y.shape == ref.shape and not y.requires_grad
        assert_close(y, ref)
        if y.numel():
            assert y.data_ptr() != x.data_ptr()
    neg = torch._neg_view(-x)  # the negative bit set: not a plain NumPy view
    assert_close(xt.log_softmax(neg, dim), torch.log_softmax(x, dim))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_serving_call_matches_torch(dtype, reduction):
    logp = torch.log_softmax(torch.randn(10, 6, dtype=dtype), 1)
    t = torch.randint(0, 6, (10,))
    t[::4] = -100
    loss, ref = xt.nll_loss(logp, t, reduction=reduction), F.nll_loss(logp, t, reduction=reduction)
    assert loss.dtype == ref.dtype and loss.shape == ref.shape
    assert_close(loss, ref)
    t[1] = 6
    with pytest.raises(IndexError, match="Target 6 is out of bounds"):
        xt.nll_loss(logp, t)


def test_negative_bit_tensors_are_read_as_their_values():
    # torch._neg_view tensors cannot be viewed by NumPy as they are: each path resolves them
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 7, (5,))
    for ours, theirs in [(xt.log_softmax, torch.log_softmax), (xt.softmax, torch.softmax),
                         (xt.logsumexp, torch.logsumexp)]:
        y, ref = ours(x, 1), theirs(x, 1)
        go = torch._neg_view(-torch.randn_like(ref))
        assert_close(grads(y, x, go), grads(ref, x, go.resolve_neg()))
        with torch.no_grad():
            assert_close(ours(torch._neg_view(-x), 1), theirs(x, 1))  # the values of x
    assert_close(xt.cross_entropy(torch._neg_view(-x), t), F.cross_entropy(x, t))


def test_ce_grad_path_uses_one_fused_call(monkeypatch):
    monkeypatch.setattr(xent, "cross_entropy", _Spy(xent.cross_entropy, forbid=True))
    spy = _Spy(xent.cross_entropy_and_grad)
    monkeypatch.setattr(xent, "cross_entropy_and_grad", spy)
    x = torch.randn(6, 4, requires_grad=True)
    xt.cross_entropy(x, torch.randint(0, 4, (6,))).backward()
    assert len(spy.calls) == 1


def test_ce_default_mode_leaves_logits_intact_and_reusable():
    lin = torch.nn.Linear(5, 4).double()
    inp = torch.randn(7, 5, dtype=torch.float64)
    t = torch.randint(0, 4, (7,))

    def run(loss_fn):
        lin.zero_grad()
        logits = lin(inp)
        before = logits.detach().clone()
        loss = loss_fn(logits, t)
        after_loss = logits.detach().clone()
        total = loss + (logits**2).mean()  # another node saved the logits
        total.backward()
        return before, after_loss, logits.detach().clone(), lin.weight.grad.clone()

    b, a, end, gw = run(xt.cross_entropy)
    rb, _, _, rgw = run(F.cross_entropy)
    assert torch.equal(a, b) and torch.equal(end, b)
    assert_close(gw, rgw)


# --------------------------------------------------------------------------- inplace_backward


def test_inplace_backward_writes_gradient_into_logits():
    lin = torch.nn.Linear(6, 5).double()
    inp = torch.randn(9, 6, dtype=torch.float64)
    t = torch.randint(0, 5, (9,))
    logits = lin(inp)
    ptr = logits.data_ptr()
    seen = []
    logits.register_hook(lambda g: seen.append(g.data_ptr()))
    loss = xt.cross_entropy(logits, t, inplace_backward=True, reduction="sum")
    (loss * 0.5).backward()
    assert seen == [ptr]  # the gradient lives in the logits' storage
    # documented: the logits now hold the gradient (their values are destroyed)
    ref_logits = lin(inp)
    ref_grad = grads(F.cross_entropy(ref_logits, t, reduction="sum") * 0.5, ref_logits,
                     torch.tensor(1.0, dtype=torch.float64))
    assert_close(logits.detach(), ref_grad)
    gw = lin.weight.grad.clone()
    lin.zero_grad()
    (F.cross_entropy(lin(inp), t, reduction="sum") * 0.5).backward()
    assert_close(gw, lin.weight.grad)


def test_inplace_backward_error_leaves_logits_untouched():
    h = torch.randn(4, 3, requires_grad=True)
    logits = h * 2.0
    before = logits.detach().clone()
    with pytest.raises(IndexError, match="7"):
        xt.cross_entropy(logits, torch.tensor([0, 1, 7, 0]), inplace_backward=True)
    assert torch.equal(logits.detach(), before) and logits._version == 0


def test_inplace_backward_refuses_leaf_parameter():
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        xt.cross_entropy(x, torch.tensor([0, 1, 2, 0]), inplace_backward=True)
    with pytest.raises(ValueError, match="view of a leaf"):
        xt.cross_entropy(x[1:], torch.tensor([1, 2, 0]), inplace_backward=True)
    assert x.grad is None


@pytest.mark.parametrize("producer", [torch.tanh, torch.sigmoid, torch.exp,
                                      lambda z: torch.log_softmax(z, 1)],
                         ids=["tanh", "sigmoid", "exp", "log_softmax"])
def test_inplace_backward_refuses_output_saved_by_producer(producer):
    h = torch.randn(4, 3, requires_grad=True)
    logits = producer(h)  # these backward nodes save their result
    with pytest.raises(ValueError, match="saved"):
        xt.cross_entropy(logits, torch.tensor([0, 1, 2, 0]), inplace_backward=True)


def test_inplace_backward_other_node_saved_logits_raises_at_backward():
    h = torch.randn(4, 3, requires_grad=True)
    logits = h * 2.0
    other = (logits**2).sum()  # PowBackward saves the logits
    loss = xt.cross_entropy(logits, torch.tensor([0, 1, 2, 0]), inplace_backward=True)
    with pytest.raises(RuntimeError, match="inplace operation"):
        (loss + other).backward()


def test_backward_without_keep_graph_query_scales_out_of_place(monkeypatch):
    """A PyTorch without the retain_graph query: scale out of place (still correct)."""
    monkeypatch.setattr(xt._engine, "_KEEP_GRAPH_QUERY", None)
    spy = _Spy(xent.cross_entropy_and_grad)
    monkeypatch.setattr(xent, "cross_entropy_and_grad", spy)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (5,))
    seen = []
    x.register_hook(lambda g: seen.append(g.data_ptr()))
    (xt.cross_entropy(x, t) * 3.0).backward()
    assert seen != [spy.grad_ptr()]
    assert_close(x.grad, grads(F.cross_entropy(x, t) * 3.0, x,
                               torch.tensor(1.0, dtype=torch.float64)))


def test_inplace_backward_logits_modified_before_backward_raises():
    h = torch.randn(4, 3, requires_grad=True)
    logits = h * 2.0
    loss = xt.cross_entropy(logits, torch.tensor([0, 1, 2, 0]), inplace_backward=True)
    with torch.no_grad():
        logits.add_(1.0)
    with pytest.raises(RuntimeError, match="inplace operation"):
        loss.backward()


@pytest.mark.parametrize("case", ["f16", "NCd", "noncontig", "no_grad"])
def test_inplace_backward_falls_back_without_touching_logits(case):
    """Where a copy is needed anyway (or no gradient), the logits are left untouched."""
    h0 = torch.randn(4, 3, 2, dtype=torch.float64)

    def make(h):
        if case == "f16":
            return (h[..., 0] * 2).half()
        if case == "NCd":
            return h * 2
        return (h * 2)[..., 0]

    t = torch.tensor([0, 1, 2, 0]) if case != "NCd" else torch.tensor([[0, 1]] * 4)
    h = h0.clone().requires_grad_(case != "no_grad")
    logits = make(h)
    before = logits.detach().clone()
    loss = xt.cross_entropy(logits, t, inplace_backward=True)
    assert loss.requires_grad == (case != "no_grad")
    if loss.requires_grad:
        (loss * 2).backward()
        hr = h0.clone().requires_grad_()
        (F.cross_entropy(make(hr).float(), t) * 2).backward()
        torch.testing.assert_close(h.grad, hr.grad, rtol=2e-3 if case == "f16" else 1e-5,
                                   atol=1e-6)
    assert torch.equal(logits.detach(), before)


# --------------------------------------------------------------------------- errors


def test_non_cpu_device_raises():
    """As an operator without a kernel for the device: NotImplementedError."""
    x = torch.empty(4, 3, device="meta")
    with pytest.raises(NotImplementedError, match="CPU tensors only.*meta"):
        xt.cross_entropy(x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(NotImplementedError, match="CPU tensors only.*target"):
        xt.cross_entropy(torch.randn(4, 3), torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(NotImplementedError, match="CPU tensors only"):
        xt.CrossEntropyLoss()(x, torch.zeros(4, dtype=torch.long))


def test_cuda_like_device_raises(monkeypatch):
    """A tensor reporting a CUDA device is refused before any data access."""
    x = torch.randn(4, 3)

    class FakeCuda(torch.Tensor):
        @property
        def device(self):
            return torch.device("cuda", 0)

    fake = x.as_subclass(FakeCuda)
    with pytest.raises(NotImplementedError, match="cuda"):
        xt.cross_entropy(fake, torch.zeros(4, dtype=torch.long))


# PyTorch's exception classes (tests/test_torch_errors.py compares every case with PyTorch)
@pytest.mark.parametrize("bad, exc, match", [
    (lambda: xt.cross_entropy(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3).long()),
     NotImplementedError, "not implemented for 'Long'"),
    (lambda: xt.cross_entropy(torch.tensor(1.0), torch.tensor(0)), RuntimeError, "0-d"),
    (lambda: xt.cross_entropy(torch.randn(3, 2), torch.tensor([0, 1, 5])), IndexError, "5"),
    (lambda: xt.cross_entropy(torch.randn(3, 2), torch.tensor([0, 1])), ValueError,
     "batch_size"),
    (lambda: xt.cross_entropy(torch.randn(3, 2), torch.tensor([0, 1, 1]), reduction="avg"),
     ValueError, "reduction"),
    (lambda: xt.cross_entropy(torch.randn(3, 2), [0, 1, 1]), TypeError, "torch.Tensor"),
    (lambda: xt.cross_entropy(torch.randn(3, 2, requires_grad=True), torch.tensor([0, 1, 1]),
                              weight=torch.rand(2, requires_grad=True)), RuntimeError,
     "not differentiable with respect to argument 'weight'"),
])
def test_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        bad()


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def one_torch_thread():
    # tiny matrices: threads only add contention on a shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(loss_mod, dtype, steps=200):
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(128, 20, generator=g, dtype=dtype)
    y = torch.randint(0, 50, (128,), generator=g)
    torch.manual_seed(99)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Tanh(),
                                torch.nn.Linear(32, 50)).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    curve = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_mod(model(x), y)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return np.array(curve)


@pytest.mark.parametrize("kwargs", [dict(), dict(label_smoothing=0.1)])
def test_training_follows_torch_loss_curve(kwargs, one_torch_thread):
    ours = _train(xt.CrossEntropyLoss(num_threads=1, **kwargs), torch.float64)
    ref = _train(torch.nn.CrossEntropyLoss(**kwargs), torch.float64)
    assert ref[-1] < 0.5 * ref[0]  # the model actually learns
    # float64: per-step differences are ~1e-16 relative; SGD on this smooth problem does
    # not amplify them beyond a few orders of magnitude in 200 steps.
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0)
    ours32 = _train(xt.CrossEntropyLoss(num_threads=1, **kwargs), torch.float32)
    ref32 = _train(torch.nn.CrossEntropyLoss(**kwargs), torch.float32)
    # float32: the two libraries round differently (~1e-7 relative per step) and that noise
    # feeds back through the weights, growing slowly: measured <= 3e-7 relative over these
    # 200 steps. 2e-5 leaves a 60x margin and still catches any systematic difference
    # (a wrong gradient changes the curve at the 1e-2 level within a few steps).
    np.testing.assert_allclose(ours32, ref32, rtol=2e-5, atol=0)


# --------------------------------------------------------------------------- variants
# References: helpers' torch formulas of API.md.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["NC", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [dict(gamma=0.0), dict(gamma=2.0, alpha=0.25),
                                  dict(gamma=1.0, alpha="vec", ignore_index=1)],
                         ids=["g0", "g2-a", "g1-avec-ign"])
def test_focal_matches_reference(dtype, layout, reduction, opts):
    shape, tshape = LAYOUTS[layout]
    c = shape[1] if len(shape) > 1 else shape[0]
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    t = torch.randint(0, c, tshape)
    kw = dict(opts)
    if kw.get("alpha") == "vec":
        kw["alpha"] = torch.rand(c, dtype=dtype)
    loss = xt.focal_loss(x, t, reduction=reduction, **kw)
    ref = torch_focal_loss(x, t, reduction=reduction, **kw)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))
    mod = xt.FocalLoss(reduction=reduction, **kw)
    assert_close(mod(x, t), ref)


def test_focal_gamma0_equals_cross_entropy_and_gradcheck():
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (3, 2))
    assert_close(xt.focal_loss(x, t, gamma=0.0), F.cross_entropy(x, t))
    assert torch.autograd.gradcheck(lambda z: xt.focal_loss(z, t, reduction="none"), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_focal_half_dtypes(dtype):
    x = torch.randn(6, 5).to(dtype).requires_grad_()
    t = torch.randint(0, 5, (6,))
    x32 = x.detach().float().requires_grad_()
    loss, ref = xt.focal_loss(x, t), torch_focal_loss(x32, t)
    assert_close(loss, ref.to(dtype))
    assert_close(grads(loss, x, torch.tensor(1.0, dtype=dtype)),
                 grads(ref, x32, torch.tensor(1.0)).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(7,), (5, 4), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", ["plain", "weight", "pos_weight"])
def test_bce_matches_torch(dtype, shape, reduction, opts):
    x = (3 * torch.randn(shape, dtype=dtype)).requires_grad_()
    y = torch.rand(shape, dtype=dtype)
    kw = {}
    if opts == "weight":
        kw["weight"] = torch.rand(shape[-1], dtype=dtype)
    elif opts == "pos_weight":
        kw["pos_weight"] = torch.rand(shape[-1], dtype=dtype) + 0.5
    loss = xt.binary_cross_entropy_with_logits(x, y, reduction=reduction, **kw)
    ref = F.binary_cross_entropy_with_logits(x, y, reduction=reduction, **kw)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))


def test_bce_gradcheck_and_half():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 3, dtype=torch.float64)
    pw = torch.rand(3, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda z: xt.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="none"),
        (x,))
    for dtype in (torch.float16, torch.bfloat16):
        xh = x.detach().to(dtype).requires_grad_()
        loss = xt.binary_cross_entropy_with_logits(xh, y.to(dtype))
        ref = F.binary_cross_entropy_with_logits(xh.detach().float(), y.to(dtype).float())
        assert loss.dtype == dtype
        assert_close(loss, ref.to(dtype))
        loss.backward()
        assert xh.grad.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_sigmoid_focal_matches_torchvision_formula(dtype, reduction, alpha):
    x = torch.randn(6, 5, dtype=dtype, requires_grad=True)
    y = (torch.rand(6, 5) > 0.5).to(dtype)
    loss = xt.sigmoid_focal_loss(x, y, alpha=alpha, reduction=reduction)
    ref = torch_sigmoid_focal_loss(x, y, alpha=alpha, reduction=reduction)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go), grads(ref, x, go))


def test_sigmoid_focal_gradcheck():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(3, 4) > 0.5).double()
    assert torch.autograd.gradcheck(lambda z: xt.sigmoid_focal_loss(z, y), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4), (6,)])
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
def test_kl_div_matches_reference(dtype, shape, reduction):
    s = torch.randn(shape, dtype=dtype, requires_grad=True)
    t = torch.randn(shape, dtype=dtype)
    loss = xt.kl_div_with_logits(s, t, temperature=2.0, reduction=reduction)
    ref = torch_kl_div_with_logits(s, t, temperature=2.0, reduction=reduction)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, s, go), grads(ref, s, go))


def test_kl_div_gradcheck_and_teacher_constant():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda z: xt.kl_div_with_logits(z, t, temperature=1.5, reduction="none"), (s,))
    with pytest.raises(RuntimeError, match="argument 'teacher_logits'"):
        xt.kl_div_with_logits(s, t.clone().requires_grad_())
    with torch.no_grad():  # no grad mode: nothing is differentiated, no error
        xt.kl_div_with_logits(s, t.clone().requires_grad_())


# --------------------------------------------------------------------------- adapter plumbing
# The variants' adapters against a stand-in backend that implements the API.md signatures
# (classes last, C-contiguous float32/float64 input, grad with grad_output=1 into out=) with
# the PyTorch references above. This checks layouts, dtype handling, grad scaling and the
# no-grad path of every adapter independently of the kernels (which the tests above check
# once they are merged).


def _standin(ref, nargs_lead):
    """Make (NAME, NAME_and_grad) for a reference taking (x_lastaxis, second, **kw)."""

    def check(x):
        assert isinstance(x, np.ndarray) and x.flags.c_contiguous
        assert x.dtype in (np.float32, np.float64)

    def run(x, second, need_grad, kwargs):
        check(x)
        kwargs.pop("num_threads", None)
        xx = torch.from_numpy(x).double().requires_grad_(need_grad)
        sec = torch.as_tensor(np.asarray(second))
        if sec.dtype.is_floating_point:
            sec = sec.double()
        kw = {k: (torch.as_tensor(v).double() if isinstance(v, np.ndarray) else v)
              for k, v in kwargs.items()}
        with torch.enable_grad():  # called from inside autograd.Function.forward
            loss = ref(xx, sec, **kw)
            g = torch.autograd.grad(loss.sum(), xx)[0] if need_grad else None
        val = loss.detach().numpy().astype(x.dtype)
        return (val if val.ndim else x.dtype.type(val)), g

    def fn(x, second, **kwargs):
        return run(x, second, False, kwargs)[0]

    def fn_and_grad(x, second, *, out=None, **kwargs):
        loss, g = run(x, second, True, kwargs)
        if out is None:
            out = np.empty_like(x)
        out[...] = g.numpy()
        return loss, out

    return fn, fn_and_grad


def _focal_last(x, t, **kw):
    # stand-in layout: classes last -> the reference's classes-on-dim-1
    c = x.shape[-1]
    out = torch_focal_loss(x.reshape(-1, c), t.reshape(-1), **kw)
    return out.reshape(t.shape) if kw.get("reduction") == "none" else out


STANDINS = {
    "focal_loss": _focal_last,
    "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "sigmoid_focal_loss": torch_sigmoid_focal_loss,
    "kl_div_with_logits": torch_kl_div_with_logits,
}


@pytest.fixture
def standin(monkeypatch):
    spies = {}
    for name, ref in STANDINS.items():
        fn, fn_and_grad = _standin(ref, 1)
        spies[name] = _Spy(fn)
        spies[name + "_and_grad"] = _Spy(fn_and_grad)
        monkeypatch.setattr(xent, name, spies[name], raising=False)
        monkeypatch.setattr(xent, name + "_and_grad", spies[name + "_and_grad"], raising=False)
    return spies


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16,
                                   torch.bfloat16], ids=["f32", "f64", "f16", "bf16"])
@pytest.mark.parametrize("layout", ["NC", "NCd", "C"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_plumbing_focal(standin, dtype, layout, reduction):
    shape, tshape = LAYOUTS[layout]
    c = shape[1] if len(shape) > 1 else shape[0]
    x = torch.randn(shape).to(dtype).requires_grad_()
    t = torch.randint(0, c, tshape)
    alpha = torch.rand(c)
    x64 = x.detach().double().requires_grad_()
    loss = xt.FocalLoss(gamma=1.5, alpha=alpha, reduction=reduction)(x, t)
    ref = torch_focal_loss(x64, t, gamma=1.5, alpha=alpha.double(), reduction=reduction)
    assert_close(loss, ref.to(dtype))
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go.to(dtype)), grads(ref, x64, go).to(dtype))
    assert len(standin["focal_loss_and_grad"].calls) == 1
    with torch.no_grad():
        xt.focal_loss(x, t)
    assert len(standin["focal_loss"].calls) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16],
                         ids=["f32", "f64", "bf16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_plumbing_binary(standin, dtype, reduction):
    x = torch.randn(2, 3, 4).to(dtype).requires_grad_()
    y = (torch.rand(2, 3, 4) > 0.5).to(dtype)
    pw = torch.rand(4) + 0.5
    x64 = x.detach().double().requires_grad_()
    loss = xt.binary_cross_entropy_with_logits(x, y, pos_weight=pw.to(dtype),
                                               reduction=reduction)
    ref = F.binary_cross_entropy_with_logits(x64, y.double(), pos_weight=pw.to(dtype).double(),
                                             reduction=reduction)
    assert_close(loss, ref.to(dtype))
    go = torch.randn_like(ref)
    assert_close(grads(loss, x, go.to(dtype)), grads(ref, x64, go).to(dtype))
    loss = xt.sigmoid_focal_loss(x, y, alpha=0.3, gamma=1.0, reduction=reduction)
    ref = torch_sigmoid_focal_loss(x64, y.double(), alpha=0.3, gamma=1.0, reduction=reduction)
    assert_close(loss, ref.to(dtype))
    assert_close(grads(loss, x, go.to(dtype)), grads(ref, x64, go).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["batchmean", "none"])
def test_plumbing_kl(standin, dtype, shape, reduction):
    s = torch.randn(shape, dtype=dtype, requires_grad=True)
    t = torch.randn(shape, dtype=dtype)
    loss = xt.kl_div_with_logits(s, t, temperature=2.0, reduction=reduction)
    ref = torch_kl_div_with_logits(s, t, temperature=2.0, reduction=reduction)
    assert_close(loss, ref)
    go = torch.randn_like(ref)
    assert_close(grads(loss, s, go), grads(ref, s, go))
    (args, _), = standin["kl_div_with_logits_and_grad"].calls
    assert np.shares_memory(args[0], s.detach().numpy())  # student not copied


def test_plumbing_inplace_elementwise(standin):
    h = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    logits = h * 1.0
    y = torch.rand(4, 5, dtype=torch.float64)
    ptr = logits.data_ptr()
    seen = []
    logits.register_hook(lambda g: seen.append(g.data_ptr()))
    xt.binary_cross_entropy_with_logits(logits, y, inplace_backward=True).backward()
    assert seen == [ptr]
    ref_h = h.detach().clone().requires_grad_()
    F.binary_cross_entropy_with_logits(ref_h * 1.0, y).backward()
    assert_close(h.grad, ref_h.grad)


def test_lab_torch_adapter_script_runs(capsys):
    """benchmarks/lab/torch_adapter.py (before/after and custom-op overhead) stays runnable."""
    from benchmarks.lab import torch_adapter  # the checkout root is on pytest's pythonpath

    n = torch.get_num_threads()
    try:
        small = ["--shapes", "2x50", "--threads", "1", "--rounds", "1", "--repeat", "1"]
        torch_adapter.main([*small, "--overhead"])
        torch_adapter.main([*small, "--paired"])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert "torch.ops.xent (op)" in out and "cpu median" in out
