"""The benchmark's ``numpy`` provider and correctness check agree with the oracles and xent."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from benchmarks import numpy_ops, reference
from benchmarks.cases import Case, make_data, make_logits, make_targets
from benchmarks.checks import compare, expected

#: numpy_ops computes in the input dtype (float32: NumPy's float32 exp and sums).
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def _inputs(dtype, ignore=0.0):
    x = make_logits((37, 53), dtype)
    t = make_targets((37, 53), ignore)
    w = np.random.default_rng(5).uniform(0.5, 2.0, size=53).astype(dtype)
    return x, t, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_matches_oracle_and_xent(dtype):
    x, _, _ = _inputs(dtype)
    for name in ("logsumexp", "softmax", "log_softmax"):
        got = getattr(numpy_ops, name)(x)
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, getattr(reference, name)(x), **TOL[dtype], err_msg=name)
        np.testing.assert_allclose(got, getattr(xent, name)(x), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"weight": True, "label_smoothing": 0.1}])
def test_cross_entropy_matches_oracle_and_xent(dtype, options):
    x, t, w = _inputs(dtype, ignore=0.2)
    opts = dict(options, weight=w) if options else {}
    loss, grad = numpy_ops.cross_entropy_and_grad(x, t, **opts)
    want_loss, want_grad = reference.cross_entropy_and_grad(x, t, **opts)
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])
    np.testing.assert_allclose(numpy_ops.cross_entropy(x, t, **opts), want_loss, **TOL[dtype])
    xent_loss, xent_grad = xent.cross_entropy_and_grad(x, t, **opts)
    np.testing.assert_allclose(loss, xent_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, xent_grad, **TOL[dtype])
    x64 = x.astype(np.float64)
    w64 = None if "weight" not in opts else w.astype(np.float64)
    kw = dict(weight=w64, label_smoothing=opts.get("label_smoothing", 0.0))
    loss64, grad64 = numpy_ops.cross_entropy_and_grad(x64, t, **kw)
    want64, want_grad64 = reference.cross_entropy_and_grad(x64, t, **kw)
    np.testing.assert_allclose(loss64, want64, rtol=1e-13)
    np.testing.assert_allclose(grad64, want_grad64, rtol=1e-12, atol=1e-16)
    assert np.all(grad[t == -100] == 0)


@pytest.mark.parametrize("options", ["", "all"])
def test_check_accepts_xent_and_rejects_a_wrong_gradient(options):
    case = Case("fused", (300, 40), "float32", options=options)
    data = make_data(case)
    exp = expected(case, data)
    loss, grad = xent.cross_entropy_and_grad(data.x, data.t, **data.ce_options())
    assert len(exp.rows) == 32
    assert compare(case, {"loss": loss, "grad": grad}, exp) is None
    grad[exp.rows[3], 0] += 1e-3 * np.abs(grad).max()
    assert "grad" in compare(case, {"loss": loss, "grad": grad}, exp)
    assert "missing" in compare(case, {"loss": loss}, exp)
    assert "loss" in compare(case, {"loss": loss * 1.001, "grad": grad}, exp)


def test_check_compares_token_ranks_exactly():
    case = Case("token_scores", (6, 300), "float32")
    data = make_data(case)
    exp = expected(case, data)
    s = xent.token_scores(data.x, data.t, top_k=20)
    out = {k: getattr(s, k) for k in ("logsumexp", "entropy", "logprob", "rank",
                                      "top_logprobs")}
    assert compare(case, out, exp) is None
    out["rank"] = out["rank"] + 1
    assert "rank" in compare(case, out, exp)
