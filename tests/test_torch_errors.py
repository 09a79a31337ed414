"""xent.torch raises what PyTorch raises for the same mistake (class and message layout).

Each case calls the drop-in and PyTorch's function with the same bad arguments:
the exception class must be PyTorch's, and the message must contain PyTorch's
message (xent may append details) unless the case says otherwise.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
import xent.torch as xt  # noqa: E402 (needs torch; a broken adapter fails, never skips)

pytestmark = pytest.mark.torch


def _x(*shape, dtype=torch.float32, rg=True):
    return torch.randn(shape, dtype=dtype).requires_grad_(rg)


def _t(*values):
    return torch.tensor(values)


# (id, name of the function in both libraries, args factory, kwargs, message check)
# message check: True = PyTorch's message is contained in ours; a str = a substring of ours
# (where PyTorch's wording comes from whichever internal op failed, e.g. broadcasting).
CASES = [
    ("ce-batch", "cross_entropy", lambda: (_x(3, 4), _t(0, 1)), {}, True),
    ("ce-ncd-target", "cross_entropy",
     lambda: (_x(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)), {}, True),
    ("ce-ncd-target-ndim", "cross_entropy",
     lambda: (_x(2, 4, 3), torch.zeros(2, dtype=torch.long)), {}, True),
    ("ce-2d-target", "cross_entropy",
     lambda: (_x(2, 4), torch.zeros(2, 1, dtype=torch.long)), {}, True),
    ("ce-0d-target", "cross_entropy", lambda: (_x(2, 4), torch.tensor(1)), {}, True),
    ("ce-1d-input-target", "cross_entropy", lambda: (_x(4), _t(1, 2)), {}, True),
    ("ce-oob", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 4)), {}, True),
    ("ce-neg", "cross_entropy", lambda: (_x(3, 4), _t(0, -1, 2)), {}, True),
    ("ce-oob-ncd", "cross_entropy", lambda: (_x(2, 4, 3), torch.full((2, 3), 9)), {}, True),
    ("ce-oob-1d", "cross_entropy", lambda: (_x(4), torch.tensor(9)), {}, True),
    ("ce-oob-c0", "cross_entropy", lambda: (_x(3, 0), _t(0, 0, 0)), {}, True),
    ("ce-weight-shape", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"weight": torch.ones(3)}, True),
    ("ce-weight-2d", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"weight": torch.ones(1, 4)}, True),
    ("ce-weight-dtype", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"weight": torch.ones(4, dtype=torch.float64)}, True),
    ("ce-weight-rg", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"weight": torch.ones(4, requires_grad=True)}, True),
    ("ce-int-input", "cross_entropy",
     lambda: (torch.ones(3, 4, dtype=torch.long), _t(0, 1, 2)), {}, "not implemented for 'Long'"),
    ("ce-soft-shape", "cross_entropy", lambda: (_x(3, 4), torch.rand(3, 5)), {}, "target"),
    ("ce-soft-ignore", "cross_entropy", lambda: (_x(3, 4), torch.rand(3, 4)),
     {"ignore_index": 1}, True),
    ("ce-bool-target", "cross_entropy",
     lambda: (_x(3, 4), torch.tensor([True, False, True])), {}, "Bool"),
    ("ce-reduction", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"reduction": "avg"}, True),
    ("ce-smoothing", "cross_entropy", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"label_smoothing": 1.5}, True),
    ("ce-0d-input", "cross_entropy", lambda: (_x(), torch.tensor(0)), {}, "0-d"),
    ("nll-batch", "nll_loss", lambda: (_x(3, 4), _t(0, 1)), {}, True),
    ("nll-oob", "nll_loss", lambda: (_x(3, 4), _t(0, 1, 7)), {}, True),
    ("nll-0d", "nll_loss", lambda: (_x(), torch.tensor(0)), {}, True),
    ("nll-float-target", "nll_loss", lambda: (_x(3, 4), torch.zeros(3)), {}, "Float"),
    ("nll-weight-shape", "nll_loss", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"weight": torch.ones(2)}, True),
    ("nll-weight-rg", "nll_loss", lambda: (_x(3, 4), _t(0, 1, 2)),
     {"weight": torch.ones(4, requires_grad=True)}, True),
    ("nll-ncd-target", "nll_loss",
     lambda: (_x(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)), {}, True),
    ("nll-int-input", "nll_loss",
     lambda: (torch.ones(3, 4, dtype=torch.long), _t(0, 1, 2)), {}, "not implemented for 'Long'"),
    ("bce-shape", "binary_cross_entropy", lambda: (torch.rand(3), torch.rand(4)), {}, True),
    ("bce-range-input", "binary_cross_entropy",
     lambda: (torch.tensor([1.5]), torch.tensor([1.0])), {}, True),
    ("bce-range-target", "binary_cross_entropy",
     lambda: (torch.tensor([0.5]), torch.tensor([2.0])), {}, True),
    ("bce-nan", "binary_cross_entropy",
     lambda: (torch.tensor([float("nan")]), torch.tensor([1.0])), {}, True),
    ("bce-weight-broadcast", "binary_cross_entropy",
     lambda: (torch.rand(3, 4), torch.rand(3, 4)), {"weight": torch.rand(3)}, "broadcast"),
    ("bce-weight-bigger", "binary_cross_entropy",
     lambda: (torch.rand(3), torch.rand(3)), {"weight": torch.rand(2, 3)}, True),
    ("bce-dtype", "binary_cross_entropy",
     lambda: (torch.rand(3), torch.rand(3, dtype=torch.float64)), {}, True),
    ("bce-weight-rg", "binary_cross_entropy",
     lambda: (torch.rand(3), torch.rand(3)), {"weight": torch.rand(3, requires_grad=True)}, True),
    ("bce-int", "binary_cross_entropy",
     lambda: (torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long)), {},
     "not implemented for 'Long'"),
    ("bcel-shape", "binary_cross_entropy_with_logits",
     lambda: (_x(3), torch.rand(4)), {}, True),
    ("bcel-int-target", "binary_cross_entropy_with_logits",
     lambda: (_x(3), torch.ones(3, dtype=torch.long)), {}, True),
    ("bcel-pos-weight", "binary_cross_entropy_with_logits",
     lambda: (_x(3, 4), torch.rand(3, 4)), {"pos_weight": torch.rand(3)}, "broadcast"),
    ("bcel-weight", "binary_cross_entropy_with_logits",
     lambda: (_x(3, 4), torch.rand(3, 4)), {"weight": torch.rand(3)}, "broadcast"),
    ("bcel-weight-bigger", "binary_cross_entropy_with_logits",
     lambda: (_x(3), torch.rand(3)), {"weight": torch.rand(2, 3)}, True),
    ("bcel-weight-rg", "binary_cross_entropy_with_logits",
     lambda: (_x(3), torch.rand(3)), {"weight": torch.rand(3, requires_grad=True)}, True),
    ("bcel-pw-rg", "binary_cross_entropy_with_logits",
     lambda: (_x(3), torch.rand(3)), {"pos_weight": torch.rand(3, requires_grad=True)},
     "not differentiable with respect to argument 'pos_weight'"),
    ("bcel-reduction", "binary_cross_entropy_with_logits",
     lambda: (_x(3), torch.rand(3)), {"reduction": "x"}, True),
    ("bcel-int-input", "binary_cross_entropy_with_logits",
     lambda: (torch.ones(3, dtype=torch.long), torch.ones(3)), {}, "not implemented for 'Long'"),
    ("log_softmax-dim", "log_softmax", lambda: (_x(3, 4), 2), {}, True),
    ("log_softmax-int", "log_softmax", lambda: (torch.ones(3, dtype=torch.long), 0), {},
     "not implemented for 'Long'"),
    ("softmax-dim", "softmax", lambda: (_x(3, 4), -3), {}, True),
    ("softmax-int-dtype", "softmax", lambda: (_x(3), 0), {"dtype": torch.long},
     "not implemented for 'Long'"),
    ("logsumexp-dim", "logsumexp", lambda: (_x(3, 4), 3), {}, True),
    ("logsumexp-dup", "logsumexp", lambda: (_x(3, 4), (0, 0)), {}, True),
]

_TORCH = {"logsumexp": torch.logsumexp, "log_softmax": torch.log_softmax,
          "softmax": torch.softmax}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_exception_as_torch(case):
    _, name, make, kwargs, check = case
    args = make()
    ref_fn = _TORCH.get(name) or getattr(F, name)
    with pytest.raises(Exception) as ref:
        ref_fn(*args, **kwargs)
    with pytest.raises(Exception) as mine:
        getattr(xt, name)(*args, **kwargs)
    assert type(mine.value) is type(ref.value), (str(mine.value), str(ref.value))
    if check is True:
        assert str(ref.value).rstrip(".") in str(mine.value), (str(mine.value), str(ref.value))
    else:
        assert check in str(mine.value)


def test_target_out_of_range_leaves_no_partial_result_and_names_it():
    x = _x(4, 3)
    with pytest.raises(IndexError, match=r"Target 7 is out of bounds\..*position 2"):
        xt.cross_entropy(x, _t(0, 1, 7, 0))
    assert x.grad is None


def test_modules_raise_like_torch():
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        xt.CrossEntropyLoss(reduction="avg")(_x(2, 3), _t(0, 1))
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        xt.NLLLoss()(_x(2, 3), _t(0, 3))
    with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
        xt.BCELoss()(torch.tensor([2.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="must be the same as input size"):
        xt.BCEWithLogitsLoss()(_x(2), torch.rand(3))


@pytest.mark.parametrize("device", ["meta"])
def test_tensors_not_on_cpu_raise_not_implemented(device):
    x = torch.empty(4, 3, device=device)
    t = torch.zeros(4, dtype=torch.long)
    for call in (lambda: xt.cross_entropy(x, t), lambda: xt.nll_loss(x, t),
                 lambda: xt.softmax(x, 1), lambda: xt.logsumexp(x, 1),
                 lambda: xt.binary_cross_entropy_with_logits(x, x),
                 lambda: xt.cross_entropy(torch.zeros(4, 3), t.to(device))):
        with pytest.raises(NotImplementedError, match="CPU tensors only.*meta"):
            call()


def test_xent_specific_constants_raise_like_torch():
    x = _x(3, 4)
    with pytest.raises(RuntimeError, match="argument 'teacher_logits'"):
        xt.kl_div_with_logits(x, torch.randn(3, 4, requires_grad=True))
    with pytest.raises(RuntimeError, match="argument 'alpha'"):
        xt.focal_loss(x, _t(0, 1, 2), alpha=torch.rand(4, requires_grad=True))
    with pytest.raises(RuntimeError, match="argument 'targets'"):
        xt.sigmoid_focal_loss(x, torch.rand(3, 4, requires_grad=True))
    with torch.no_grad():  # nothing is differentiated: no error
        xt.kl_div_with_logits(x, torch.randn(3, 4, requires_grad=True))
    with pytest.raises(NotImplementedError, match="pos_weight must broadcast along the last"):
        xt.binary_cross_entropy_with_logits(x, torch.rand(3, 4), pos_weight=torch.rand(3, 1))
