"""Shared helpers for the loss-variant tests (focal, BCE, sigmoid focal, KL, ECE, vmath).

Kept out of conftest.py so the files merge without conflicts; each test module
imports it after putting this directory on sys.path.
"""

from __future__ import annotations

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]
SIMD_ORDER = ["scalar", "avx2", "avx512"]
REDUCTIONS = ["none", "mean", "sum"]

# float64: the contract's 1e-12 relative; float32: 1e-5 relative. The absolute part is
# the same factor times the largest magnitude of the expected array (cancellation in a
# sum or a gradient row makes small entries absolutely, not relatively, accurate).
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_close(actual, expected, dtype, *, rtol=None, equal_nan=True):
    """Compare with the contract tolerance of `dtype` (NaNs must match position)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    r = RTOL[np.dtype(dtype)] if rtol is None else rtol
    fin = np.isfinite(expected)
    scale = np.max(np.abs(expected[fin])) if fin.any() else 0.0
    np.testing.assert_allclose(actual, expected, rtol=r, atol=r * scale, equal_nan=equal_nan)


@pytest.fixture(name="simd_path")
def simd_path_fixture(simd):
    """One run per SIMD path: the shared `simd` fixture of tests/conftest.py."""
    return simd


def torch_f64(a, requires_grad=False):
    """A float64 torch tensor of `a` (the reference always computes in float64)."""
    torch = pytest.importorskip("torch")
    t = torch.tensor(np.asarray(a, dtype=np.float64))
    if requires_grad:
        t.requires_grad_(True)
    return t


def torch_reduce(loss_el, reduction):
    if reduction == "none":
        return loss_el
    if reduction == "sum":
        return loss_el.sum()
    return loss_el.mean()


def backward_numpy(loss, x_t, reduction, grad_output=1.0):
    """d(sum(loss * grad_output))/dx via autograd, as a float64 NumPy array."""
    torch = pytest.importorskip("torch")
    if x_t.grad is not None:
        x_t.grad = None
    go = torch.as_tensor(np.asarray(grad_output, dtype=np.float64))
    if reduction == "none":
        (loss * go).sum().backward()
    else:
        (loss * go).backward()
    return x_t.grad.numpy().copy()
