"""xent.softmax and xent.log_softmax against the long double reference and PyTorch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import assert_close, make_logits, shape_grid, special_rows
from reference import ref_log_softmax, ref_softmax

import xent

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    from numpy import AxisError

FUNCS = {"softmax": (xent.softmax, ref_softmax), "log_softmax": (xent.log_softmax,
                                                                  ref_log_softmax)}


@pytest.fixture(params=sorted(FUNCS))
def func(request):
    """(xent function, reference, torch name)."""
    return FUNCS[request.param] + (request.param,)


@pytest.mark.parametrize("shape", shape_grid(), ids=lambda s: f"{s[0]}x{s[1]}")
def test_shape_grid(simd, dtype, rng, func, shape):
    fn, ref, _ = func
    x = make_logits(rng, shape, dtype)
    keep = x.copy()
    got = fn(x)
    assert got.dtype == dtype and got.shape == shape
    assert np.array_equal(x, keep)
    assert_close(got, ref(x), dtype)


@pytest.mark.parametrize("c", [1, 2, 7, 16, 17, 33, 1025])
def test_nonfinite_rows_match_torch(simd, dtype, func, c):
    torch = pytest.importorskip("torch")
    fn, ref, name = func
    x = special_rows(c, dtype)
    got = fn(x)
    expected = getattr(torch, name)(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    assert_close(got, expected, dtype)
    assert_close(got, ref(x), dtype)


def test_nonfinite_semantics_spelled_out(dtype):
    x = np.array([[0.0, -np.inf], [np.inf, 1.0], [np.nan, 0.0], [-np.inf, -np.inf]],
                 dtype=dtype)
    p, lp = xent.softmax(x), xent.log_softmax(x)
    assert p[0].tolist() == [1.0, 0.0] and lp[0].tolist() == [0.0, -np.inf]
    assert np.isnan(p[1:]).all() and np.isnan(lp[1:]).all()


def test_softmax_rows_sum_to_one(simd, dtype, rng):
    x = make_logits(rng, (50, 1000), dtype)
    s = xent.softmax(x).astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(s, 1.0, rtol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_large_magnitudes(simd, dtype, rng, func, magnitude):
    fn, ref, _ = func
    x = (rng.uniform(-1, 1, (5, 1000)) * 1e4).astype(dtype)
    x[0, :] = magnitude
    x[1, :] = magnitude + np.arange(1000, dtype=dtype) * 1e-3 * abs(magnitude)
    x[2, 7] = magnitude
    assert_close(fn(x), ref(x), dtype)


def test_huge_vocabulary(simd, dtype, rng, func):
    fn, ref, _ = func
    x = make_logits(rng, (2, 262_144), dtype, scale=3.0)
    x[1, 1000:] = -np.inf
    assert_close(fn(x), ref(x), dtype)


def test_leading_axes(dtype, rng, func):
    fn, ref, _ = func
    x = make_logits(rng, (2, 5, 37), dtype)
    got = fn(x)
    assert got.shape == x.shape
    assert_close(got, ref(x), dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_any_axis(dtype, rng, func, axis):
    fn, ref, _ = func
    x = make_logits(rng, (4, 9, 17), dtype)
    keep = x.copy()
    got = fn(x, axis=axis)
    assert got.shape == x.shape and got.flags.c_contiguous
    assert_close(got, ref(x, axis=axis), dtype)
    assert np.array_equal(x, keep)
    out = np.empty_like(x)
    assert fn(x, axis=axis, out=out) is out
    assert np.array_equal(out, got)


def test_axis_errors(func):
    fn = func[0]
    with pytest.raises(AxisError):
        fn(np.zeros((2, 3)), axis=2)
    with pytest.raises(TypeError, match="axis"):
        fn(np.zeros((2, 3)), axis=None)


def test_array_like_and_0d(dtype, func):
    fn, ref, _ = func
    assert_close(fn([1.0, 2.0, 3.0]), ref(np.array([1.0, 2.0, 3.0])))
    x = np.array(2.5, dtype=dtype)
    got = fn(x)
    assert got.shape == () and got.dtype == dtype
    assert got == (1.0 if fn is xent.softmax else 0.0)


def test_empty(dtype, func):
    fn = func[0]
    for shape, axis in [((3, 0), -1), ((0, 5), -1), ((0,), -1), ((2, 0, 3), 1), ((0, 4), 0)]:
        x = np.zeros(shape, dtype=dtype)
        got = fn(x, axis=axis)
        assert got.shape == shape and got.dtype == dtype


def test_noncontiguous_and_fortran_inputs(dtype, rng, func):
    fn, ref, _ = func
    base = make_logits(rng, (20, 66), dtype)
    for x in (base[::2, ::3], base.T, np.asfortranarray(base), base[:, 1:]):
        keep = x.copy()
        assert_close(fn(x), ref(keep), dtype)
        assert np.array_equal(x, keep)


def test_readonly_input_not_modified(dtype, rng, func):
    fn, ref, _ = func
    x = make_logits(rng, (7, 19), dtype)
    x.flags.writeable = False
    copy = x.copy()
    got = fn(x)
    assert np.array_equal(x, copy)
    assert_close(got, ref(copy), dtype)


@pytest.mark.parametrize(
    "src, result", [(np.float16, np.float32), (np.longdouble, np.float64)]
)
def test_other_float_dtypes(rng, func, src, result):
    fn, ref, _ = func
    x = make_logits(rng, (5, 33), np.float64, spread=5.0).astype(src)
    got = fn(x)
    assert got.dtype == result
    assert_close(got, ref(x.astype(result)), result)
    out = np.empty(x.shape, dtype=result)
    assert fn(x, out=out) is out
    with pytest.raises(ValueError, match="dtype"):
        fn(x, out=np.empty(x.shape, dtype=src))


@pytest.mark.parametrize(
    "x",
    [np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=bool), np.ones(3, dtype=np.complex64),
     np.array([1.0, "a"], dtype=object), np.ones(3, dtype=np.int8)],
    ids=["int", "bool", "complex", "object", "int8"],
)
def test_non_float_input_raises_typeerror(func, x):
    with pytest.raises(TypeError, match=str(x.dtype)):
        func[0](x)


def test_out(dtype, rng, func):
    fn, ref, _ = func
    x = make_logits(rng, (6, 40), dtype)
    out = np.empty_like(x)
    assert fn(x, out=out) is out
    assert_close(out, ref(x), dtype)


def test_out_in_place(simd, dtype, rng, func):
    fn, ref, _ = func
    for shape, axis in [((6, 40), -1), ((3, 1), -1), ((5, 4, 9), 1)]:
        x = make_logits(rng, shape, dtype)
        expected = fn(x.copy(), axis=axis)
        res = fn(x, axis=axis, out=x)
        assert res is x
        assert np.array_equal(x, expected)


def test_out_partial_overlap(dtype, rng, func):
    fn, _, _ = func
    buf = make_logits(rng, (41,), dtype)
    x, out = buf[:40], buf[1:]
    expected = fn(x.copy())
    assert fn(x, out=out) is out
    assert np.array_equal(buf[1:], expected)


@pytest.mark.parametrize("bad", ["shape", "dtype", "noncontig", "readonly", "list", "fortran"])
def test_bad_out_raises_valueerror(dtype, func, bad):
    x = np.zeros((4, 3), dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    out = {
        "shape": lambda: np.empty((3, 4), dtype=dtype),
        "dtype": lambda: np.empty((4, 3), dtype=other),
        "noncontig": lambda: np.empty((4, 6), dtype=dtype)[:, ::2],
        "readonly": lambda: np.zeros((4, 3), dtype=dtype),
        "list": lambda: np.zeros((4, 3)).tolist(),
        "fortran": lambda: np.empty((4, 3), dtype=dtype, order="F"),
    }[bad]()
    if bad == "readonly":
        out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        func[0](x, out=out)


def test_num_threads(num_threads, dtype, rng, func):
    fn, ref, _ = func
    x = make_logits(rng, (301, 517), dtype)
    assert_close(fn(x, num_threads=num_threads), ref(x), dtype)


def test_thread_count_is_bitwise_invariant(simd, dtype, rng, func):
    fn = func[0]
    for shape in [(4096, 33), (97, 4099), (2, 262_144)]:
        x = make_logits(rng, shape, dtype)
        assert np.array_equal(fn(x, num_threads=1), fn(x, num_threads=2)), shape


@pytest.mark.parametrize("n, exc", [(0, ValueError), (1.5, TypeError), (None, None)])
def test_bad_num_threads(func, n, exc):
    x = np.zeros((2, 3))
    if exc is None:
        assert func[0](x, num_threads=n).shape == (2, 3)
        return
    with pytest.raises(exc, match="num_threads"):
        func[0](x, num_threads=n)


@pytest.mark.parametrize("shape", [(3, 1_500_007), (2053, 2063)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_large_separate_output_odd_shapes_and_nonfinite_rows(simd, dtype, rng, func, shape):
    """The streaming-store path works through each thread's rows as a pipeline
    (write row i - 1 while summing row i): one or two rows per thread, odd
    lengths, unaligned rows, and rows holding -inf / +inf / NaN give the in-place
    bits for any thread count, and the reference's values."""
    fn, ref, _ = func
    x = make_logits(rng, shape, dtype)
    assert x.nbytes > 16 * 2**20
    if shape[0] >= 3:
        x[0, :] = -np.inf
        x[1, 7] = np.nan
        x[-1, -3] = np.inf
        x[-2, :5] = -np.inf
    in_place = x.copy()
    fn(in_place, out=in_place)
    nan = np.isnan(in_place)
    for nt in (1, 2, 3):
        got = fn(x, num_threads=nt)
        # same bits, NaN sign and payload aside (they depend on operand order)
        assert np.array_equal(np.isnan(got), nan), nt
        assert np.where(nan, 0, got).tobytes() == np.where(nan, 0, in_place).tobytes(), nt
    assert_close(got, ref(x), dtype)


def test_concurrent_calls(dtype, rng, func):
    fn = func[0]
    xs = [make_logits(rng, (64, 257 + 13 * i), dtype) for i in range(12)]
    expected = [fn(x, num_threads=1) for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda ix: fn(ix[1], num_threads=1 + ix[0] % 2), enumerate(xs)))
    for g, e in zip(got, expected):
        assert np.array_equal(g, e)



def test_large_separate_output_streams_same_bits(simd, dtype, rng, func):
    """A separate output over 16 MiB is written with streaming stores: the same bits
    as in place (ordinary stores), and the reference's values."""
    fn, ref, _ = func
    n = (17 * 2**20) // (8200 * np.dtype(dtype).itemsize) + 3
    x = make_logits(rng, (n, 8200), dtype)
    assert x.nbytes > 16 * 2**20
    y = fn(x)
    buf = x.copy()
    assert fn(buf, out=buf) is buf
    assert y.tobytes() == buf.tobytes()
    assert_close(y[:5], ref(x[:5]), dtype)
    # an out= buffer that is not vector-aligned (a head before the streaming part),
    # and one that is not even element-aligned (no streaming)
    for offset in (np.dtype(dtype).itemsize, 1):
        raw = np.empty(x.nbytes + 64, np.uint8)
        out = raw[offset:offset + x.nbytes].view(dtype).reshape(x.shape)
        assert fn(x, out=out) is out
        assert out.tobytes() == y.tobytes(), offset
