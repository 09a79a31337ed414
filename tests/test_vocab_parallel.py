"""xent.torch.vocab_parallel_cross_entropy: 2 and 3 gloo ranks against single-process xent.

The multi-process tests start three ranks, and two, as subprocesses (tests/_vocab_parallel_child.py,
gloo on 127.0.0.1, a free port), which run over a vocabulary of 507 split unevenly in
three, then in two on a subgroup of ranks 0 and 1 (the `group` argument); each runs the
cross-entropy option cases (every pair of options in all on/off states; every
combination with XENT_RUN_SLOW=1), and each rank's loss and slice of the gradient is
compared with xent.cross_entropy / cross_entropy_grad on the full logits.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with the gloo backend is not available",
                allow_module_level=True)

import _vocab_parallel_child as child  # noqa: E402

import xent  # noqa: E402
import xent.torch  # noqa: E402

pytestmark = pytest.mark.torch
_CHILD = os.path.join(os.path.dirname(__file__), "_vocab_parallel_child.py")
# float32: the loss is combined in float64 from float32 partials (the local log-sum-exp
# rounded once), the gradient is exp(z - L) with L rounded to float32; both stay within
# a few float32 ulps of xent's single-process kernel.  float64: a few ulps of 1e-16.
_TOL = {"float32": 1e-6, "float64": 1e-12}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(tmp_path, full: bool, world: int = 3) -> list[dict]:
    """Start `world` ranks (three also test 2 ranks, as a subgroup); their results."""
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__),
                                           os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, _CHILD, str(r), str(port), str(tmp_path),
                               "full" if full else "pairs", str(world)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(world)]
    logs = [p.communicate(timeout=300)[0].decode() for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(world)]


@pytest.fixture(scope="module", params=[False, pytest.param(True, marks=pytest.mark.slow)],
                ids=["pairs", "full"])
def ranks(request, tmp_path_factory):
    """(full, results): one launch of the ranks per case list."""
    return request.param, _run_ranks(tmp_path_factory.mktemp("ranks"), request.param)


def _reference(opts):
    x, t, w, sw, go = child.data(opts["dtype"], opts["ignore_index"])
    o = child.options(opts, w, sw)
    red = o["reduction"]
    loss = xent.cross_entropy(x, t, **o)
    grad = xent.cross_entropy_grad(x, t, go.astype(x.dtype) if red == "none" else 1.0, **o)
    return loss, grad


def _close(actual, desired, dtype):
    desired = np.asarray(desired, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(desired[np.isfinite(desired)]), initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), desired,
                               rtol=_TOL[dtype], atol=_TOL[dtype] * scale)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_match_single_process(world, ranks):
    full, results = ranks
    _check_world(world, full, results)


def test_two_processes_match_single_process(tmp_path):
    # a world of two processes on the default group (the test above: two of three ranks)
    _check_world(2, False, _run_ranks(tmp_path, False, world=2))


def _check_world(world, full, results):
    slices = child.bounds(world)
    assert slices[-1][1] == child.V and len({hi - lo for lo, hi in slices}) == world
    for name, opts in child.cases(full):
        loss, grad = _reference(opts)
        key = f"w{world}/{name}"
        for r, (lo, hi) in enumerate(slices):
            # the same bits on every rank
            np.testing.assert_array_equal(results[r][key + "/loss"], results[0][key + "/loss"])
            _close(results[r][key + "/loss"], loss, opts["dtype"])
            _close(results[r][key + "/grad"], grad[:, lo:hi], opts["dtype"])
    x, t, *_ = child.data("float32")
    loss, grad = xent.cross_entropy_and_grad(x, t, label_smoothing=0.2)
    for r, (lo, hi) in enumerate(slices):
        pre = f"w{world}/"
        _close(results[r][pre + "lead/loss"], loss, "float32")
        _close(results[r][pre + "lead/grad"], grad[:, lo:hi], "float32")
        assert results[r][pre + "error/range"] == "IndexError"
        assert results[r][pre + "error/gap"] == "ValueError"
        assert results[r][pre + "error/weight"] == "ValueError"


# ---------------------------------------------------------------- one process (no group)


def _single(x, t, **o):
    xt = torch.tensor(x, requires_grad=True)
    loss = xent.torch.vocab_parallel_cross_entropy(xt, torch.as_tensor(t), vocab_start=0, **o)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("eps,z,cap", list(itertools.product([0.0, 0.3], [0.0, 0.01],
                                                              [None, 5.0])))
def test_single_process_equals_cross_entropy(dtype, eps, z, cap, rng):
    x = (rng.standard_normal((2, 5, 33)) * 4).astype(dtype)
    t = rng.integers(0, 33, (2, 5))
    t[0, 1] = -100
    w = rng.uniform(0.1, 3.0, 33)
    for red in ("mean", "sum", "none"):
        o = dict(weight=w, reduction=red, label_smoothing=eps, z_loss=z, softcap=cap)
        loss, grad = _single(x, t, **o)
        ref = xent.cross_entropy(x, t, **o)
        ref_g = xent.cross_entropy_grad(x, t, np.ones(t.shape, dtype) if red == "none" else 1.0,
                                        **o)
        _close(loss, ref, dtype.name)
        _close(grad, ref_g, dtype.name)
        assert loss.dtype == dtype and grad.dtype == dtype


def test_matches_torch_and_gradcheck(rng):
    x = torch.tensor(rng.standard_normal((6, 11)), requires_grad=True)
    t = torch.tensor([0, 3, -100, 10, 4, 4])
    w = torch.tensor(rng.uniform(0.5, 2.0, 11))
    o = dict(weight=w, label_smoothing=0.2)
    got = xent.torch.vocab_parallel_cross_entropy(x, t, vocab_start=0, **o)
    ref = torch.nn.functional.cross_entropy(x, t, **o)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda a: xent.torch.vocab_parallel_cross_entropy(a, t, vocab_start=0, z_loss=0.1,
                                                          softcap=3.0, **o), (x,))


def test_special_rows():
    x = torch.tensor([[0.0, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [1.0, np.nan, 0.0],
                      [np.inf, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1, -100, 0, 1])
    loss = xent.torch.vocab_parallel_cross_entropy(x, t, vocab_start=0, reduction="none")
    ref = xent.cross_entropy(x.detach().numpy(), t.numpy(), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-15)
    loss.sum().backward()
    assert torch.all(x.grad[1] == 0)  # ignored: exactly zero
    assert torch.all(torch.isnan(x.grad[2]))


def test_half_inputs_and_no_grad():
    x = torch.randn(3, 7, dtype=torch.bfloat16, requires_grad=True)
    t = torch.tensor([1, 2, 6])
    loss = xent.torch.vocab_parallel_cross_entropy(x, t, vocab_start=0)
    assert loss.dtype == torch.bfloat16
    loss.backward()
    assert x.grad.dtype == torch.bfloat16
    with torch.no_grad():
        assert not xent.torch.vocab_parallel_cross_entropy(x, t, vocab_start=0).requires_grad


def test_inplace_modification_before_backward_raises():
    x = torch.randn(3, 5, requires_grad=True)
    y = x * 1.0
    loss = xent.torch.vocab_parallel_cross_entropy(y, torch.tensor([0, 1, 4]), vocab_start=0)
    y.add_(1.0)  # the backward would read the new values: PyTorch's error instead
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(target=torch.zeros(3)), TypeError, "integer class indices"),
    (dict(target=torch.zeros(2, dtype=torch.int64)), ValueError, "expected local_logits"),
    (dict(vocab_start=1.0), TypeError, "vocab_start must be an int"),
    (dict(vocab_start=-1), ValueError, "vocab_start must be >= 0"),
    (dict(vocab_start=1), ValueError, "do not tile"),
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(softcap=0.0), ValueError, "softcap"),
    (dict(weight=torch.ones(4)), ValueError, r"expected \(V,\) = \(5,\)"),
    (dict(weight=torch.ones(5, requires_grad=True)), RuntimeError, "weight"),
    (dict(sample_weight=torch.ones(4)), ValueError, "sample_weight has shape"),
    (dict(target=torch.tensor([0, 5, 1])), IndexError, "target 5 at flat position 1"),
    (dict(logits=torch.zeros(3, 5, dtype=torch.int64)), TypeError, "real floating point"),
    (dict(logits=torch.zeros(())), ValueError, "class"),
])
def test_errors(kwargs, exc, match):
    args = dict(logits=torch.zeros(3, 5), target=torch.tensor([0, 1, 4]), vocab_start=0)
    args.update(kwargs)
    x, t = args.pop("logits"), args.pop("target")
    with pytest.raises(exc, match=match):
        xent.torch.vocab_parallel_cross_entropy(x, t, **args)
