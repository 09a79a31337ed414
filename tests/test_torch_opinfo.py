"""xent.torch against PyTorch's own OpInfo and ModuleInfo sample inputs.

Every sample PyTorch's test suite uses for the ops the adapter covers
(``torch.testing._internal``'s ``op_db`` and ``module_db``) runs through xent's
drop-in and PyTorch's op: values and gradients (with respect to every input
that requires grad, for a random ``grad_output``) must agree at the tolerances
PyTorch's OpInfo tests use by default for the dtype (``torch.testing``'s).
float64 samples also go through ``gradcheck`` (with forward-mode AD) and
``gradgradcheck`` (with forward-over-reverse), in gradcheck's fast mode (random
projections); the full Jacobians, with batched gradients where the OpInfo
declares them, run with ``XENT_RUN_SLOW=1``.  float16/bfloat16: the adapter computes in float32 and
rounds once, so it is checked against PyTorch's float32 result rounded to the
half type (what it claims) and against PyTorch's own half-precision result at
the half type's default tolerance.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # needed by torch.testing._internal
import xent.torch as xt  # noqa: E402 (needs torch; a broken adapter fails, never skips)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db

pytestmark = [
    pytest.mark.torch,
    # PyTorch's forward-mode AD loads its decompositions with torch.jit.script on first use
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]

#: OpInfo name (and variant) -> the xent.torch drop-in
OPS = {
    ("nn.functional.cross_entropy", ""): xt.cross_entropy,
    ("nn.functional.nll_loss", ""): xt.nll_loss,
    ("nn.functional.binary_cross_entropy", ""): xt.binary_cross_entropy,
    ("nn.functional.binary_cross_entropy_with_logits", ""): xt.binary_cross_entropy_with_logits,
    ("log_softmax", ""): xt.log_softmax,
    ("log_softmax", "with_dtype"): xt.log_softmax,
    ("softmax", ""): xt.softmax,
    ("softmax", "with_dtype"): xt.softmax,
    ("logsumexp", ""): xt.logsumexp,
}
MODULES = {
    torch.nn.CrossEntropyLoss: xt.CrossEntropyLoss,
    torch.nn.NLLLoss: xt.NLLLoss,
    torch.nn.BCELoss: xt.BCELoss,
    torch.nn.BCEWithLogitsLoss: xt.BCEWithLogitsLoss,
}
OPINFOS = [op for op in op_db if (op.name, op.variant_test_name) in OPS]
MODINFOS = [m for m in module_db if m.module_cls in MODULES]
HALF = (torch.float16, torch.bfloat16)


def _opid(op) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


def test_every_covered_op_has_an_opinfo():
    assert len(OPINFOS) == len(OPS)
    assert len(MODINFOS) == len(MODULES)


# --------------------------------------------------------------------------- helpers


def _leaves(obj):
    """Tensors in a (nested) argument structure, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _leaves(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _leaves(o)]
    return []


def _fresh(obj):
    """A copy of an argument structure with new leaf tensors (same requires_grad)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().requires_grad_(obj.requires_grad)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fresh(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _fresh(v) for k, v in obj.items()}
    return obj


def _call(fn, sample):
    args = _fresh((sample.input, sample.args, sample.kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated implicit softmax dims, kl 'mean'
        out = fn(args[0], *args[1], **args[2])
    return out, [t for t in _leaves(args) if t.requires_grad]


def _grads(out, inputs, seed: int, go_dtype=None):
    """Gradients for a random grad_output (rounded to `go_dtype` first, if given)."""
    if not inputs or not out.requires_grad:
        return []
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(out.shape, generator=g, dtype=torch.float64).to(go_dtype or out.dtype)
    return list(torch.autograd.grad(out, inputs, go.to(out.dtype), allow_unused=True))


def _assert_close(actual, expected, msg: str, **tol):
    assert actual.dtype == expected.dtype, msg
    assert actual.shape == expected.shape, msg
    torch.testing.assert_close(actual, expected, equal_nan=True, msg=lambda m: f"{msg}: {m}",
                               **tol)


def _compare(fn, ref, sample, dtype, tag: str):
    """Values and gradients of fn against ref on one sample."""
    out, ins = _call(fn, sample)
    ref_out, ref_ins = _call(ref, sample)
    _assert_close(out, ref_out, f"{tag} value")
    for k, (g, r) in enumerate(zip(_grads(out, ins, 0), _grads(ref_out, ref_ins, 0))):
        assert (g is None) == (r is None), f"{tag} grad {k}"
        if g is not None:
            _assert_close(g, r, f"{tag} grad {k}")


def _samples(op, dtype):
    return list(op.sample_inputs("cpu", dtype, requires_grad=True))


# --------------------------------------------------------------------------- OpInfo


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPINFOS, ids=_opid)
def test_opinfo_values_and_grads_match_torch(op, dtype):
    fn = OPS[(op.name, op.variant_test_name)]
    samples = _samples(op, dtype)
    assert samples
    for i, s in enumerate(samples):
        _compare(fn, op, s, dtype, f"{_opid(op)} sample {i} {s.summary()}")


def _half_reference(op, sample, dtype):
    """PyTorch on the sample in float32, rounded to `dtype` (output and grads)."""
    def up(o):
        if isinstance(o, torch.Tensor) and o.dtype == dtype:
            return o.detach().float().requires_grad_(o.requires_grad)
        if isinstance(o, (list, tuple)):
            return type(o)(up(v) for v in o)
        if isinstance(o, dict):
            return {k: up(v) for k, v in o.items()}
        return o

    a32 = up((sample.input, sample.args, sample.kwargs))
    kwargs = dict(a32[2])
    if kwargs.get("dtype") is not None:
        kwargs["dtype"] = torch.float32 if kwargs["dtype"] == dtype else kwargs["dtype"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = op(a32[0], *a32[1], **kwargs)
    ins = [t for t in _leaves(a32) if t.requires_grad]
    return out, ins


@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("op", [o for o in OPINFOS if o.variant_test_name == ""], ids=_opid)
def test_opinfo_half_types_computed_in_float32(op, dtype):
    fn = OPS[(op.name, "")]
    for i, s in enumerate(_samples(op, dtype)):
        tag = f"{_opid(op)} {dtype} sample {i} {s.summary()}"
        out, ins = _call(fn, s)
        assert out.dtype == s.input.dtype or s.kwargs.get("dtype") is not None, tag
        ref32, ins32 = _half_reference(op, s, dtype)
        # what the adapter claims: the float32 result rounded once to the half type
        _assert_close(out, ref32.to(out.dtype), f"{tag} value vs float32",
                      rtol=2 * torch.finfo(dtype).eps, atol=1e-5)
        for g, r in zip(_grads(out, ins, 1), _grads(ref32, ins32, 1, go_dtype=dtype)):
            if g is not None:
                _assert_close(g, r.to(g.dtype), f"{tag} grad vs float32",
                              rtol=2 * torch.finfo(dtype).eps, atol=1e-5)
        # and near PyTorch's own half-precision result, which rounds at every step
        # (its reductions lose a few units in the last place)
        ref, _ = _call(op, s)
        eps = torch.finfo(dtype).eps
        scale = float(ref.detach().abs().max()) if ref.numel() else 1.0
        _assert_close(out, ref, f"{tag} value vs PyTorch's half", rtol=8 * eps,
                      atol=8 * eps * max(scale, 1.0))


# fast_mode: gradcheck's random projections (what PyTorch's OpInfo tests use for most ops);
# the full Jacobians (with batched gradients) are `slow`: XENT_RUN_SLOW=1 runs them.
_SLOW = pytest.mark.slow  # conftest: skipped unless XENT_RUN_SLOW=1
_MODES = [pytest.param(True, id="fast"), pytest.param(False, id="full", marks=_SLOW)]


@pytest.mark.parametrize("fast", _MODES)
@pytest.mark.parametrize("op", OPINFOS, ids=_opid)
def test_opinfo_gradcheck_forward_ad_and_batched(op, fast):
    fn = OPS[(op.name, op.variant_test_name)]
    for i, s in enumerate(_samples(op, torch.float64)):
        _gradcheck(fn, s, f"{_opid(op)} sample {i}", fast, batched=op.check_batched_grad)


@pytest.mark.parametrize("fast", _MODES)
@pytest.mark.parametrize("op", OPINFOS, ids=_opid)
def test_opinfo_gradgradcheck_forward_over_reverse(op, fast):
    fn = OPS[(op.name, op.variant_test_name)]
    for i, s in enumerate(_samples(op, torch.float64)):
        _gradcheck(fn, s, f"{_opid(op)} sample {i}", fast, second=True)


def _gradcheck(fn, sample, tag: str, fast: bool, batched: bool = False,
               second: bool = False) -> None:
    """gradcheck (or gradgradcheck) of fn with respect to the sample's differentiable tensors."""
    args = _fresh((sample.input, sample.args, sample.kwargs))
    diff = [t for t in _leaves(args) if t.requires_grad]
    if not diff:
        return

    def f(*xs):
        it = iter(xs)
        a = _replace(args, lambda t: next(it) if t.requires_grad else t)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(a[0], *a[1], **a[2])

    if second:
        ok = torch.autograd.gradgradcheck(f, diff, check_fwd_over_rev=True, fast_mode=fast)
    else:
        ok = torch.autograd.gradcheck(f, diff, check_forward_ad=True, fast_mode=fast,
                                      check_batched_grad=batched and not fast)
    assert ok, tag


def _replace(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_replace(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _replace(v, fn) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------- ModuleInfo


def _module_inputs(minfo, dtype):
    return list(minfo.module_inputs_func(minfo, device="cpu", dtype=dtype, requires_grad=True,
                                         training=True))


def _modid(m) -> str:
    return m.module_cls.__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("minfo", MODINFOS, ids=_modid)
def test_moduleinfo_values_and_grads_match_torch(minfo, dtype):
    mine_cls = MODULES[minfo.module_cls]
    inputs = _module_inputs(minfo, dtype)
    assert inputs
    for i, mi in enumerate(inputs):
        c = mi.constructor_input
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mine, ref = mine_cls(*c.args, **c.kwargs), minfo.module_cls(*c.args, **c.kwargs)
        assert isinstance(mine, minfo.module_cls)
        assert mine.state_dict().keys() == ref.state_dict().keys()
        fi = mi.forward_input
        sample = _Sample(fi.args[0], fi.args[1:], fi.kwargs)
        _compare(mine, ref, sample, dtype, f"{_modid(minfo)} input {i} {mi.desc}")
        if dtype == torch.float64:
            _gradcheck(mine, sample, f"{_modid(minfo)} input {i} {mi.desc}", fast=True)


class _Sample:
    def __init__(self, input, args, kwargs):
        self.input, self.args, self.kwargs = input, tuple(args), dict(kwargs)
