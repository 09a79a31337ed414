"""The NumPy providers of the pytest-benchmark suites compute what xent computes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import xent

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
providers = pytest.importorskip("providers")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_references_match_xent(dtype):
    x = providers.make_logits((37, 53), dtype)
    t = providers.make_targets((37, 53))
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(providers.np_logsumexp(x), xent.logsumexp(x), **tol)
    np.testing.assert_allclose(providers.np_softmax(x), xent.softmax(x), **tol)
    np.testing.assert_allclose(providers.np_softmax(x, log=True), xent.log_softmax(x), **tol)
    np.testing.assert_allclose(providers.np_cross_entropy(x, t), xent.cross_entropy(x, t), **tol)
    loss, grad = providers.np_cross_entropy_and_grad(x, t, np.empty_like(x))
    exp_loss, exp_grad = xent.cross_entropy_and_grad(x, t)
    np.testing.assert_allclose(loss, exp_loss, **tol)
    np.testing.assert_allclose(grad, exp_grad, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_options_reference_matches_xent(dtype):
    rng = np.random.default_rng(5)
    x = providers.make_logits((41, 29), dtype)
    t = providers.make_targets((41, 29))
    t[rng.random(t.shape) < 0.2] = -100
    w = rng.uniform(0.5, 2.0, size=29).astype(dtype)
    loss, grad = providers.np_cross_entropy_and_grad_options(x, t, w, 0.1, -100, np.empty_like(x))
    exp_loss, exp_grad = xent.cross_entropy_and_grad(x, t, weight=w, label_smoothing=0.1)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(loss, exp_loss, **tol)
    np.testing.assert_allclose(grad, exp_grad, **tol)
    assert np.all(grad[t == -100] == 0)
