"""Error paths of the cross-entropy family: exception type and message."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xent

CE_FUNCS = [xent.cross_entropy, xent.cross_entropy_grad, xent.cross_entropy_and_grad]
NLL_FUNCS = [xent.nll_loss, xent.nll_loss_grad, xent.nll_loss_and_grad]
ALL_FUNCS = CE_FUNCS + NLL_FUNCS + [xent.perplexity]
GRAD_FUNCS = [xent.cross_entropy_grad, xent.cross_entropy_and_grad, xent.nll_loss_grad,
              xent.nll_loss_and_grad]


def _ok():
    x = np.zeros((2, 3, 4), np.float32)
    t = np.zeros((2, 3), np.int64)
    return x, t


def _name(f):
    return f.__name__


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64,
                                   np.complex128, object])
def test_non_float_logits_type_error(fn, dtype):
    x = np.zeros((2, 4), dtype=dtype)
    t = np.zeros(2, np.int64)
    with pytest.raises(TypeError, match=re.escape(str(np.dtype(dtype)))):
        fn(x, t)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
@pytest.mark.parametrize("dtype", [np.bool_, np.complex128, object])
def test_bad_target_dtype_type_error(fn, dtype):
    x = np.zeros((2, 4), np.float32)
    t = np.zeros(2, dtype=dtype)
    with pytest.raises(TypeError, match=re.escape(str(np.dtype(dtype)))):
        fn(x, t)


@pytest.mark.parametrize("fn", NLL_FUNCS + [xent.perplexity], ids=_name)
@pytest.mark.parametrize("tdtype", [np.float16, np.float32, np.float64])
def test_floating_target_rejected_where_class_only(fn, tdtype):
    x = np.zeros((2, 4), np.float32)
    for t in (np.zeros((2, 4), tdtype), np.zeros(2, tdtype)):
        with pytest.raises(TypeError, match="float"):
            fn(x, t)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
@pytest.mark.parametrize("tshape", [(2,), (3, 2), (2, 3, 1), (6,), ()])
def test_class_target_shape_mismatch(fn, tshape):
    x, _ = _ok()
    t = np.zeros(tshape, np.int64)
    with pytest.raises(ValueError) as ei:
        fn(x, t)
    msg = str(ei.value)
    assert str(tshape) in msg and "(2, 3" in msg, msg


@pytest.mark.parametrize("fn", CE_FUNCS, ids=_name)
@pytest.mark.parametrize("qshape", [(2, 3), (2, 3, 5), (3, 2, 4), (2, 3, 4, 1)])
def test_probability_target_shape_mismatch(fn, qshape):
    x, _ = _ok()
    q = np.full(qshape, 0.25, np.float32)
    with pytest.raises(ValueError) as ei:
        fn(x, q)
    msg = str(ei.value)
    assert str(qshape) in msg and str(x.shape) in msg, msg


@pytest.mark.parametrize("fn", CE_FUNCS, ids=_name)
def test_probability_targets_with_ignore_index(fn):
    x, _ = _ok()
    q = np.full(x.shape, 0.25, np.float32)
    with pytest.raises(ValueError, match="ignore_index"):
        fn(x, q, ignore_index=0)
    fn(x, q, ignore_index=-100)  # the default value is fine


@pytest.mark.parametrize("fn", CE_FUNCS + NLL_FUNCS, ids=_name)
@pytest.mark.parametrize("wshape", [(3,), (5,), (1, 4), (4, 1), ()])
def test_weight_shape(fn, wshape):
    x, t = _ok()
    with pytest.raises(ValueError) as ei:
        fn(x, t, weight=np.ones(wshape, np.float32))
    assert "(4,)" in str(ei.value) and str(wshape) in str(ei.value)


@pytest.mark.parametrize("fn", CE_FUNCS, ids=_name)
@pytest.mark.parametrize("swshape", [(6,), (2, 3, 4), (3, 2), ()])
def test_sample_weight_shape(fn, swshape):
    x, t = _ok()
    with pytest.raises(ValueError) as ei:
        fn(x, t, sample_weight=np.ones(swshape, np.float32))
    assert "(2, 3)" in str(ei.value) and str(swshape) in str(ei.value)


@pytest.mark.parametrize("fn", CE_FUNCS, ids=_name)
def test_sample_weight_dtype(fn):
    x, t = _ok()
    with pytest.raises(TypeError, match="bool"):
        fn(x, t, sample_weight=np.ones((2, 3), bool))


@pytest.mark.parametrize("fn", CE_FUNCS + NLL_FUNCS, ids=_name)
@pytest.mark.parametrize("reduction", ["batchmean", "MEAN", "", None, 1])
def test_bad_reduction(fn, reduction):
    x, t = _ok()
    with pytest.raises(ValueError, match="reduction") as ei:
        fn(x, t, reduction=reduction)
    assert repr(reduction) in str(ei.value)


@pytest.mark.parametrize("fn", CE_FUNCS, ids=_name)
@pytest.mark.parametrize(("option", "value"), [
    ("label_smoothing", -0.1), ("label_smoothing", 1.5), ("label_smoothing", float("nan")),
    ("softcap", 0.0), ("softcap", -2.0), ("softcap", float("nan")),
    ("z_loss", -1e-4), ("z_loss", float("nan")),
])
def test_bad_option_values(fn, option, value):
    x, t = _ok()
    with pytest.raises(ValueError, match=option) as ei:
        fn(x, t, **{option: value})
    assert repr(value) in str(ei.value)


@pytest.mark.parametrize("fn", CE_FUNCS, ids=_name)
def test_option_boundaries_accepted(fn):
    x, t = _ok()
    fn(x, t, label_smoothing=0.0)
    fn(x, t, label_smoothing=1.0)
    fn(x, t, z_loss=0.0)
    fn(x, t, softcap=1e-3)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
@pytest.mark.parametrize("shape", [(2, 0), (0,), (3, 2, 0)])
def test_zero_classes(fn, shape):
    x = np.zeros(shape, np.float32)
    t = np.zeros(shape[:-1], np.int64)
    with pytest.raises(ValueError, match="class"):
        fn(x, t)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
def test_zero_dim_logits(fn):
    with pytest.raises(ValueError, match="0-d"):
        fn(np.float32(1.0), np.int64(0))


@pytest.mark.parametrize("fn", [xent.cross_entropy_grad, xent.nll_loss_grad], ids=_name)
def test_bad_grad_output(fn):
    x, t = _ok()
    for red in ("mean", "sum"):
        with pytest.raises(ValueError, match="scalar"):
            fn(x, t, np.ones((2, 3)), reduction=red)
    for shape in [(3, 2), (6,), (2, 3, 4), (2, 1)]:
        with pytest.raises(ValueError) as ei:
            fn(x, t, np.ones(shape), reduction="none")
        assert str(shape) in str(ei.value) and "(2, 3)" in str(ei.value)
    with pytest.raises(TypeError, match="complex"):
        fn(x, t, 1j)
    # accepted forms
    fn(x, t, np.ones((2, 3)), reduction="none")
    fn(x, t, np.float64(2.0), reduction="none")
    fn(x, t, np.array(2.0), reduction="mean")


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
def test_num_threads(fn):
    x, t = _ok()
    with pytest.raises(ValueError, match="num_threads"):
        fn(x, t, num_threads=0)
    with pytest.raises(TypeError, match="num_threads"):
        fn(x, t, num_threads=1.5)
    fn(x, t, num_threads=1)
    fn(x, t, num_threads=-1)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
def test_ignore_index_type(fn):
    x, t = _ok()
    with pytest.raises(TypeError, match="ignore_index"):
        fn(x, t, ignore_index=1.5)


@pytest.mark.parametrize("fn", GRAD_FUNCS, ids=_name)
def test_bad_out(fn):
    x, t = _ok()
    bad = {
        "shape": np.empty((2, 3, 5), np.float32),
        "shape2": np.empty((6, 4), np.float32),
        "dtype": np.empty((2, 3, 4), np.float64),
        "contiguous": np.empty((2, 3, 8), np.float32)[..., ::2],
        "fortran": np.asfortranarray(np.empty((2, 3, 4), np.float32)),
        "readonly": np.empty((2, 3, 4), np.float32),
        "list": [[[0.0] * 4] * 3] * 2,
    }
    bad["readonly"].flags.writeable = False
    for key, out in bad.items():
        with pytest.raises(ValueError, match="out") as ei:
            fn(x, t, out=out)
        msg = str(ei.value)
        if key.startswith("shape"):
            assert str(out.shape) in msg and "(2, 3, 4)" in msg, msg
        elif key == "dtype":
            assert "float64" in msg and "float32" in msg, msg
    good = np.empty((2, 3, 4), np.float32)
    res = fn(x, t, out=good)
    g = res[1] if isinstance(res, tuple) else res
    assert g is good


def test_out_equal_to_readonly_logits():
    x, t = _ok()
    x.flags.writeable = False
    with pytest.raises(ValueError, match="writ"):
        xent.cross_entropy_and_grad(x, t, out=x)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=_name)
def test_errors_leave_inputs_untouched(fn):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    t = np.array([[0, 1, 2], [3, 9, 0]])
    x0, t0 = x.copy(), t.copy()
    with pytest.raises(IndexError):
        fn(x, t)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)
