"""The benchmark's NumPy references and correctness check agree with xent and the oracles."""

from __future__ import annotations

import numpy as np
import pytest
import reference as oracle  # tests/reference.py: the long-double oracles

import xent
from benchmarks import reference
from benchmarks.cases import Case, make_data, make_logits, make_targets
from benchmarks.checks import compare, expected

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def _inputs(dtype, ignore=0.0):
    x = make_logits((37, 53), dtype)
    t = make_targets((37, 53), ignore)
    w = np.random.default_rng(5).uniform(0.5, 2.0, size=53).astype(dtype)
    return x, t, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_matches_xent(dtype):
    x, _, _ = _inputs(dtype)
    for name in ("logsumexp", "softmax", "log_softmax"):
        np.testing.assert_allclose(getattr(reference, name)(x), getattr(xent, name)(x),
                                   **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"weight": True, "label_smoothing": 0.1}])
def test_cross_entropy_matches_xent_and_oracle(dtype, options):
    x, t, w = _inputs(dtype, ignore=0.2)
    opts = dict(options, weight=w) if options else {}
    loss, grad = reference.cross_entropy_and_grad(x, t, **opts)
    want_loss, want_grad = xent.cross_entropy_and_grad(x, t, **opts)
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])
    np.testing.assert_allclose(reference.cross_entropy(x, t, **opts), want_loss, **TOL[dtype])
    x64 = x.astype(np.float64)
    w64 = None if "weight" not in opts else w.astype(np.float64)
    kw = dict(weight=w64, label_smoothing=opts.get("label_smoothing", 0.0))
    loss64, grad64 = reference.cross_entropy_and_grad(x64, t, **kw)
    np.testing.assert_allclose(loss64, oracle.ref_cross_entropy(x64, t, **kw), rtol=1e-13)
    np.testing.assert_allclose(grad64, oracle.ref_cross_entropy_grad(x64, t, **kw),
                               rtol=1e-12, atol=1e-16)
    assert np.all(grad[t == -100] == 0)


def test_token_scores_matches_xent():
    x, t, _ = _inputs(np.float64)
    got = reference.token_scores(x, t, top_k=5)
    want = xent.token_scores(x, t, top_k=5)
    for key in ("logsumexp", "entropy", "logprob", "top_logprobs"):
        np.testing.assert_allclose(got[key], getattr(want, key), rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(got["rank"], want.rank)


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
