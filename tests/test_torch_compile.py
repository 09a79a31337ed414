"""xent.torch under torch.compile / torch.export: custom ops, no graph breaks.

``fullgraph=True`` turns any graph break into an error, so these tests fail if
Dynamo cannot trace a call.  The default runs use the ``aot_eager`` backend
(Dynamo + AOTAutograd with the ops' fake implementations and autograd
formulas, no code generation): the compiled step runs exactly the eager
kernels, so gradients must be bitwise equal.  The Inductor runs (C++ code
generation, tens of seconds) are ``slow``: ``XENT_RUN_SLOW=1`` runs them.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
import xent.torch as xt  # noqa: E402 (needs torch; a broken adapter fails, never skips)

pytestmark = [
    pytest.mark.torch,
    # torch.compile's own internals (Inductor, forward-AD decompositions) use torch.jit.script
    pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning"),
]

_SLOW = pytest.mark.slow  # conftest: skipped unless XENT_RUN_SLOW=1
BACKENDS = [pytest.param("aot_eager", id="aot_eager"),
            pytest.param("inductor", id="inductor", marks=_SLOW)]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # no cached graphs between tests
    yield
    torch._dynamo.reset()


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(),
                               torch.nn.Linear(32, 10))


def _train(model, step_fn, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    losses, grads = [], []
    for _ in range(steps):
        x = torch.randn(8, 16, generator=g)
        y = torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        loss = step_fn(model, x, y)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        losses.append(loss.detach())
        opt.step()
    return losses, grads


@pytest.mark.parametrize("backend", BACKENDS)
def test_fullgraph_training_loop_gradients_equal_eager(backend):
    crit = xt.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-3)

    def step(model, x, y):
        return crit(model(x), y)

    eager = _train(_model(), step)
    compiled = _train(_model(), torch.compile(step, fullgraph=True, backend=backend))
    for le, lc in zip(eager[0], compiled[0]):
        torch.testing.assert_close(lc, le, rtol=0 if backend == "aot_eager" else 1e-6, atol=0
                                   if backend == "aot_eager" else 1e-6)
    for ge, gc in zip(eager[1], compiled[1]):
        for a, b in zip(ge, gc):
            if backend == "aot_eager":
                assert torch.equal(a, b)
            else:  # Inductor fuses the model's own ops differently: float32 rounding
                torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # and equal to PyTorch's loss (up to float32 rounding)
    ref = _train(_model(), lambda m, x, y: F.cross_entropy(m(x), y, label_smoothing=0.1))
    assert abs(float(compiled[0][0]) - float(ref[0][0])) < 1e-2  # z-loss adds < 1e-2


def _every_function(x, y, p):
    t = y.argmax(1)
    return (xt.cross_entropy(x, t) + xt.cross_entropy(x, y, label_smoothing=0.2)
            + xt.cross_entropy(x, t, softcap=3.0, reduction="sum")
            + xt.nll_loss(xt.log_softmax(x, 1), t) + xt.focal_loss(x, t)
            + xt.binary_cross_entropy_with_logits(x, y) + xt.binary_cross_entropy(p, y)
            + xt.sigmoid_focal_loss(x, y, reduction="mean") + xt.kl_div_with_logits(x, y)
            + xt.logsumexp(x, 1).sum() + xt.softmax(x, 0).pow(2).sum())


def test_every_function_compiles_without_graph_breaks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g, requires_grad=True)
    y = torch.rand(4, 6, generator=g)
    p = torch.rand(4, 6, generator=g).requires_grad_()
    eager = _every_function(x, y, p)
    ge = torch.autograd.grad(eager, (x, p))
    compiled_fn = torch.compile(_every_function, fullgraph=True, backend="aot_eager")
    compiled = compiled_fn(x, y, p)
    gc = torch.autograd.grad(compiled, (x, p))
    # Traced backward passes use PyTorch's formulas where eager runs a kernel
    # (log_softmax, logsumexp): equal up to float32 rounding.
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    for a, b in zip(ge, gc):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # inference graph: the loss-only ops
        torch.testing.assert_close(compiled_fn(x, y, p), eager.detach(), rtol=1e-6, atol=1e-6)


def test_compiled_graph_calls_the_custom_ops():
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    x = torch.randn(4, 6, requires_grad=True)
    t = torch.randint(0, 6, (4,))
    torch.compile(lambda a, b: xt.cross_entropy(a, b), fullgraph=True, backend=backend)(x, t)
    assert any("xent.cross_entropy_and_grad" in s for s in seen), seen
    with torch.no_grad():
        torch._dynamo.reset()
        seen.clear()
        torch.compile(lambda a, b: xt.cross_entropy(a, b), fullgraph=True,
                      backend=backend)(x, t)
    assert any("xent.cross_entropy.default" in s for s in seen), seen


def test_torch_export_keeps_the_custom_op():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 4)
            self.crit = xt.CrossEntropyLoss()

        def forward(self, x, t):
            return self.crit(self.lin(x), t)

    net = Net()
    x, t = torch.randn(3, 6), torch.tensor([0, 3, 1])
    ep = torch.export.export(net, (x, t))
    assert "xent.cross_entropy" in str(ep.graph)
    torch.testing.assert_close(ep.module()(x, t), net(x, t))


def _opcheck_cases():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, 1, 2, -100])
    q = torch.softmax(torch.randn(5, 4, dtype=torch.float64), 1)
    w = torch.rand(4, dtype=torch.float64)
    y = torch.rand(5, 4, dtype=torch.float64)
    ops = torch.ops.xent
    ce_opts = (-100, "mean", 0.1, 0.0, None, 1)
    return {
        "cross_entropy": (ops.cross_entropy, (x, t, w, *ce_opts)),
        "cross_entropy_and_grad": (ops.cross_entropy_and_grad, (x, t, w, *ce_opts)),
        "cross_entropy_probs": (ops.cross_entropy_and_grad,
                                (x, q, None, -100, "none", 0.0, 0.0, 2.0, None)),
        "nll_loss_and_grad": (ops.nll_loss_and_grad, (x, t, w, -100, "sum", None)),
        "focal_loss_and_grad": (ops.focal_loss_and_grad,
                                (x, t, None, 2.0, 0.25, -100, "none", None)),
        "bce_with_logits_and_grad": (ops.binary_cross_entropy_with_logits_and_grad,
                                     (x, y, None, w, "mean", None)),
        "bce_and_grad": (ops.binary_cross_entropy_and_grad,
                         (torch.sigmoid(x.detach()).requires_grad_(), y, None, "sum", None)),
        "sigmoid_focal_loss_and_grad": (ops.sigmoid_focal_loss_and_grad,
                                        (x, (y > 0.5).double(), 0.25, 2.0, "none", None)),
        "kl_div_with_logits_and_grad": (ops.kl_div_with_logits_and_grad,
                                        (x, y, 2.0, "batchmean", None)),
        "log_softmax": (ops.log_softmax, (x, 0, None)),
        "softmax": (ops.softmax, (x, 1, None)),
        "logsumexp": (ops.logsumexp, (x, None)),
    }


OPCHECK = _opcheck_cases()


@pytest.mark.parametrize("name", list(OPCHECK))
def test_custom_op_registration_passes_opcheck(name):
    """torch.library.opcheck: schema, fake implementation, autograd registration."""
    op, args = OPCHECK[name]
    torch.library.opcheck(op, args)
