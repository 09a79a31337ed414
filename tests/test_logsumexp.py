"""xent.logsumexp against the long double reference and PyTorch (API.md "Primitives")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import assert_close, make_logits, shape_grid, special_rows
from reference import ref_logsumexp

import xent

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    from numpy import AxisError


@pytest.mark.parametrize("shape", shape_grid(), ids=lambda s: f"{s[0]}x{s[1]}")
def test_shape_grid(simd, dtype, rng, shape):
    x = make_logits(rng, shape, dtype)
    got = xent.logsumexp(x)
    assert got.dtype == dtype and got.shape == shape[:1]
    assert_close(got, ref_logsumexp(x), dtype)
    kd = xent.logsumexp(x, keepdims=True)
    assert kd.shape == (shape[0], 1)
    assert np.array_equal(kd[:, 0], got)


@pytest.mark.parametrize("c", [1, 2, 7, 16, 17, 33, 1025])
def test_nonfinite_rows_match_torch(simd, dtype, c):
    torch = pytest.importorskip("torch")
    x = special_rows(c, dtype)
    got = xent.logsumexp(x)
    expected = torch.logsumexp(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    assert_close(got, expected, dtype)
    assert_close(got, ref_logsumexp(x), dtype)


def test_nonfinite_semantics_spelled_out(dtype):
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, np.inf], [np.inf, -np.inf]],
                 dtype=dtype)
    got = xent.logsumexp(x)
    assert got[0] == -np.inf
    assert got[1] == np.inf
    assert np.isnan(got[2])
    assert got[3] == np.inf


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_large_magnitudes(simd, dtype, rng, magnitude):
    x = (rng.uniform(-1, 1, (5, 1000)) * 1e4).astype(dtype)
    x[0, :] = magnitude
    x[1, :] = magnitude + np.arange(1000, dtype=dtype) * 1e-3 * abs(magnitude)
    assert_close(xent.logsumexp(x), ref_logsumexp(x), dtype)


def test_huge_vocabulary(simd, dtype, rng):
    x = make_logits(rng, (3, 262_144), dtype, scale=3.0)
    x[1, 1000:] = -np.inf
    x[2] *= 1e3
    assert_close(xent.logsumexp(x), ref_logsumexp(x), dtype)


def test_leading_axes(dtype, rng):
    x = make_logits(rng, (2, 5, 37), dtype)
    got = xent.logsumexp(x)
    assert got.shape == (2, 5)
    assert_close(got, ref_logsumexp(x), dtype)
    assert xent.logsumexp(x, keepdims=True).shape == (2, 5, 1)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_any_axis(dtype, rng, axis, keepdims):
    x = make_logits(rng, (4, 9, 17), dtype)
    got = xent.logsumexp(x, axis=axis, keepdims=keepdims)
    expected = ref_logsumexp(x, axis=axis, keepdims=keepdims)
    assert got.shape == np.sum(x, axis=axis, keepdims=keepdims).shape
    assert_close(got, expected, dtype)


def test_axis_errors():
    x = np.zeros((2, 3))
    with pytest.raises(AxisError):
        xent.logsumexp(x, axis=2)
    with pytest.raises(AxisError):
        xent.logsumexp(x, axis=-3)
    with pytest.raises(TypeError, match="axis"):
        xent.logsumexp(x, axis=1.0)


def test_array_like_and_0d(dtype):
    assert_close(xent.logsumexp([1.0, 2.0, 3.0]), ref_logsumexp(np.array([1.0, 2.0, 3.0])))
    x = np.array(2.5, dtype=dtype)
    got = xent.logsumexp(x)
    assert got.shape == () and got.dtype == dtype
    assert got == x
    assert xent.logsumexp(x, keepdims=True).shape == ()


def test_empty_axis_is_minus_inf(dtype):
    got = xent.logsumexp(np.zeros((3, 0), dtype=dtype))
    assert got.shape == (3,) and got.dtype == dtype
    assert np.all(got == -np.inf)
    got = xent.logsumexp(np.zeros(0, dtype=dtype))
    assert got.shape == () and got == -np.inf
    assert xent.logsumexp(np.zeros((0, 4), dtype=dtype)).shape == (0,)
    got = xent.logsumexp(np.zeros((2, 0, 3), dtype=dtype), axis=1)
    assert got.shape == (2, 3) and np.all(got == -np.inf)


def test_noncontiguous_and_fortran_inputs(dtype, rng):
    base = make_logits(rng, (20, 66), dtype)
    for x in (base[::2, ::3], base.T, np.asfortranarray(base), base[:, 1:]):
        keep = x.copy()
        assert_close(xent.logsumexp(x), ref_logsumexp(keep), dtype)
        assert np.array_equal(x, keep)


def test_readonly_input_not_modified(dtype, rng):
    x = make_logits(rng, (7, 19), dtype)
    x.flags.writeable = False
    copy = x.copy()
    got = xent.logsumexp(x)
    assert np.array_equal(x, copy)
    assert_close(got, ref_logsumexp(copy), dtype)


@pytest.mark.parametrize(
    "src, result", [(np.float16, np.float32), (np.longdouble, np.float64)]
)
def test_other_float_dtypes(rng, src, result):
    x = make_logits(rng, (5, 33), np.float64).astype(src)
    got = xent.logsumexp(x)
    assert got.dtype == result
    assert_close(got, ref_logsumexp(x.astype(result)), result)


@pytest.mark.parametrize(
    "x",
    [np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=bool), np.ones(3, dtype=np.complex128),
     np.array([1.0, "a"], dtype=object), np.ones(3, dtype=np.uint8)],
    ids=["int", "bool", "complex", "object", "uint8"],
)
def test_non_float_input_raises_typeerror(x):
    with pytest.raises(TypeError, match=str(x.dtype)):
        xent.logsumexp(x)


def test_out(dtype, rng):
    x = make_logits(rng, (6, 40), dtype)
    out = np.empty(6, dtype=dtype)
    res = xent.logsumexp(x, out=out)
    assert res is out
    assert_close(out, ref_logsumexp(x), dtype)
    out2 = np.empty((6, 1), dtype=dtype)
    assert xent.logsumexp(x, keepdims=True, out=out2) is out2
    assert np.array_equal(out2[:, 0], out)


@pytest.mark.parametrize("bad", ["shape", "dtype", "noncontig", "readonly", "list", "keepdims"])
def test_bad_out_raises_valueerror(dtype, bad):
    x = np.zeros((4, 3), dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    out = {
        "shape": lambda: np.empty(5, dtype=dtype),
        "dtype": lambda: np.empty(4, dtype=other),
        "noncontig": lambda: np.empty(8, dtype=dtype)[::2],
        "readonly": lambda: np.zeros(4, dtype=dtype),
        "list": lambda: [0.0] * 4,
        "keepdims": lambda: np.empty((4, 1), dtype=dtype),
    }[bad]()
    if bad == "readonly":
        out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        xent.logsumexp(x, out=out)


def test_float16_out_is_float32():
    x = np.ones((2, 3), dtype=np.float16)
    with pytest.raises(ValueError, match="float32"):
        xent.logsumexp(x, out=np.empty(2, dtype=np.float16))
    out = np.empty(2, dtype=np.float32)
    assert xent.logsumexp(x, out=out) is out


def test_num_threads(num_threads, dtype, rng):
    x = make_logits(rng, (301, 517), dtype)
    got = xent.logsumexp(x, num_threads=num_threads)
    assert_close(got, ref_logsumexp(x), dtype)


def test_thread_count_is_bitwise_invariant(simd, dtype, rng):
    for shape in [(4096, 33), (97, 4099), (3, 262_144)]:
        x = make_logits(rng, shape, dtype)
        one = xent.logsumexp(x, num_threads=1)
        two = xent.logsumexp(x, num_threads=2)
        assert np.array_equal(one, two), shape


@pytest.mark.parametrize("n, exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError),
                                    (True, TypeError)])
def test_bad_num_threads(n, exc):
    with pytest.raises(exc, match="num_threads"):
        xent.logsumexp(np.zeros((2, 3)), num_threads=n)


def test_concurrent_calls(dtype, rng):
    xs = [make_logits(rng, (64, 257 + 13 * i), dtype) for i in range(12)]
    expected = [xent.logsumexp(x, num_threads=1) for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda ix: xent.logsumexp(ix[1], num_threads=1 + ix[0] % 2),
                            enumerate(xs)))
    for g, e in zip(got, expected):
        assert np.array_equal(g, e)


@pytest.mark.parametrize("lead", [2048, 2049, 5000])
def test_gh_leading_minus_inf_chunk(simd, dtype, rng, lead):
    """A row whose first chunk(s) are all -inf (masked vocabulary) is not NaN."""
    torch = pytest.importorskip("torch")
    x = np.full((3, lead + 1000), -np.inf, dtype=dtype)
    x[:, lead:] = rng.standard_normal((3, 1000))
    x[1, 7] = np.nan  # a NaN inside the -inf prefix still poisons its row
    x[2, :] = -np.inf
    expected = torch.logsumexp(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    assert_close(xent.logsumexp(x), expected, dtype)
