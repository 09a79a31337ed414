"""xent.logsumexp, xent.softmax and xent.log_softmax (API.md "Primitives") against the
long double reference and PyTorch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import assert_close, assert_same, make_logits, shape_grid, special_rows

import xent
from benchmarks import reference as ref

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    from numpy import AxisError

NAMES = ("logsumexp", "softmax", "log_softmax")


@pytest.fixture(params=NAMES)
def name(request):
    return request.param


@pytest.fixture(params=NAMES[1:])
def smax(request):
    """(xent function, reference) of softmax and log_softmax."""
    return getattr(xent, request.param), getattr(ref, request.param)


def _out_shape(name, x, axis=-1):
    return np.sum(x, axis=axis).shape if name == "logsumexp" else x.shape


@pytest.mark.parametrize("shape", shape_grid(), ids=lambda s: f"{s[0]}x{s[1]}")
def test_shape_grid(simd, dtype, rng, name, shape):
    x = make_logits(rng, shape, dtype)
    keep = x.copy()
    got = getattr(xent, name)(x)
    assert got.dtype == dtype and got.shape == _out_shape(name, x)
    assert np.array_equal(x, keep)
    assert_close(got, getattr(ref, name)(x), dtype)
    if name == "logsumexp":
        kd = xent.logsumexp(x, keepdims=True)
        assert kd.shape == (shape[0], 1)
        assert np.array_equal(kd[:, 0], got)


@pytest.mark.parametrize("c", [1, 2, 7, 16, 17, 33, 1025])
def test_nonfinite_rows_match_torch(simd, dtype, name, c):
    torch = pytest.importorskip("torch")
    x = special_rows(c, dtype)
    got = getattr(xent, name)(x)
    expected = getattr(torch, name)(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    assert_close(got, expected, dtype)
    assert_close(got, getattr(ref, name)(x), dtype)


def test_nonfinite_semantics_spelled_out(dtype):
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, np.inf], [np.inf, -np.inf]],
                 dtype=dtype)
    lse = xent.logsumexp(x)
    assert lse[0] == -np.inf and lse[1] == np.inf and np.isnan(lse[2]) and lse[3] == np.inf
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
def test_large_magnitudes(simd, dtype, rng, name, magnitude):
    x = (rng.uniform(-1, 1, (5, 1000)) * 1e4).astype(dtype)
    x[0, :] = magnitude
    x[1, :] = magnitude + np.arange(1000, dtype=dtype) * 1e-3 * abs(magnitude)
    x[2, 7] = magnitude
    assert_close(getattr(xent, name)(x), getattr(ref, name)(x), dtype)


def test_huge_vocabulary(simd, dtype, rng, name):
    x = make_logits(rng, (3, 262_144), dtype, scale=3.0)
    x[1, 1000:] = -np.inf
    x[2] *= 1e3
    assert_close(getattr(xent, name)(x), getattr(ref, name)(x), dtype)


def test_leading_axes(dtype, rng, name):
    x = make_logits(rng, (2, 5, 37), dtype)
    got = getattr(xent, name)(x)
    assert got.shape == _out_shape(name, x)
    assert_close(got, getattr(ref, name)(x), dtype)
    assert xent.logsumexp(x, keepdims=True).shape == (2, 5, 1)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_any_axis(dtype, rng, axis, keepdims):
    x = make_logits(rng, (4, 9, 17), dtype)
    got = xent.logsumexp(x, axis=axis, keepdims=keepdims)
    assert got.shape == np.sum(x, axis=axis, keepdims=keepdims).shape
    assert_close(got, ref.logsumexp(x, axis=axis, keepdims=keepdims), dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_softmax_any_axis(dtype, rng, smax, axis):
    fn, rf = smax
    x = make_logits(rng, (4, 9, 17), dtype)
    keep = x.copy()
    got = fn(x, axis=axis)
    assert got.shape == x.shape and got.flags.c_contiguous
    assert_close(got, rf(x, axis=axis), dtype)
    assert np.array_equal(x, keep)
    out = np.empty_like(x)
    assert fn(x, axis=axis, out=out) is out
    assert np.array_equal(out, got)


def test_axis_errors(name):
    fn = getattr(xent, name)
    x = np.zeros((2, 3))
    for axis in (2, -3):
        with pytest.raises(AxisError):
            fn(x, axis=axis)
    for axis in (None, 1.0):
        with pytest.raises(TypeError, match="axis"):
            fn(x, axis=axis)


def test_array_like_and_0d(dtype, name):
    fn = getattr(xent, name)
    assert_close(fn([1.0, 2.0, 3.0]), getattr(ref, name)(np.array([1.0, 2.0, 3.0])))
    x = np.array(2.5, dtype=dtype)
    got = fn(x)
    assert got.shape == () and got.dtype == dtype
    assert got == {"logsumexp": x, "softmax": 1.0, "log_softmax": 0.0}[name]
    assert xent.logsumexp(x, keepdims=True).shape == ()


def test_empty(dtype, name):
    fn = getattr(xent, name)
    for shape, axis in [((3, 0), -1), ((0, 5), -1), ((0,), -1), ((2, 0, 3), 1), ((0, 4), 0)]:
        x = np.zeros(shape, dtype=dtype)
        got = fn(x, axis=axis)
        assert got.shape == _out_shape(name, x, axis) and got.dtype == dtype
        if name == "logsumexp" and x.shape[axis] == 0:
            assert np.all(got == -np.inf)  # NumPy: logsumexp over an empty axis


def test_noncontiguous_fortran_and_readonly_inputs(dtype, rng, name):
    fn, rf = getattr(xent, name), getattr(ref, name)
    base = make_logits(rng, (20, 66), dtype)
    ro = make_logits(rng, (7, 19), dtype)
    ro.flags.writeable = False
    for x in (base[::2, ::3], base.T, np.asfortranarray(base), base[:, 1:], ro):
        keep = x.copy()
        assert_close(fn(x), rf(keep), dtype)
        assert np.array_equal(x, keep)


@pytest.mark.parametrize("src, result", [(np.float16, np.float16), (np.longdouble, np.float64)])
def test_other_float_dtypes(rng, name, src, result):
    # float16 is native (its result keeps the dtype; tests/test_half.py), longdouble
    # computes in float64
    fn = getattr(xent, name)
    x = make_logits(rng, (5, 33), np.float64, spread=5.0).astype(src)
    got = fn(x)
    assert got.dtype == result
    assert_close(got, getattr(ref, name)(x.astype(np.float64)), result)
    out = np.empty(_out_shape(name, x), dtype=result)
    assert fn(x, out=out) is out
    other = np.float32 if src == np.float16 else src
    with pytest.raises(ValueError, match="dtype"):
        fn(x, out=np.empty(out.shape, dtype=other))


@pytest.mark.parametrize(
    "x",
    [np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=bool), np.ones(3, dtype=np.complex64),
     np.ones(3, dtype=np.complex128), np.array([1.0, "a"], dtype=object),
     np.ones(3, dtype=np.int8), np.ones(3, dtype=np.uint8)],
    ids=["int", "bool", "complex64", "complex128", "object", "int8", "uint8"],
)
def test_non_float_input_raises_typeerror(name, x):
    with pytest.raises(TypeError, match=str(x.dtype)):
        getattr(xent, name)(x)


def test_out(dtype, rng, name):
    fn = getattr(xent, name)
    x = make_logits(rng, (6, 40), dtype)
    out = np.empty(_out_shape(name, x), dtype=dtype)
    assert fn(x, out=out) is out
    assert_close(out, getattr(ref, name)(x), dtype)
    out2 = np.empty((6, 1), dtype=dtype)
    assert xent.logsumexp(x, keepdims=True, out=out2) is out2
    assert np.array_equal(out2[:, 0], xent.logsumexp(x))


def test_out_in_place(simd, dtype, rng, smax):
    fn = smax[0]
    for shape, axis in [((6, 40), -1), ((3, 1), -1), ((5, 4, 9), 1)]:
        x = make_logits(rng, shape, dtype)
        expected = fn(x.copy(), axis=axis)
        assert fn(x, axis=axis, out=x) is x
        assert np.array_equal(x, expected)


def test_out_partial_overlap(dtype, rng, smax):
    fn = smax[0]
    buf = make_logits(rng, (41,), dtype)
    x, out = buf[:40], buf[1:]
    expected = fn(x.copy())
    assert fn(x, out=out) is out
    assert np.array_equal(buf[1:], expected)


@pytest.mark.parametrize("bad", ["shape", "dtype", "noncontig", "readonly", "list", "layout"])
def test_bad_out_raises_valueerror(dtype, name, bad):
    x = np.zeros((4, 3), dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    lse = name == "logsumexp"
    out = {
        "shape": lambda: np.empty(5 if lse else (3, 4), dtype=dtype),
        "dtype": lambda: np.empty(4 if lse else (4, 3), dtype=other),
        "noncontig": lambda: np.empty(8 if lse else (4, 6), dtype=dtype)[..., ::2],
        "readonly": lambda: np.zeros(4 if lse else (4, 3), dtype=dtype),
        "list": lambda: [0.0] * 4 if lse else np.zeros((4, 3)).tolist(),
        # logsumexp: the keepdims shape without keepdims; softmax: Fortran order
        "layout": lambda: np.empty((4, 1) if lse else (4, 3), dtype=dtype, order="F"),
    }[bad]()
    if bad == "readonly":
        out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        getattr(xent, name)(x, out=out)


def test_num_threads(num_threads, dtype, rng, name):
    x = make_logits(rng, (301, 517), dtype)
    assert_close(getattr(xent, name)(x, num_threads=num_threads), getattr(ref, name)(x), dtype)


def test_thread_count_is_bitwise_invariant(simd, dtype, rng, name):
    fn = getattr(xent, name)
    for shape in [(4096, 33), (97, 4099), (3, 262_144)]:
        x = make_logits(rng, shape, dtype)
        assert np.array_equal(fn(x, num_threads=1), fn(x, num_threads=2)), shape


@pytest.mark.parametrize("n, exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError),
                                    (True, TypeError), (None, None)])
def test_bad_num_threads(name, n, exc):
    fn = getattr(xent, name)
    x = np.zeros((2, 3))
    if exc is None:
        assert fn(x, num_threads=n).shape == _out_shape(name, x)
        return
    with pytest.raises(exc, match="num_threads"):
        fn(x, num_threads=n)


def test_concurrent_calls(dtype, rng, name):
    fn = getattr(xent, name)
    xs = [make_logits(rng, (64, 257 + 13 * i), dtype) for i in range(12)]
    expected = [fn(x, num_threads=1) for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda ix: fn(ix[1], num_threads=1 + ix[0] % 2), enumerate(xs)))
    for g, e in zip(got, expected):
        assert np.array_equal(g, e)


@pytest.mark.parametrize("lead", [2048, 2049, 5000])
def test_leading_minus_inf_chunk(simd, dtype, rng, lead):
    """A row whose first chunk(s) are all -inf (masked vocabulary) is not NaN."""
    torch = pytest.importorskip("torch")
    x = np.full((3, lead + 1000), -np.inf, dtype=dtype)
    x[:, lead:] = rng.standard_normal((3, 1000))
    x[1, 7] = np.nan  # a NaN inside the -inf prefix still poisons its row
    x[2, :] = -np.inf
    expected = torch.logsumexp(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    assert_close(xent.logsumexp(x), expected, dtype)


@pytest.mark.parametrize("shape", [(3, 1_500_007), (2053, 2063)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_large_separate_output_odd_shapes_and_nonfinite_rows(simd, dtype, rng, smax, shape):
    """The streaming-store path works through each thread's rows as a pipeline
    (write row i - 1 while summing row i): one or two rows per thread, odd
    lengths, unaligned rows, and rows holding -inf / +inf / NaN give the in-place
    bits for any thread count, and the reference's values."""
    fn, rf = smax
    x = make_logits(rng, shape, dtype)
    assert x.nbytes > 16 * 2**20
    if shape[0] >= 3:
        x[0, :] = -np.inf
        x[1, 7] = np.nan
        x[-1, -3] = np.inf
        x[-2, :5] = -np.inf
    in_place = x.copy()
    fn(in_place, out=in_place)
    for nt in (1, 2, 3):
        got = fn(x, num_threads=nt)
        assert_same(got, in_place, f"num_threads={nt}")
    assert_close(got, rf(x), dtype)


def test_large_separate_output_streams_same_bits(simd, dtype, rng, smax):
    """A separate output over 16 MiB is written with streaming stores: the same bits
    as in place (ordinary stores), and the reference's values."""
    fn, rf = smax
    n = (17 * 2**20) // (8200 * np.dtype(dtype).itemsize) + 3
    x = make_logits(rng, (n, 8200), dtype)
    assert x.nbytes > 16 * 2**20
    y = fn(x)
    buf = x.copy()
    assert fn(buf, out=buf) is buf
    assert y.tobytes() == buf.tobytes()
    assert_close(y[:5], rf(x[:5]), dtype)
    # an out= buffer that is not vector-aligned (a head before the streaming part),
    # and one that is not even element-aligned (no streaming)
    for offset in (np.dtype(dtype).itemsize, 1):
        raw = np.empty(x.nbytes + 64, np.uint8)
        out = raw[offset:offset + x.nbytes].view(dtype).reshape(x.shape)
        assert fn(x, out=out) is out
        assert out.tobytes() == y.tobytes(), offset
