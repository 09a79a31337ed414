"""Accuracy of the vector log / log1p (xent_math.h) on every SIMD path, vs np.longdouble."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variants_support import DTYPES, simd_path_fixture  # noqa: E402, F401 - simd_path

from xent._kernels import _core  # noqa: E402

LOG, LOG1P = "log", "log1p"


def vm(x, fn):
    out = np.empty_like(x)
    _core.vmath(fn, x, out)
    return out


def ulp_error(got, x, ref_fn, dtype):
    with np.errstate(all="ignore"):
        ref = ref_fn(x.astype(np.longdouble))
    fin = np.isfinite(ref)
    spacing = np.spacing(np.abs(ref[fin]).astype(dtype)).astype(np.longdouble)
    return float(np.max(np.abs(got[fin].astype(np.longdouble) - ref[fin]) / spacing))


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs 80-bit long double")
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_accuracy(simd_path, dtype):
    fi = np.finfo(dtype)
    with np.errstate(over="ignore"):
        x = np.geomspace(fi.smallest_subnormal, fi.max, 200_003).astype(dtype)
    x = np.concatenate([x, 1 + np.linspace(-0.3, 0.45, 20_001).astype(dtype)])
    assert ulp_error(vm(x, LOG), x, np.log, dtype) <= 2.0


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs 80-bit long double")
@pytest.mark.parametrize("dtype", DTYPES)
def test_log1p_accuracy(simd_path, dtype):
    fi = np.finfo(dtype)
    with np.errstate(over="ignore"):
        pos = np.geomspace(fi.smallest_subnormal, fi.max, 100_003).astype(dtype)
    neg = -np.geomspace(fi.smallest_subnormal, 1.0, 100_003).astype(dtype)
    x = np.concatenate([pos, neg, np.linspace(-1, 1, 20_001).astype(dtype)])
    assert ulp_error(vm(x, LOG1P), x, np.log1p, dtype) <= 3.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(simd_path, dtype):
    fi = np.finfo(dtype)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1.0, fi.smallest_subnormal,
                  fi.tiny, fi.max], dtype)
    with np.errstate(all="ignore"):
        want = np.log(x.astype(np.longdouble)).astype(dtype)
    got = vm(x, LOG)
    np.testing.assert_array_equal(got[:7], want[:7])  # -inf, -inf, inf, nan, nan, nan, 0
    np.testing.assert_allclose(got[7:], want[7:], rtol=2 * fi.eps)
    y = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -2.0, fi.smallest_subnormal,
                  -fi.smallest_subnormal, fi.max], dtype)
    with np.errstate(all="ignore"):
        want = np.log1p(y.astype(np.longdouble)).astype(dtype)
    got = vm(y, LOG1P)
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[1])  # log1p(-0) = -0
    # every tail length of the masked loads
    for n in range(1, 40):
        z = np.linspace(0.1, 5, n).astype(dtype)
        np.testing.assert_allclose(vm(z, LOG), np.log(z), rtol=2 * fi.eps)
