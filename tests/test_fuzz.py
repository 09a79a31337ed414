"""Hypothesis fuzzing of every public xent function.

Each example builds random inputs (shapes with 0 rows / 1 class / leading axes, dtypes,
C/Fortran/strided/negative-stride layouts, NaN/inf, targets, option values and out=
buffers) with at most one deliberate fault, then checks that the call either returns
the value of the independent float64 reference (``reference.py``) within API.md's
tolerance or raises the exception type API.md documents for that fault -- and that no
input was modified.

``test_fuzz_aliasing`` (issue 14): for every function with ``out=``, an ``out`` that
shares memory with one other argument (class or probability target, weight,
sample_weight, alpha, pos_weight, grad_output, the teacher, or the logits at any
shift), sometimes with ``out`` being the logits themselves, must give the result of
the same call on copies of every argument, and change no byte outside ``out``.

Examples per test: ``XENT_FUZZ_EXAMPLES`` (default 25, CI-sized); e.g.
``XENT_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py`` for a long run.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from helpers import SIMD_ORDER, Arena, assert_close, assert_same, use_simd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import xent
from benchmarks import reference as ref
from xent._kernels import _core

with warnings.catch_warnings():  # hypothesis' failure report imports libcst, which warns
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except Exception:  # noqa: BLE001 - optional
        pass

AXIS_ERROR = getattr(getattr(np, "exceptions", np), "AxisError", None) or np.AxisError  # noqa: NPY201
N_EXAMPLES = int(os.environ.get("XENT_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("XENT_FUZZ_RANDOM", "0") == "0",
    suppress_health_check=list(HealthCheck),
    database=None,
    # shrinking a failure can take minutes; XENT_FUZZ_SHRINK=1 turns it on for debugging
    phases=[p for p in Phase if p not in (Phase.shrink, Phase.explain)
            or os.environ.get("XENT_FUZZ_SHRINK") == "1"],
    print_blob=True,
)


# Every example runs on one SIMD path: those the CPU has, up to XENT_SIMD when it is set.
_TOP = min(SIMD_ORDER.index(_core.simd_active()), SIMD_ORDER.index(_core.simd_supported()))
SIMD = st.sampled_from(SIMD_ORDER[:_TOP + 1])


# ---------------------------------------------------------------------------- inputs


def layout(arr: np.ndarray, kind: str) -> np.ndarray:
    """The same values in another memory layout."""
    if kind == "readonly":
        a = arr.copy()
        a.flags.writeable = False
        return a
    if arr.ndim == 0 or kind == "c":
        return arr
    if kind == "f":
        return np.asfortranarray(arr)
    if kind == "strided":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1] + 1,), dtype=arr.dtype)
        big[..., 1::2] = arr
        return big[..., 1::2]
    if kind == "neg":
        return np.ascontiguousarray(arr[..., ::-1])[..., ::-1]
    raise AssertionError(kind)


LAYOUTS = st.sampled_from(["c", "c", "f", "strided", "neg", "readonly"])
FLOAT_DTYPES = st.sampled_from([np.float32, np.float64, np.float64, np.float16])
BAD_DTYPES = [np.int32, np.int64, np.bool_, np.complex128, object]


@st.composite
def shapes(draw, min_c=1):
    lead = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3))
    if draw(st.booleans()):
        lead = [d if d else 1 for d in lead]  # mostly non-empty
    c = draw(st.one_of(st.integers(min_c, 9), st.sampled_from([16, 17, 33, 70])))
    return tuple(lead) + (c,)


def make_values(rng, shape, dtype, specials: bool, scale: float):
    x = rng.standard_normal(shape) * scale
    if rng.random() < 0.25 and x.size:  # ties / repeated values
        x = np.round(x)
    if specials and x.size:
        k = rng.integers(1, 4)
        idx = rng.integers(0, x.size, size=k)
        x.reshape(-1)[idx] = rng.choice([np.nan, np.inf, -np.inf], size=k)
    return x.astype(dtype)


def conv(x):
    """What xent computes in: float16 -> float32; returns (dtype, float64 copy)."""
    x = np.asarray(x)
    dt = np.dtype(np.float32) if x.dtype == np.float16 else x.dtype
    return dt, np.asarray(x, dtype=dt).astype(np.float64)


def result_dtype(x):
    """The dtype of xent's array results: the input's (16-bit included); scalars: conv."""
    x = np.asarray(x)
    return x.dtype if x.dtype == np.float16 else conv(x)[0]


# ---------------------------------------------------------------------------- checking


def snapshot(objs):
    out = []
    for o in objs:
        if isinstance(o, np.ndarray):
            out.append((o, o.copy(), o.dtype, o.shape, o.strides))
    return out


def assert_unmodified(snap):
    for arr, copy, dt, shp, strides in snap:
        assert arr.dtype == dt and arr.shape == shp and arr.strides == strides
        if arr.dtype == object:
            assert all(a is b or a == b for a, b in zip(arr.ravel(), copy.ravel()))
        else:
            assert arr.tobytes() == copy.tobytes(), "an input array was modified"


def check_close(actual, expected, dtype, what="", summands=None):
    """API.md's tolerance; a reduction's absolute part is scaled by its largest summand.
    16-bit results are compared with the reference rounded to 16 bits (beyond the
    range: inf)."""
    if np.dtype(dtype).itemsize == 2:
        with np.errstate(over="ignore"):
            expected = np.asarray(expected).astype(dtype).astype(np.float64)
    scale = None
    if summands is not None:
        fin = np.isfinite(summands)
        scale = max(float(np.max(np.abs(summands[fin]), initial=0.0)),
                    float(np.max(np.abs(expected), initial=0.0, where=np.isfinite(expected))))
    assert_close(actual, expected, dtype, scale=scale, err_msg=what)


def check_scalar_dtype(value, dtype):
    assert isinstance(value, np.generic) and value.dtype == dtype, (type(value), dtype)


def run(fn, args, kwargs, expect_exc, check, simd="default"):
    snap = snapshot(list(args) + [v for k, v in kwargs.items() if k != "out"])
    with use_simd(simd):
        if expect_exc is not None:
            with pytest.raises(expect_exc):
                fn(*args, **kwargs)
        else:
            res = fn(*args, **kwargs)
    if expect_exc is None:
        check(res)
    assert_unmodified(snap)


# ---------------------------------------------------------------------------- primitives


@FUZZ
@given(
    name=st.sampled_from(["logsumexp", "softmax", "log_softmax"]),
    shape=shapes(min_c=0),
    dtype=FLOAT_DTYPES,
    lay=LAYOUTS,
    seed=st.integers(0, 2**32 - 1),
    specials=st.booleans(),
    scale=st.sampled_from([0.1, 3.0, 30.0, 1e3]),
    axis_pick=st.integers(-4, 4),
    keepdims=st.booleans(),
    fault=st.sampled_from(["none"] * 6 + ["dtype", "axis", "out_shape", "out_dtype",
                                           "out_noncontig", "out_readonly", "threads0",
                                           "threads_type", "out_ok", "inplace"]),
    nt=st.sampled_from([None, 1, 2, 3]),
    simd=SIMD,
)
def test_fuzz_primitives(name, shape, dtype, lay, seed, specials, scale, axis_pick, keepdims,
                         fault, nt, simd):
    fn = getattr(xent, name)
    rng = np.random.default_rng(seed)
    x = make_values(rng, shape, dtype, specials, scale)
    ndim = len(shape)
    axis = axis_pick if -ndim <= axis_pick < ndim else -1
    kwargs = {"axis": axis, "num_threads": nt}
    if name == "logsumexp":
        kwargs["keepdims"] = keepdims
    cdt, x64 = conv(x)
    cdt = x.dtype if x.dtype == np.float16 else cdt  # 16-bit results keep their dtype
    if name == "logsumexp":
        exp = ref.logsumexp(x64, axis, keepdims=False)
        if keepdims:
            exp = np.expand_dims(exp, axis)
    else:
        exp = getattr(ref, name)(x64, axis)
    expect_exc = None
    if fault == "dtype":
        x = make_values(rng, shape, np.float64, False, 3.0).astype(
            BAD_DTYPES[rng.integers(len(BAD_DTYPES))])
        expect_exc = TypeError
    elif fault == "axis":
        kwargs["axis"] = ndim + int(rng.integers(0, 3))
        expect_exc = AXIS_ERROR
    elif fault.startswith("out_") and fault != "out_ok":
        good = np.empty(exp.shape, dtype=cdt)
        kwargs["out"] = {
            "out_shape": np.empty(exp.shape + (1,), dtype=cdt),
            "out_dtype": np.empty(exp.shape, dtype=np.float64 if cdt == np.float32
                                  else np.float32),
            "out_noncontig": layout(good, "strided") if good.ndim and good.size > 1 else None,
            "out_readonly": layout(good, "readonly"),
        }[fault]
        if kwargs["out"] is None:
            kwargs["out"] = np.empty(exp.shape + (2,), dtype=cdt)
        expect_exc = ValueError
    elif fault == "threads0":
        kwargs["num_threads"] = 0
        expect_exc = ValueError
    elif fault == "threads_type":
        kwargs["num_threads"] = 1.5
        expect_exc = TypeError
    elif fault == "out_ok":
        kwargs["out"] = np.full(exp.shape, 7.0, dtype=cdt)
    x_in = layout(x, lay)

    if fault == "inplace" and name != "logsumexp":
        buf = np.array(x, copy=True)  # out=x is the documented in-place form
        res = fn(buf, axis=axis, out=buf, num_threads=nt)
        assert res is buf
        check_close(res, exp, cdt, name)
        return

    def check(res):
        assert isinstance(res, np.ndarray) and res.dtype == cdt
        if "out" in kwargs:
            assert res is kwargs["out"]
        check_close(res, exp, cdt, name)

    run(fn, (x_in,), kwargs, expect_exc, check, simd)


# ---------------------------------------------------------------------------- class-target losses

# name -> options it takes (beyond logits, target, ignore_index, reduction, num_threads)
CLASS_FAMILIES = {
    "cross_entropy": ("weight", "label_smoothing", "z_loss", "softcap", "sample_weight",
                      "soft"),
    "nll_loss": ("weight",),
    "focal_loss": ("gamma", "alpha"),
}
FAULTS = ["none"] * 8 + [
    "logits_dtype", "target_shape", "target_oob", "target_dtype", "target_float",
    "reduction", "weight_shape", "zero_classes", "logits_0d", "threads0",
    "label_smoothing", "softcap", "z_loss", "gamma", "soft_ignore", "grad_output",
    "out_shape", "out_dtype", "out_noncontig", "out_readonly",
]


@st.composite
def class_case(draw, family):
    opts = CLASS_FAMILIES[family]
    shape = draw(shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(FLOAT_DTYPES)
    form = draw(st.sampled_from(["loss", "grad", "and_grad"]))
    fault = draw(st.sampled_from(FAULTS))
    specials = draw(st.booleans()) and form == "loss" and family == "cross_entropy"
    scale = draw(st.sampled_from([0.1, 3.0, 30.0, 1e3]))
    c = shape[-1]
    if family == "nll_loss":  # log-probabilities, but any real values are allowed
        x = np.log(rng.dirichlet(np.ones(c), size=shape[:-1])).astype(dtype)
    else:
        x = make_values(rng, shape, dtype, specials, scale)
    ignore_index = draw(st.sampled_from([-100, -100, 0, -1, c + 5]))
    t = rng.integers(0, c, size=shape[:-1])
    if t.size and draw(st.booleans()):
        t.reshape(-1)[rng.random(t.size) < 0.3] = ignore_index
        if ignore_index >= 0:  # valid classes equal to ignore_index are ignored too
            pass
    t = t.astype(draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.int16]))
                 if t.size == 0 or (t.min() >= 0 and t.max() < 128) else np.int64)
    kw = {"ignore_index": ignore_index,
          "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
          "num_threads": draw(st.sampled_from([None, 1, 2, 4]))}
    soft = "soft" in opts and ignore_index == -100 and draw(st.integers(0, 4)) == 0
    if soft:
        t = rng.dirichlet(np.ones(c), size=shape[:-1]).astype(
            draw(st.sampled_from([np.float32, np.float64])))
        x = make_values(rng, shape, dtype, False, scale)  # finite logits with soft targets
    if "weight" in opts and draw(st.booleans()):
        kw["weight"] = rng.uniform(0.1, 2.0, size=c)
    if "label_smoothing" in opts and draw(st.booleans()):
        kw["label_smoothing"] = float(draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])))
    if "z_loss" in opts and draw(st.booleans()):
        kw["z_loss"] = float(draw(st.sampled_from([0.0, 1e-4, 0.1])))
    if "softcap" in opts and draw(st.booleans()):
        kw["softcap"] = float(draw(st.sampled_from([1.0, 15.0, 30.0])))
    if "sample_weight" in opts and draw(st.booleans()):
        kw["sample_weight"] = rng.uniform(0.0, 2.0, size=shape[:-1])
    if "gamma" in opts:
        kw["gamma"] = float(draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])))
    if "alpha" in opts:
        a = draw(st.sampled_from(["none", "float", "array"]))
        if a == "float":
            kw["alpha"] = 0.25
        elif a == "array":
            kw["alpha"] = rng.uniform(0.1, 1.0, size=c)
    grad_output = 1.0
    if form == "grad":
        if kw["reduction"] == "none" and draw(st.booleans()):
            grad_output = rng.uniform(-2, 2, size=shape[:-1])
        else:
            grad_output = float(draw(st.sampled_from([1.0, 0.5, -3.0])))
    lay = draw(LAYOUTS)
    return dict(x=x, t=t, kw=kw, form=form, fault=fault, soft=soft, rng=rng,
                grad_output=grad_output, lay=lay, tlay=draw(LAYOUTS),
                out_kind=draw(st.sampled_from([None, None, "fresh", "inplace"])))


def apply_class_fault(case, family):
    """Mutate the case for its fault; return the expected exception type (or None)."""
    fault, rng, kw = case["fault"], case["rng"], case["kw"]
    x, t = case["x"], case["t"]
    c = x.shape[-1]
    opts = CLASS_FAMILIES[family]
    if fault == "logits_dtype":
        clean = np.nan_to_num(x.astype(np.float64), posinf=1.0, neginf=-1.0)
        case["x"] = clean.astype(BAD_DTYPES[rng.integers(len(BAD_DTYPES))])
        return TypeError
    if fault == "target_shape":
        case["t"] = np.zeros(t.shape[:-1] + (t.shape[-1] + 1,) if t.ndim else (2,),
                             dtype=t.dtype)
        return ValueError
    if fault == "target_oob" and not case["soft"] and t.size:
        tt = t.astype(np.int64)
        bad = int(rng.choice([c, c + 1000, -1, -2**40, 2**40]))
        if bad == kw["ignore_index"]:
            bad = c + 1 if bad != c + 1 else c + 2
        tt.reshape(-1)[rng.integers(t.size)] = bad
        case["t"] = tt
        return IndexError
    if fault == "target_dtype":
        case["t"] = np.zeros(t.shape, dtype=[np.bool_, np.complex64, object][rng.integers(3)])
        return TypeError
    if fault == "target_float" and not case["soft"]:
        case["t"] = t.astype(np.float64) if t.dtype.kind != "f" else t
        return TypeError if "soft" not in opts else ValueError  # soft needs logits' shape
    if fault == "reduction":
        kw["reduction"] = ["avg", "MEAN", "", None, "batchmean"][rng.integers(5)]
        return ValueError
    if fault == "weight_shape" and "weight" in opts:
        kw["weight"] = np.ones(c + 1)
        return ValueError
    if fault == "zero_classes":
        case["x"] = np.zeros(x.shape[:-1] + (0,), dtype=x.dtype)
        return ValueError
    if fault == "logits_0d":
        case["x"] = np.float64(1.0)
        case["t"] = np.int64(0)
        return ValueError
    if fault == "threads0":
        kw["num_threads"] = 0
        return ValueError
    if fault == "label_smoothing" and "label_smoothing" in opts:
        kw["label_smoothing"] = float(rng.choice([-0.1, 1.5, np.nan]))
        return ValueError
    if fault == "softcap" and "softcap" in opts:
        kw["softcap"] = float(rng.choice([0.0, -1.0, np.nan]))
        return ValueError
    if fault == "z_loss" and "z_loss" in opts:
        kw["z_loss"] = -1.0
        return ValueError
    if fault == "gamma" and "gamma" in opts:
        kw["gamma"] = -0.5
        return ValueError
    if fault == "soft_ignore" and case["soft"]:
        kw["ignore_index"] = 3
        return ValueError
    if fault == "grad_output" and case["form"] == "grad":
        lead = x.shape[:-1]
        case["grad_output"] = np.ones(lead + (2,))
        return ValueError
    if fault.startswith("out_") and case["form"] != "loss":
        cdt = result_dtype(x)
        good = np.empty(x.shape, dtype=cdt)
        if fault == "out_shape":
            case["out"] = np.empty(x.shape + (1,), dtype=cdt)
        elif fault == "out_dtype":
            case["out"] = np.empty(x.shape, dtype=np.float64 if cdt == np.float32
                                   else np.float32)
        elif fault == "out_noncontig":
            case["out"] = (layout(good, "strided") if good.size > 1
                           else np.empty(x.shape + (2,), dtype=cdt))
        else:
            case["out"] = layout(good, "readonly")
        return ValueError
    case["fault"] = "none"
    return None


@pytest.mark.parametrize("family", list(CLASS_FAMILIES))
@FUZZ
@given(data=st.data())
def test_fuzz_class_losses(family, data):
    case = data.draw(class_case(family))
    simd = data.draw(SIMD)
    expect_exc = apply_class_fault(case, family)
    form = case["form"]
    name = {"loss": family, "grad": family + "_grad", "and_grad": family + "_and_grad"}[form]
    fn = getattr(xent, name)
    x, t, kw = case["x"], case["t"], dict(case["kw"])
    args = [layout(x, case["lay"]) if isinstance(x, np.ndarray) and x.dtype != object else x,
            layout(t, case["tlay"]) if isinstance(t, np.ndarray) and t.ndim else t]
    if form == "grad":
        args.append(case["grad_output"])
    if "out" in case:
        kw["out"] = case["out"]
    elif form != "loss" and case["out_kind"] == "fresh" and expect_exc is None:
        kw["out"] = np.full(x.shape, 5.0, dtype=result_dtype(x))
    if expect_exc is not None:
        run(fn, args, kw, expect_exc, None, simd)
        return

    cdt, x64 = conv(x)
    rdt = result_dtype(x)  # array results (gradients, "none" losses)
    keys = {"ignore_index"} | set(CLASS_FAMILIES[family]) - {"soft"}
    rkw = {k: v for k, v in kw.items() if k in keys}
    t_ref = np.asarray(t, dtype=cdt) if case["soft"] else t  # soft targets: logits' dtype
    red = kw["reduction"]
    summands = ref.rows(family, x64, t_ref, **rkw).loss
    exp_loss, exp_grad = getattr(ref, family + "_and_grad")(
        x64, t_ref, reduction=red, grad_output=case["grad_output"] if form == "grad" else 1.0,
        **rkw)

    def check_loss(loss):
        if red == "none":
            assert isinstance(loss, np.ndarray) and loss.dtype == rdt
            check_close(loss, exp_loss, rdt, f"{name} loss")
        else:
            check_scalar_dtype(loss, cdt)
            check_close(loss, exp_loss, cdt, f"{name} loss", summands)

    def check_grad(g):
        assert isinstance(g, np.ndarray) and g.dtype == rdt and g.shape == x.shape
        if "out" in kw:
            assert g is kw["out"]
        check_close(g, exp_grad, rdt, f"{name} grad")
        if not case["soft"] and t.size:  # ignored rows: exactly zero
            ign = np.asarray(t) == kw["ignore_index"]
            assert np.all(g[ign] == 0)

    def check(res):
        if form == "loss":
            check_loss(res)
        elif form == "grad":
            check_grad(res)
        else:
            loss, g = res
            check_loss(loss)
            check_grad(g)

    run(fn, args, kw, None, check, simd)

    if form == "and_grad" and case["out_kind"] == "inplace" and rdt == x.dtype:
        buf = np.array(x, copy=True)  # out=logits writes the gradient in place
        kw2 = {k: v for k, v in kw.items() if k != "out"}
        loss, g = fn(buf, t, out=buf, **kw2)
        assert g is buf
        check_loss(loss)
        check_grad(g)


# ---------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("name", ["perplexity", "expected_calibration_error", "token_scores"])
@FUZZ
@given(
    shape=shapes(),
    dtype=FLOAT_DTYPES,
    lay=LAYOUTS,
    seed=st.integers(0, 2**32 - 1),
    ignore_index=st.sampled_from([-100, 1]),
    fault=st.sampled_from(["none"] * 6 + ["logits_dtype", "target_oob", "target_float",
                                           "target_shape", "zero_classes", "n_bins",
                                           "top_k", "temperature"]),
    n_bins=st.sampled_from([1, 3, 15]),
    top_k=st.integers(0, 4),
    temperature=st.sampled_from([1.0, 0.5, 2.0]),
    with_target=st.booleans(),
    simd=SIMD,
)
def test_fuzz_metrics(name, shape, dtype, lay, seed, ignore_index, fault, n_bins, top_k,
                      temperature, with_target, simd):
    fn = getattr(xent, name)
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = make_values(rng, shape, dtype, False, 3.0)
    t = rng.integers(0, c, size=shape[:-1])
    if t.size:
        t.reshape(-1)[rng.random(t.size) < 0.2] = ignore_index
    kw = {"ignore_index": ignore_index}
    if name == "expected_calibration_error":
        kw["n_bins"] = n_bins
    if name == "token_scores":
        top_k = min(top_k, c)
        kw.update(top_k=top_k, temperature=temperature)
    expect_exc = None
    if fault == "logits_dtype":
        x, expect_exc = x.astype(np.int64), TypeError
    elif fault == "target_oob" and t.size:
        t = t.copy()
        t.reshape(-1)[0] = c if c != ignore_index else c + 1
        expect_exc = IndexError
    elif fault == "target_float" and t.size:
        t, expect_exc = t.astype(np.float64), TypeError
    elif fault == "target_shape":
        t, expect_exc = np.zeros(shape[:-1] + (3,), dtype=np.int64), ValueError
    elif fault == "zero_classes":
        x, t, expect_exc = np.zeros(shape[:-1] + (0,), dtype=dtype), t, ValueError
    elif fault == "n_bins" and name == "expected_calibration_error":
        kw["n_bins"], expect_exc = int(rng.choice([0, -1])), ValueError
    elif fault == "top_k" and name == "token_scores":
        kw["top_k"], expect_exc = int(rng.choice([c + 1, -1])), ValueError
    elif fault == "temperature" and name == "token_scores":
        kw["temperature"], expect_exc = float(rng.choice([0.0, -1.0])), ValueError
    if name == "token_scores" and not with_target and expect_exc in (None, IndexError,
                                                                     TypeError):
        if fault in ("target_oob", "target_float"):
            return
        t = None
    args = (layout(x, lay), t)
    if expect_exc is not None:
        run(fn, args, kw, expect_exc, None, simd)
        return
    cdt, x64 = conv(x)

    def check(res):
        if name == "perplexity":
            check_scalar_dtype(res, np.float64)
            check_close(res, ref.perplexity(x64, t, ignore_index=ignore_index), cdt, name)
        elif name == "expected_calibration_error":
            check_scalar_dtype(res, np.float64)
            exp = ref.expected_calibration_error(x64, t, n_bins=n_bins,
                                                 ignore_index=ignore_index)
            conf = ref.softmax(x64).reshape(-1, c).max(axis=1)
            edges = np.linspace(0, 1, n_bins + 1)
            near_edge = conf.size and np.min(np.abs(conf[:, None] - edges[None, :])) < 1e-5
            if np.isnan(exp):
                assert np.isnan(res)
            elif near_edge and cdt == np.float32:
                assert 0.0 <= res <= 1.0
            else:
                check_close(res, exp, cdt, name)
        else:
            # logits / temperature is rounded to the computation dtype, as in xent
            exp = ref.token_scores(np.asarray(x, dtype=cdt), t, **kw)
            lead = shape[:-1]
            rdt = x.dtype if x.dtype == np.float16 else cdt  # 16-bit results keep their dtype
            for field in ("logsumexp", "entropy"):
                v = getattr(res, field)
                assert v.shape == lead and v.dtype == rdt, field
                check_close(v, getattr(exp, field), rdt, field)
            if t is None:
                assert res.logprob is None and res.rank is None
            else:
                check_close(res.logprob, exp.logprob, rdt, "logprob")
                assert res.rank.dtype == np.int64 and res.rank.shape == lead
                np.testing.assert_array_equal(res.rank, exp.rank)
            assert res.top_indices.shape == lead + (kw["top_k"],)
            assert res.top_indices.dtype == np.int64
            check_close(res.top_logprobs, exp.top_logprobs, rdt, "top_logprobs")
            np.testing.assert_array_equal(res.top_indices, exp.top_indices)

    run(fn, args, kw, None, check, simd)


# ---------------------------------------------------------------------------- elementwise / KL

ELEMENTWISE = ["binary_cross_entropy_with_logits", "sigmoid_focal_loss", "binary_cross_entropy",
               "kl_div_with_logits"]


@pytest.mark.parametrize("family", ELEMENTWISE)
@FUZZ
@given(
    shape=shapes(),
    dtype=FLOAT_DTYPES,
    lay=LAYOUTS,
    seed=st.integers(0, 2**32 - 1),
    form=st.sampled_from(["loss", "grad", "and_grad"]),
    reduction=st.sampled_from(["mean", "sum", "none", "batchmean"]),
    fault=st.sampled_from(["none"] * 6 + ["logits_dtype", "target_shape", "reduction",
                                           "prob_range", "temperature", "out_shape",
                                           "out_readonly", "threads0"]),
    opt=st.integers(0, 3),
    simd=SIMD,
)
def test_fuzz_elementwise(family, shape, dtype, lay, seed, form, reduction, fault, opt, simd):
    fn = getattr(xent, {"loss": family, "grad": family + "_grad",
                        "and_grad": family + "_and_grad"}[form])
    rng = np.random.default_rng(seed)
    kl = family == "kl_div_with_logits"
    if reduction == "batchmean" and not kl:
        reduction = "mean"
    if family == "binary_cross_entropy":
        x = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
        if x.size and opt == 0:
            x.reshape(-1)[0] = rng.choice([0.0, 1.0])  # clamped log terms
    else:
        x = make_values(rng, shape, dtype, False, 4.0)
    if kl:
        y = make_values(rng, shape, dtype, False, 4.0)
    else:
        y = rng.uniform(0.0, 1.0, size=shape)
        if opt == 1:
            y = np.round(y)
        y = y.astype(dtype)
    kw = {"reduction": reduction, "num_threads": [None, 1, 2, 3][opt]}
    rkw = {}
    if family in ("binary_cross_entropy_with_logits", "binary_cross_entropy") and opt == 2:
        kw["weight"] = rkw["weight"] = rng.uniform(0.1, 2.0, size=shape[-1:])
    if family == "binary_cross_entropy_with_logits" and opt == 3:
        kw["pos_weight"] = rkw["pos_weight"] = rng.uniform(0.1, 3.0, size=shape[-1:])
    if family == "sigmoid_focal_loss":
        kw["alpha"] = rkw["alpha"] = [0.25, -1.0, 0.5, 0.25][opt]
        kw["gamma"] = rkw["gamma"] = [2.0, 0.0, 1.0, 3.0][opt]
    if kl:
        kw["temperature"] = rkw["temperature"] = [1.0, 2.0, 0.5, 4.0][opt]
    grad_output = 1.0 if reduction != "none" or opt % 2 else rng.uniform(
        -2, 2, size=shape[:-1] if kl else shape)
    expect_exc = None
    if fault == "logits_dtype":
        x, expect_exc = x.astype(np.int32), TypeError
    elif fault == "target_shape":
        y, expect_exc = np.zeros(shape[:-1] + (shape[-1] + 1,), dtype=dtype), ValueError
    elif fault == "reduction":
        kw["reduction"], expect_exc = "avg", ValueError
    elif fault == "prob_range" and family == "binary_cross_entropy" and x.size:
        bad = [1.5, -0.5, np.nan][opt % 3]
        if opt % 2:
            x = x.copy()
            x.reshape(-1)[0] = bad
        else:
            y = y.copy()
            y.reshape(-1)[0] = bad
        expect_exc = ValueError
    elif fault == "temperature" and kl:
        kw["temperature"], expect_exc = [0.0, -1.0][opt % 2], ValueError
    elif fault in ("out_shape", "out_readonly") and form != "loss":
        cdt = result_dtype(x)
        kw["out"] = (np.empty(shape + (1,), dtype=cdt) if fault == "out_shape"
                     else layout(np.empty(shape, dtype=cdt), "readonly"))
        expect_exc = ValueError
    elif fault == "threads0":
        kw["num_threads"], expect_exc = 0, ValueError
    args = [layout(x, lay), layout(y, lay)]
    if form == "grad":
        args.append(grad_output)
    if expect_exc is not None:
        run(fn, args, kw, expect_exc, None, simd)
        return

    cdt, x64 = conv(x)
    rdt = result_dtype(x)  # array results (gradients, "none" losses)
    y64 = np.asarray(y, dtype=cdt).astype(np.float64)
    summands = ref.rows(family, x64, y64, **rkw).loss
    exp_loss, exp_grad = getattr(ref, family + "_and_grad")(
        x64, y64, reduction=reduction, grad_output=grad_output if form == "grad" else 1.0,
        **rkw)

    def check(res):
        loss = res if form == "loss" else (res[0] if form == "and_grad" else None)
        grad = res if form == "grad" else (res[1] if form == "and_grad" else None)
        if loss is not None:
            if reduction == "none":
                assert isinstance(loss, np.ndarray) and loss.dtype == rdt
                check_close(loss, exp_loss, rdt, family)
            else:
                check_scalar_dtype(loss, cdt)
                check_close(loss, exp_loss, cdt, family, summands)
        if grad is not None:
            assert isinstance(grad, np.ndarray) and grad.dtype == rdt
            check_close(grad, exp_grad, rdt, family + " grad")

    run(fn, args, kw, None, check, simd)


# ---------------------------------------------------------------------------- aliasing

# function -> the arguments `out` may share memory with ("logits": the first argument)
ALIAS_FAMILIES = {
    "class": {
        "cross_entropy": ["logits", "target", "probs", "weight", "sample_weight"],
        "nll_loss": ["logits", "target", "weight"],
        "focal_loss": ["logits", "target", "alpha"],
    },
    "binary": {
        "binary_cross_entropy_with_logits": ["logits", "bin_target", "weight", "pos_weight"],
        "binary_cross_entropy": ["logits", "bin_target", "weight"],
        "sigmoid_focal_loss": ["logits", "bin_target"],
        "kl_div_with_logits": ["logits", "teacher"],
    },
    "primitive": {"logsumexp": ["logits"], "softmax": ["logits"], "log_softmax": ["logits"]},
}


def _alias_shift(mode, pick, out_nbytes, op_nbytes, row_bytes, align):
    """Byte offset of the operand from `out`, a multiple of `align`, so that they overlap."""
    lo = -((op_nbytes - 1) // align)  # in units of align: -op_nbytes < k * align < out_nbytes
    hi = (out_nbytes - 1) // align
    if mode == "same_start":
        k = 0
    elif mode in ("row_ahead", "row_behind"):
        k = (row_bytes // align) * (1 if mode == "row_ahead" else -1)
    elif mode == "out_tail":
        k = hi
    else:
        k = lo + pick % (hi - lo + 1)
    return max(lo, min(hi, k)) * align


@st.composite
def alias_case(draw, family):
    fn_family = draw(st.sampled_from(sorted(ALIAS_FAMILIES[family])))
    operand = draw(st.sampled_from(ALIAS_FAMILIES[family][fn_family]))
    primitive = family == "primitive"
    form = "" if primitive else draw(st.sampled_from(["_grad", "_and_grad", "_and_grad"]))
    if operand == "grad_output":
        form = "_grad"
    if not primitive and form == "_grad" and draw(st.integers(0, 3)) == 0:
        operand = "grad_output"  # a per-row / per-element grad_output (reduction "none")
    lead = draw(st.lists(st.integers(1, 5), min_size=0 if primitive else 1, max_size=3))
    c = draw(st.one_of(st.integers(1, 9), st.sampled_from([16, 17, 33, 70])))
    return dict(
        fn=fn_family + form, family=fn_family, operand=operand, shape=tuple(lead) + (c,),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        inplace=operand != "logits" and not primitive and draw(st.integers(0, 2)) == 0,
        shift_mode=draw(st.sampled_from(["same_start", "row_ahead", "row_behind", "out_tail",
                                         "any", "any"])),
        shift_pick=draw(st.integers(0, 2**20)),
        reduction=draw(st.sampled_from(["none", "mean", "sum"])),
        nt=draw(st.sampled_from([None, 1, 2, 4])),
        seed=draw(st.integers(0, 2**32 - 1)),
        axis=draw(st.integers(-1, len(lead))),
        extra=draw(st.integers(0, 3)),
    )


def _alias_values(case, rng):
    """Valid values of every argument (owned arrays), before any aliasing."""
    fam, shape, dt = case["family"], case["shape"], case["dtype"]
    c, lead = shape[-1], shape[:-1]
    probs_only = fam == "binary_cross_entropy"  # every value that may land in probs: (0, 1)

    def pos(size):
        return (rng.uniform(0.05, 0.95, size) if probs_only else rng.uniform(0.25, 2.0, size)
                ).astype(dt)

    v = {"logits": (rng.uniform(0.02, 0.98, shape) if probs_only
                    else rng.standard_normal(shape) * 3).astype(dt)}
    if fam in ("cross_entropy", "nll_loss", "focal_loss"):
        ignore = c + 3  # non-negative: its bits are a tiny float where they share the logits
        t = rng.integers(0, c, size=lead)
        t.reshape(-1)[rng.random(t.size) < 0.2] = ignore
        v["target"], v["ignore_index"] = t.astype(np.int64), ignore
        v["probs"] = rng.dirichlet(np.ones(c), size=lead).astype(dt)
        v["weight"] = v["alpha"] = pos(c)
        v["sample_weight"] = pos(lead)
        v["grad_output"] = (rng.uniform(-2, 2, lead)).astype(dt)
    elif fam == "kl_div_with_logits":
        v["teacher"] = (rng.standard_normal(shape) * 3).astype(dt)
        v["grad_output"] = (rng.uniform(-2, 2, lead)).astype(dt)
    elif fam != "logsumexp" and fam not in ("softmax", "log_softmax"):
        v["bin_target"] = rng.uniform(0.0, 1.0, shape).astype(dt)
        v["weight"] = pos(c if case["extra"] % 2 else shape)
        v["pos_weight"] = pos(c)
        v["grad_output"] = pos(shape) if probs_only else rng.uniform(-2, 2, shape).astype(dt)
    return v


def build_alias_call(case):
    """(args, kwargs, out, arena): `out` overlaps case["operand"] inside one arena."""
    rng = np.random.default_rng(case["seed"])
    fam, shape, dt, op = case["family"], case["shape"], np.dtype(case["dtype"]), case["operand"]
    v = _alias_values(case, rng)
    if fam == "logsumexp":
        ax = case["axis"] % len(shape)
        out_shape = shape[:ax] + shape[ax + 1:]
    else:
        out_shape = shape
    out_nbytes = int(np.prod(out_shape)) * dt.itemsize
    src = v[op]
    align = max(dt.itemsize, src.dtype.itemsize)
    row_bytes = shape[-1] * dt.itemsize
    s = _alias_shift(case["shift_mode"], case["shift_pick"], out_nbytes, src.nbytes, row_bytes,
                     align)
    out_off = max(0, -s)
    arena = Arena(max(out_off + out_nbytes, out_off + s + src.nbytes))
    out = arena.at(out_off, out_shape, dt)
    if case["inplace"]:  # out is the logits: the documented in-place form
        out[...] = v["logits"]
        v["logits"] = out
    aliased = arena.at(out_off + s, src.shape, src.dtype)
    aliased[...] = src  # written last: its values are intact, out's are whatever they became
    v[op] = aliased
    kw = {"num_threads": case["nt"]}
    if fam in ("logsumexp", "softmax", "log_softmax"):
        kw["axis"] = case["axis"] if fam != "logsumexp" else case["axis"] % len(shape)
        return [v["logits"]], kw, out, arena
    red = case["reduction"]
    if op == "grad_output" or (case["fn"].endswith("_grad") and not case["fn"].endswith(
            "_and_grad") and case["extra"] == 0):
        red = "none"
    kw["reduction"] = red
    if fam == "kl_div_with_logits":
        kw["reduction"] = "batchmean" if red == "mean" else red
        kw["temperature"] = [1.0, 2.0, 0.5, 1.0][case["extra"]]
        args = [v["logits"], v["teacher"]]
    elif fam in ("cross_entropy", "nll_loss", "focal_loss"):
        soft = op == "probs" or (fam == "cross_entropy" and case["extra"] == 3 and op not in (
            "target", "sample_weight", "weight"))
        args = [v["logits"], v["probs"] if soft else v["target"]]
        if not soft:
            kw["ignore_index"] = v["ignore_index"]
        if fam == "focal_loss":
            kw["gamma"] = [2.0, 0.0, 1.5, 3.0][case["extra"]]
            if op == "alpha" or case["extra"] == 1:
                kw["alpha"] = v["alpha"]
        else:
            if op == "weight" or case["extra"] == 2:
                kw["weight"] = v["weight"]
        if fam == "cross_entropy":
            if op == "sample_weight" or case["extra"] == 1:
                kw["sample_weight"] = v["sample_weight"]
            if case["extra"] == 2:
                kw["label_smoothing"] = 0.1
            if case["extra"] == 3 and not soft:
                kw["softcap"] = 5.0
    else:
        args = [v["logits"], v["bin_target"]]
        if fam != "sigmoid_focal_loss" and (op == "weight" or case["extra"] == 1):
            kw["weight"] = v["weight"]
        if fam == "binary_cross_entropy_with_logits" and (op == "pos_weight"
                                                          or case["extra"] == 2):
            kw["pos_weight"] = v["pos_weight"]
        if fam == "sigmoid_focal_loss":
            kw["gamma"] = [2.0, 0.0, 1.0, 3.0][case["extra"]]
    if case["fn"].endswith("_grad") and not case["fn"].endswith("_and_grad"):
        args.append(v["grad_output"] if kw["reduction"] == "none" else 0.5)
    return args, kw, out, arena


def check_alias_case(case, simd):
    fn = getattr(xent, case["fn"])
    args, kw, out, arena = build_alias_call(case)
    owned = snapshot([a for a in list(args) + list(kw.values())
                      if isinstance(a, np.ndarray) and a.base is None])
    with use_simd(simd):
        # the same call on copies of every argument (taken before the aliased call)
        expected = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args],
                      **{k: (a.copy() if isinstance(a, np.ndarray) else a)
                         for k, a in kw.items()})
        arena_before = arena.buf.copy()
        got = fn(*args, out=out, **kw)
    result = got[1] if isinstance(got, tuple) else got
    assert result is out, "the result is not `out`"
    if isinstance(got, tuple):
        assert_same(got[0], expected[0], "loss", rounding=True)
        expected = expected[1]
    assert_same(result, expected, case["fn"], rounding=True)
    arena.assert_unchanged_outside(arena_before, out)
    assert_unmodified(owned)


@pytest.mark.parametrize("family", ["binary", "primitive"])
@FUZZ
@given(data=st.data())
def test_fuzz_aliasing(family, data):
    check_alias_case(data.draw(alias_case(family)), data.draw(SIMD))


@FUZZ
@given(data=st.data())
def fuzz_aliasing_class_losses(data):
    """The class-target families; run in a child interpreter (see the test below)."""
    case = data.draw(alias_case("class"))
    simd = data.draw(SIMD)
    print("case", {k: v for k, v in case.items() if k != "dtype"}, np.dtype(case["dtype"]),
          simd, flush=True)  # the last one printed names a case that crashed
    check_alias_case(case, simd)


def test_fuzz_aliasing_class_losses():
    """cross_entropy / nll_loss / focal_loss gradient forms with an aliased `out`.

    `out` over the int64 targets made the kernels index memory with gradient bits
    (a segfault, issue 14), so hypothesis runs these examples in a child interpreter
    (tests/_hardening_child.py): a crash fails this test instead of killing pytest.
    """
    import _hardening_child as child

    child.assert_child_ok("fuzz_aliasing_class", timeout=120 + N_EXAMPLES)


# ---------------------------------------------------------------------------- every export


def test_every_public_function_is_fuzzed():
    """New public callables must be added to one of the fuzz tables above."""
    covered = {"logsumexp", "softmax", "log_softmax", "perplexity",
               "expected_calibration_error", "token_scores", "get_num_threads",
               "set_num_threads", "show_config", "openmp_enabled",
               # tests/test_linear_ce.py (compositions of the fuzzed kernels)
               "linear_cross_entropy", "linear_cross_entropy_and_grad", "linear_token_scores"}
    for fam in list(CLASS_FAMILIES) + ELEMENTWISE:
        covered |= {fam, fam + "_grad", fam + "_and_grad"}
    public = {n for n in xent.__all__ if callable(getattr(xent, n))
              and not isinstance(getattr(xent, n), type)}
    missing = sorted(public - covered)
    assert not missing, f"not covered by tests/test_fuzz.py: {missing}"
