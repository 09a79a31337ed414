"""expected_calibration_error against an independent float64 NumPy computation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES

import xent
from benchmarks import reference

IGN = -100


def ref_ece(logits, target, n_bins):
    return reference.expected_calibration_error(logits, target, n_bins=n_bins)


def logits_away_from_edges(rng, n, c, n_bins, dtype, scale=2.0):
    """Random logits whose confidences are not within 1e-4 of a bin edge (a float32 softmax
    may legitimately put such a row in the neighbouring bin)."""
    edges = np.linspace(0, 1, n_bins + 1)[1:-1]  # interior edges (conf is in (0, 1])
    x = (rng.standard_normal((n, c)) * scale).astype(dtype)
    for _ in range(100):
        xd = x.astype(np.float64)
        p = np.exp(xd - xd.max(1, keepdims=True))
        conf = (p / p.sum(1, keepdims=True)).max(1)
        near = (np.abs(conf[:, None] - edges[None]) < 1e-4).any(1)
        if not near.any():
            return x
        x[near] = (rng.standard_normal((near.sum(), c)) * scale).astype(dtype)
    raise AssertionError("could not draw logits away from the bin edges")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_bins", [1, 2, 10, 15, 100])
def test_matches_reference(dtype, n_bins):
    rng = np.random.default_rng(n_bins)
    x = logits_away_from_edges(rng, 500, 10, n_bins, dtype)
    t = rng.integers(0, 10, 500)
    t[rng.choice(500, 40, replace=False)] = IGN
    got = xent.expected_calibration_error(x, t, n_bins=n_bins)
    assert type(got) is np.float64
    np.testing.assert_allclose(got, ref_ece(x, t, n_bins), rtol=1e-12 if dtype == np.float64
                               else 1e-5, atol=1e-7 if dtype == np.float32 else 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 7, 9, 17, 33, 300])
def test_simd_paths(simd, dtype, c):
    rng = np.random.default_rng(c)
    x = logits_away_from_edges(rng, 64, c, 15, dtype)
    t = rng.integers(0, c, 64)
    np.testing.assert_allclose(xent.expected_calibration_error(x, t), ref_ece(x, t, 15),
                               rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-7)


def test_ties_edges_and_leading_axes():
    # tie for the top class: the lower index is the prediction
    x = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    conf = np.exp(1.0) / (2 * np.exp(1.0) + 1), np.exp(2.0) / (2 * np.exp(2.0) + 1)
    got = xent.expected_calibration_error(x, [0, 2], n_bins=1)
    np.testing.assert_allclose(got, abs(0.5 - np.mean(conf)), rtol=1e-14)
    assert got == ref_ece(x, np.array([0, 2]), 1)
    # confidence exactly on an edge (0.5) goes to the lower bin (lo, hi]
    x = np.array([[0.0, 0.0]])
    assert xent.expected_calibration_error(x, [0], n_bins=2) == 0.5
    assert xent.expected_calibration_error(x, [0], n_bins=4) == 0.5
    # confidence 1 (one class) is in the top bin; leading axes are flattened
    rng = np.random.default_rng(1)
    x3 = rng.standard_normal((3, 4, 5))
    t3 = rng.integers(0, 5, (3, 4))
    np.testing.assert_allclose(xent.expected_calibration_error(x3, t3, n_bins=7),
                               ref_ece(x3, t3, 7), rtol=1e-12)
    assert xent.expected_calibration_error(np.zeros((4, 1)), np.zeros(4, int)) == 0.0


def test_nan_cases_and_threads():
    assert np.isnan(xent.expected_calibration_error(np.empty((0, 3)), np.empty(0, int)))
    assert np.isnan(xent.expected_calibration_error(np.ones((2, 3)), [IGN, IGN]))
    x = np.array([[0.0, 1.0], [np.nan, 0.0], [np.inf, 0.0]])
    assert np.isnan(xent.expected_calibration_error(x, [1, 0, 0]))
    # a NaN row that is ignored does not matter
    assert np.isfinite(xent.expected_calibration_error(x, [1, IGN, IGN]))
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        x = rng.standard_normal((2000, 50)).astype(dtype)
        t = rng.integers(0, 50, 2000)
        a = xent.expected_calibration_error(x, t, num_threads=1)
        b = xent.expected_calibration_error(x, t, num_threads=2)
        assert a == b


def test_errors():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="n_bins"):
        xent.expected_calibration_error(x, [0, 1, 2], n_bins=0)
    with pytest.raises(TypeError, match="n_bins"):
        xent.expected_calibration_error(x, [0, 1, 2], n_bins=2.5)
    with pytest.raises(TypeError, match="floating"):
        xent.expected_calibration_error(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="int64"):
        xent.expected_calibration_error(np.zeros((3, 4), np.int64), [0, 1, 2])
    with pytest.raises(ValueError, match="shape"):
        xent.expected_calibration_error(x, [0, 1])
    with pytest.raises(ValueError, match="C == 0"):
        xent.expected_calibration_error(np.zeros((3, 0)), [0, 1, 2])
    with pytest.raises(IndexError, match=r"target 7 at flat position 1 .* 4 classes"):
        xent.expected_calibration_error(x, [0, 7, 2])
