"""float16 and bfloat16 logits (issue 18): the functions that read them natively.

logsumexp, softmax, log_softmax, the cross_entropy family and token_scores widen
16-bit logits to float32 in cache and round their array results once to the input
dtype.  The contract tested here: array results within 1 ulp of the input dtype of
a float64 reference computed from the same 16-bit inputs (overflow to inf exactly
where the rounded reference overflows), scalar losses within float32 accuracy,
on every SIMD path, for odd class counts, in place, with ignored rows, values at
the edges of the formats (largest finite, subnormal, inf, NaN), and against
PyTorch's own bfloat16/float16 CPU computation.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import xent
from benchmarks import reference as ref

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = [F16, BF16]
IDS = ["f16", "bf16"]
#: explicit mantissa bits and smallest normal exponent of each format
_FORMAT = {F16: (10, -14), BF16: (7, -126)}


@pytest.fixture(params=HALF, ids=IDS)
def hdt(request):
    return request.param


def ulp(e: np.ndarray, dt: np.dtype) -> np.ndarray:
    """One unit in the last place of dtype `dt` at the float64 values `e`."""
    p, emin = _FORMAT[dt]
    with np.errstate(divide="ignore"):
        ex = np.floor(np.log2(np.abs(e)))
    ex = np.where(np.isfinite(ex), np.maximum(ex, emin), emin)
    return np.ldexp(1.0, (ex - p).astype(int))


def assert_ulp(actual: np.ndarray, expected: np.ndarray, dt: np.dtype, slack=0.0, what=""):
    """`actual` (dtype `dt`) within 1 ulp of the float64 `expected`, plus an absolute
    `slack`; where `expected` rounds to inf in `dt`, exactly that inf; NaN where NaN."""
    assert actual.dtype == dt and actual.shape == expected.shape, (actual.dtype, what)
    a = actual.astype(np.float64)
    with np.errstate(over="ignore"):
        e_rounded = expected.astype(dt).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(expected), err_msg=what)
    inf = np.isinf(e_rounded)
    np.testing.assert_array_equal(a[inf], e_rounded[inf], err_msg=what)
    fin = ~inf & ~np.isnan(expected)
    err = np.abs(a[fin] - expected[fin])
    bound = ulp(expected[fin], dt) + slack
    assert np.all(err <= bound), (what, float(np.max(err / bound)))


def logits(rng, shape, dt, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dt)


def f64(x):
    return x.astype(np.float64)


def targets(rng, n, c, frac_ignored=0.25):
    t = rng.integers(0, c, n)
    t[rng.random(n) < frac_ignored] = -100
    return t


# ---------------------------------------------------------------- conversions, all bit patterns


def all_values(dt):
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dt)


def test_widening_every_value(simd, hdt):
    # logsumexp of a 1-element row is the element: the kernels' 16-bit -> float32
    # conversion of every bit pattern (subnormals, inf, NaN included)
    x = all_values(hdt)
    got = xent.logsumexp(x.reshape(-1, 1))
    assert got.dtype == hdt
    np.testing.assert_array_equal(got.astype(np.float32), x.astype(np.float32))


def test_narrowing_rounds_to_nearest_even(simd, hdt):
    # row [0, -big], target 1: the gradient's first column is grad_output exactly, so
    # it shows the float32 -> 16-bit rounding: around every 16-bit value (ties, half
    # ulps), past the largest finite value, subnormals, inf and NaN
    rng = np.random.default_rng(1)
    base = all_values(hdt).astype(np.float32)
    base = base[np.isfinite(base)]
    u = base.view(np.uint32)
    g = np.concatenate([base, (u + 0x1000).view(np.float32), (u + 0x8000).view(np.float32),
                        (u + 0x7FFF).view(np.float32), (u + 0x10000).view(np.float32),
                        rng.standard_normal(1000).astype(np.float32) * 1e5,
                        np.array([np.inf, -np.inf, np.nan, 65519.99, 65520.0, 3.4e38],
                                 np.float32)])
    g = g[np.abs(g) < 3.0e38]  # -g * 1 must not be rounded in float32
    x = np.zeros((g.size, 2), hdt)
    x[:, 1] = -60000.0
    t = np.ones(g.size, np.int64)
    grad = xent.cross_entropy_grad(x, t, g, reduction="none")
    assert grad.dtype == hdt
    with np.errstate(over="ignore"):
        want = g.astype(hdt)
    np.testing.assert_array_equal(grad[:, 0].astype(np.float32), want.astype(np.float32))
    np.testing.assert_array_equal(grad[:, 1].astype(np.float32), -want.astype(np.float32))


# ------------------------------------------------------------------- values against float64


@pytest.mark.parametrize("c", [1, 7, 33, 1000])
def test_primitives(simd, hdt, c):
    rng = np.random.default_rng(c)
    x = logits(rng, (13, c), hdt, scale=5.0)  # many probabilities are subnormal in float16
    x[3, 0] = np.inf
    x[4, c // 2] = np.nan
    x[5] = -np.inf
    x64 = f64(x)
    assert_ulp(xent.logsumexp(x), ref.logsumexp(x64), hdt, what="logsumexp")
    assert_ulp(xent.softmax(x), ref.softmax(x64), hdt, what="softmax")
    assert_ulp(xent.log_softmax(x), ref.log_softmax(x64), hdt, what="log_softmax")
    y = x.copy()
    assert xent.softmax(y, out=y) is y
    np.testing.assert_array_equal(y.view(np.uint16), xent.softmax(x).view(np.uint16))
    xt = np.ascontiguousarray(x.T)  # another axis: a private copy
    assert_ulp(xent.log_softmax(xt, axis=0), ref.log_softmax(x64).T, hdt, what="axis 0")


def test_format_edges(simd, hdt):
    big = float(np.finfo(np.float16).max) if hdt == F16 else float(ml_dtypes.finfo(BF16).max)
    tiny = float(np.finfo(np.float16).smallest_subnormal) if hdt == F16 else float(
        ml_dtypes.finfo(BF16).smallest_subnormal)
    rows = [[big, big, big], [big, -big, 0.0], [-big, -big, -big], [tiny, -tiny, 0.0],
            [big, np.inf, 1.0], [np.nan, 1.0, 2.0], [-np.inf, -np.inf, 0.0]]
    x = np.array(rows, np.float64).astype(hdt)
    x64 = f64(x)
    assert_ulp(xent.logsumexp(x), ref.logsumexp(x64), hdt, what="logsumexp")
    assert_ulp(xent.softmax(x), ref.softmax(x64), hdt, what="softmax")
    assert_ulp(xent.log_softmax(x), ref.log_softmax(x64), hdt, what="log_softmax")
    t = np.array([0, 1, 2, 0, 2, 1, 2])
    with np.errstate(all="ignore"):
        want = ref.cross_entropy_and_grad(x64, t, reduction="none")
    loss, grad = xent.cross_entropy_and_grad(x, t, reduction="none")
    assert_ulp(loss, want[0], hdt, what="loss")
    assert_ulp(grad, want[1], hdt, what="grad")


@pytest.mark.parametrize("c", [1, 7, 33, 1000])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(simd, hdt, c, reduction):
    rng = np.random.default_rng(c)
    x = logits(rng, (2, 9, c), hdt)
    t = targets(rng, (2, 9), c)
    x64 = f64(x)
    want_loss, want_grad = ref.cross_entropy_and_grad(x64, t, reduction=reduction)
    loss, grad = xent.cross_entropy_and_grad(x, t, reduction=reduction)
    if reduction == "none":
        assert_ulp(loss, want_loss, hdt, what="loss")
    else:  # a float32 scalar
        assert type(loss) is np.float32
        assert_close(loss, want_loss, np.float32)
    assert_ulp(grad, want_grad, hdt, what="grad")
    assert np.all(grad[t == -100] == 0)
    assert_ulp(xent.cross_entropy_grad(x, t, reduction=reduction), want_grad, hdt)
    np.testing.assert_array_equal(xent.cross_entropy(x, t, reduction=reduction), loss)
    y = x.copy()  # in place, with a grad_output applied before the rounding
    g, want = 1e-3, want_grad * 1e-3
    if reduction == "none":
        g = rng.standard_normal(t.shape) * 1e3
        want = want_grad * g[..., None]
    assert xent.cross_entropy_grad(y, t, g, reduction=reduction, out=y) is y
    assert_ulp(y, want, hdt, what="in place")


def test_cross_entropy_options(hdt):
    rng = np.random.default_rng(3)
    c = 40
    x = logits(rng, (17, c), hdt)
    x64 = f64(x)
    t = targets(rng, 17, c)
    w = rng.random(c) + 0.5
    sw = rng.random(17)
    kw = dict(weight=w, label_smoothing=0.1, z_loss=1e-3, softcap=20.0, sample_weight=sw)
    want_loss, want_grad = ref.cross_entropy_and_grad(
        x64, t, **{**kw, "weight": w.astype(np.float32).astype(np.float64),
                   "sample_weight": sw.astype(np.float32).astype(np.float64)})
    loss, grad = xent.cross_entropy_and_grad(x, t, **kw)
    assert_close(loss, want_loss, np.float32)
    assert_ulp(grad, want_grad, hdt, slack=1e-6 * np.abs(want_grad).max())
    q = ref.softmax(rng.standard_normal((17, c)))  # probability targets, float32 inside
    want_loss, want_grad = ref.cross_entropy_and_grad(x64, q.astype(np.float32))
    loss, grad = xent.cross_entropy_and_grad(x, q)
    assert_close(loss, want_loss, np.float32)
    assert_ulp(grad, want_grad, hdt, slack=1e-6 * np.abs(want_grad).max())


@pytest.mark.parametrize("c", [1, 33, 1000])
def test_token_scores(simd, hdt, c):
    rng = np.random.default_rng(c)
    x = logits(rng, (3, 5, c), hdt)
    t = targets(rng, (3, 5), c)
    k = min(c, 4)
    got = xent.token_scores(x, t, top_k=k)
    want = ref.token_scores(f64(x), t, top_k=k)
    slack = 1e-5 * np.abs(want.logsumexp).max()  # float32 sums inside
    for field in ("logsumexp", "entropy", "logprob", "top_logprobs"):
        assert_ulp(getattr(got, field), getattr(want, field), hdt, slack, field)
    np.testing.assert_array_equal(got.rank, want.rank)
    np.testing.assert_array_equal(got.top_indices, want.top_indices)


def test_threads_and_big_rows(hdt):
    # several row blocks per thread, one row per block, the same bits for any team
    rng = np.random.default_rng(5)
    for shape in [(300, 70), (9, 20000)]:
        x = logits(rng, shape, hdt)
        t = targets(rng, shape[0], shape[1])
        one = xent.cross_entropy_and_grad(x, t, num_threads=1)
        two = xent.cross_entropy_and_grad(x, t, num_threads=2)
        assert one[0] == two[0]
        np.testing.assert_array_equal(one[1].view(np.uint16), two[1].view(np.uint16))
        assert_ulp(one[1], ref.cross_entropy_grad(f64(x), t), hdt)
        np.testing.assert_array_equal(xent.softmax(x, num_threads=1).view(np.uint16),
                                      xent.softmax(x, num_threads=2).view(np.uint16))


def test_errors_and_converted_functions(hdt):
    x = np.zeros((4, 5), hdt)
    t = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="dtype"):
        xent.softmax(x, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        xent.cross_entropy_grad(x, t, out=np.empty((4, 5), np.float32))
    with pytest.raises(IndexError):
        xent.cross_entropy(x, np.array([0, 1, 5, 3]))
    with pytest.raises(ValueError, match="dtype"):  # the converted losses check out= too
        xent.focal_loss_grad(x, t, out=np.empty((4, 5), np.float32))


# The losses without a 16-bit kernel: computed in float32 from the 16-bit values, array
# results rounded once to the input dtype, scalars float32.
CONVERTED = {
    "focal_loss": (lambda x, t: (t,), {"gamma": 2.0}),
    "nll_loss": (lambda x, t: (t,), {}),
    "binary_cross_entropy_with_logits": (lambda x, t: (np.tanh(x.astype(np.float32)) ** 2,),
                                         {}),
    "sigmoid_focal_loss": (lambda x, t: ((x.astype(np.float32) > 0).astype(np.float32),), {}),
    "kl_div_with_logits": (lambda x, t: (np.flip(x.astype(np.float32), -1).copy(),), {}),
}


@pytest.mark.parametrize("name", list(CONVERTED))
def test_converted_losses_round_arrays_to_the_input_dtype(hdt, name):
    rng = np.random.default_rng(3)
    x = logits(rng, (6, 9), hdt)
    if name == "nll_loss":
        x = (x.astype(np.float32) - 3.0).astype(hdt)  # log-probability-like values
    t = targets(rng, 6, 9)
    extra, kw = CONVERTED[name]
    args = (x, *extra(x, t))
    f32 = (x.astype(np.float32), *args[1:])
    loss = getattr(xent, name)(*args, **kw, reduction="none")
    ref_loss = getattr(xent, name)(*f32, **kw, reduction="none")
    assert loss.dtype == hdt
    np.testing.assert_array_equal(loss, ref_loss.astype(hdt))  # one rounding of float32
    kw = {**kw, "reduction": "sum"}
    grad = getattr(xent, name + "_grad")(*args, **kw)
    ref_grad = getattr(xent, name + "_grad")(*f32, **kw)
    assert grad.dtype == hdt
    np.testing.assert_array_equal(grad, ref_grad.astype(hdt))
    total, g2 = getattr(xent, name + "_and_grad")(*args, **kw)
    assert type(total) is np.float32
    assert total == getattr(xent, name)(*f32, **kw)
    np.testing.assert_array_equal(g2, grad)
    out = np.empty_like(x)
    assert getattr(xent, name + "_grad")(*args, **kw, out=out) is out
    np.testing.assert_array_equal(out, grad)
    y = x.copy()  # in place: out is the logits themselves
    assert getattr(xent, name + "_grad")(y, *args[1:], **kw, out=y) is y
    np.testing.assert_array_equal(y, grad)


# ------------------------------------------------------------------------------ PyTorch


def test_against_torch(hdt):
    torch = pytest.importorskip("torch")
    tdt = torch.float16 if hdt == F16 else torch.bfloat16
    rng = np.random.default_rng(9)
    x = logits(rng, (64, 300), hdt)
    t = targets(rng, 64, 300)
    xt = torch.from_numpy(x.view(np.int16).copy()).view(tdt).requires_grad_()
    tt = torch.from_numpy(t)
    lt = torch.nn.functional.cross_entropy(xt, tt)
    lt.backward()
    loss, grad = xent.cross_entropy_and_grad(x, t)
    assert_close(loss, lt.detach().float().numpy(), hdt.name)
    assert_close(torch.from_numpy(grad.view(np.int16).copy()).view(tdt), xt.grad)
    xd = xt.detach()
    for name in ("softmax", "log_softmax"):
        want = getattr(torch, name)(xd, -1)
        got = torch.from_numpy(getattr(xent, name)(x).view(np.int16).copy()).view(tdt)
        assert_close(got, want)
    got = torch.from_numpy(xent.logsumexp(x).view(np.int16).copy()).view(tdt)
    assert_close(got, torch.logsumexp(xd, -1))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_adapter_zero_copy(hdt, reduction, monkeypatch):
    # xent.torch hands contiguous 16-bit logits to the kernels as they are (no float32
    # copy: as_compute is never called), keeps G in float32 and rounds grad_output * G
    # once to the input dtype
    torch = pytest.importorskip("torch")
    import xent.torch as xtorch
    from xent.torch import _engine

    def no_copy(x):
        raise AssertionError("16-bit logits copied to float32")

    monkeypatch.setattr(_engine, "as_compute", no_copy)
    tdt = torch.float16 if hdt == F16 else torch.bfloat16
    rng = np.random.default_rng(11)
    x = logits(rng, (32, 100), hdt)
    t = targets(rng, 32, 100)
    xt = torch.from_numpy(x.view(np.int16).copy()).view(tdt).requires_grad_()
    loss = xtorch.cross_entropy(xt, torch.from_numpy(t), reduction=reduction)
    assert loss.dtype == tdt
    go = rng.standard_normal(32).astype(np.float32) if reduction == "none" else 1.0
    loss.backward(torch.from_numpy(go).to(tdt) if reduction == "none" else None)
    if reduction == "none":
        go = torch.from_numpy(go).to(tdt).float().numpy()  # what the backward receives
    want_grad = ref.cross_entropy_grad(f64(x), t, np.float64(go), reduction=reduction)
    assert_ulp(xt.grad.view(torch.int16).numpy().view(hdt), want_grad, hdt)
    want = xent.cross_entropy(x, t, reduction=reduction)
    np.testing.assert_array_equal(loss.detach().float().numpy(), np.asarray(want, np.float32)
                                  .astype(hdt).astype(np.float32))
