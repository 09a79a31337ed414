"""xent.linear_cross_entropy(_and_grad) and xent.linear_token_scores (issue 19).

The oracle is the unfused computation: logits ``h @ W.T + b`` formed in float64 from
the (rounded) inputs, then the float64 cross-entropy reference of
benchmarks/reference.py and its closed-form gradient multiplied back through the layer.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import xent
from benchmarks import reference
from xent import _linear

# float32: the products' rounding (inner dimension D or N) on top of the kernel's 1e-5
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

LEAD, D, V = (3, 5), 6, 11

CASES = {
    "mean": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight-ignore-smooth": dict(weight="w", label_smoothing=0.2, ignore=True),
    "ignore7-sum": dict(ignore_index=7, ignore=True, reduction="sum"),
    "zloss-softcap-none": dict(z_loss=1e-2, softcap=2.5, reduction="none", ignore=True),
    "all-options": dict(weight="w", sample_weight="sw", label_smoothing=0.1, z_loss=1e-3,
                        softcap=4.0, ignore=True),
    "soft-targets": dict(soft=True, weight="w", label_smoothing=0.1),
    "soft-sw-none": dict(soft=True, sample_weight="sw", reduction="none"),
}


def _problem(rng, dtype, case, bias=True, lead=LEAD):
    opts = dict(CASES[case])
    soft, ignore = opts.pop("soft", False), opts.pop("ignore", False)
    h = rng.standard_normal(lead + (D,)).astype(dtype)
    w = (rng.standard_normal((V, D)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(V).astype(dtype) if bias else None
    if soft:
        p = rng.random(lead + (V,))
        t = (p / p.sum(-1, keepdims=True)).astype(dtype)
    else:
        t = rng.integers(0, V, lead)
        if ignore:
            t.reshape(-1)[::3] = opts.get("ignore_index", -100)
    if opts.get("weight") == "w":
        opts["weight"] = rng.random(V).astype(dtype) + 0.5
    if opts.get("sample_weight") == "sw":
        opts["sample_weight"] = rng.random(lead).astype(dtype)
    return h, w, b, t, opts


def _reference(h, w, b, t, opts):
    """Loss and the three gradients of the unfused computation, float64."""
    h64, w64 = h.astype(np.float64), w.astype(np.float64)
    x = h64 @ w64.T + (0.0 if b is None else b.astype(np.float64))
    loss = reference.cross_entropy(x, t, **opts)
    g = reference.cross_entropy_grad(x, t, **opts).astype(np.float64).reshape(-1, w.shape[0])
    h2 = h64.reshape(-1, w.shape[1])
    return loss, (g @ w64).reshape(h.shape), g.T @ h2, g.sum(0)


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("case", list(CASES))
def test_linear_ce_matches_unfused(rng, dtype, case, bias):
    h, w, b, t, opts = _problem(rng, dtype, case, bias)
    rtol = RTOL[dtype]
    loss_ref, gh_ref, gw_ref, gb_ref = _reference(h, w, b, t, opts)
    for chunk in (None, 4, 1):  # 4 does not divide the 15 rows
        out = xent.linear_cross_entropy_and_grad(h, w, t, b, chunk_size=chunk, **opts)
        assert len(out) == (4 if bias else 3)
        loss, gh, gw = out[:3]
        assert loss.dtype == dtype and gh.dtype == dtype and gw.dtype == dtype
        assert gh.shape == h.shape and gw.shape == w.shape
        assert_close(loss, loss_ref, rtol=rtol, err_msg=f"loss chunk={chunk}")
        assert_close(gh, gh_ref, rtol=rtol, err_msg=f"grad_hidden chunk={chunk}")
        assert_close(gw, gw_ref, rtol=rtol, err_msg=f"grad_weight chunk={chunk}")
        if bias:
            assert_close(out[3], gb_ref, rtol=rtol, err_msg=f"grad_bias chunk={chunk}")
        fwd = xent.linear_cross_entropy(h, w, t, b, chunk_size=chunk, **opts)
        np.testing.assert_array_equal(fwd, loss)


def test_linear_ce_equals_xent_unfused_and_ignored_rows_zero(rng):
    """Against xent's own cross_entropy_and_grad on materialised logits (float64)."""
    h, w, b, t, opts = _problem(rng, np.float64, "all-options")
    loss, gh, gw, gb = xent.linear_cross_entropy_and_grad(h, w, t, b, chunk_size=2, **opts)
    l0, g = xent.cross_entropy_and_grad(h @ w.T + b, t, **opts)
    g2 = g.reshape(-1, V)
    assert_close(loss, l0)
    assert_close(gh, g @ w)
    assert_close(gw, g2.T @ h.reshape(-1, D))
    assert_close(gb, g2.sum(0))
    assert not gh[t == -100].any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_ce_all_ignored_and_empty(reduction):
    h = np.ones((4, D), np.float32)
    w = np.ones((V, D), np.float32)
    for t, n in ((np.full(4, -100), 4), (np.zeros(0, np.int64), 0)):
        hh = h[:n]
        loss, gh, gw, gb = xent.linear_cross_entropy_and_grad(
            hh, w, t, np.zeros(V, np.float32), reduction=reduction)
        ref = reference.cross_entropy(np.zeros((n, V)), t, reduction=reduction)
        assert_close(loss, ref)  # mean over nothing: NaN, as PyTorch
        assert gh.shape == hh.shape and not gh.any() and not gw.any() and not gb.any()


def test_linear_ce_leading_axes_noncontiguous_promotion(rng):
    h = rng.standard_normal((2, D, 3)).transpose(0, 2, 1)  # (2, 3, D), not contiguous
    w = rng.standard_normal((V, D)).astype(np.float32)
    t = rng.integers(0, V, (2, 3))
    loss, gh, gw = xent.linear_cross_entropy_and_grad(h, w, t, reduction="none")
    assert loss.dtype == np.float64 and loss.shape == (2, 3) and gh.shape == (2, 3, D)
    ref, gh_ref, gw_ref, _ = _reference(h, w.astype(np.float64), None, t,
                                        dict(reduction="none"))
    assert_close(loss, ref)
    assert_close(gh, gh_ref)
    assert_close(gw, gw_ref)
    h16 = h.astype(np.float16)
    w16 = w.astype(np.float16)
    assert xent.linear_cross_entropy(h16, w16, t).dtype == np.float32


def test_linear_ce_inputs_unchanged(rng):
    h, w, b, t, opts = _problem(rng, np.float32, "all-options")
    copies = [a.copy() for a in (h, w, b, t, opts["weight"], opts["sample_weight"])]
    xent.linear_cross_entropy_and_grad(h, w, t, b, chunk_size=4, **opts)
    for a, c in zip((h, w, b, t, opts["weight"], opts["sample_weight"]), copies):
        np.testing.assert_array_equal(a, c)


def test_default_chunk_is_bounded():
    assert _linear.default_chunk_rows(32000, 4, 4096) == _linear.CHUNK_BYTES // 128000
    assert _linear.default_chunk_rows(32000, 4, 100) == 100
    assert _linear.default_chunk_rows(10 ** 9, 8, 100) == 1
    assert _linear.default_chunk_rows(11, 8, 0) == 1


def test_numpy_grad_weight_accumulates_through_tiles(rng, monkeypatch):
    """Chunks after the first add their product a tile of classes at a time."""
    monkeypatch.setattr(_linear, "_ACC_TILE_BYTES", 3 * D * 8)  # 3 classes per tile
    h, w, b, t, opts = _problem(rng, np.float64, "weight-ignore-smooth")
    _, _, gw, _ = xent.linear_cross_entropy_and_grad(h, w, t, b, chunk_size=2, **opts)
    assert_close(gw, _reference(h, w, b, t, opts)[2])


# ---------------------------------------------------------------- errors


def _ok():
    return np.zeros((4, D)), np.zeros((V, D)), np.array([0, 1, 2, 3])


@pytest.mark.parametrize("fn", [xent.linear_cross_entropy, xent.linear_cross_entropy_and_grad])
@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((np.zeros((4, D), np.int32), np.zeros((V, D)), np.zeros(4, int)), {}, TypeError,
     "hidden must be a real floating"),
    ((np.zeros((4, D)), np.zeros((V, D), complex), np.zeros(4, int)), {}, TypeError,
     "linear_weight must be a real floating"),
    ((np.float64(1.0), np.zeros((V, D)), np.zeros(4, int)), {}, ValueError, "0-d"),
    ((np.zeros((4, D)), np.zeros(D), np.zeros(4, int)), {}, ValueError, r"shape \(V, D\)"),
    ((np.zeros((4, D)), np.zeros((V, D + 1)), np.zeros(4, int)), {}, ValueError,
     r"expected \(V, 6\)"),
    ((np.zeros((4, D)), np.zeros((0, D)), np.zeros(4, int)), {}, ValueError, "V == 0"),
    ((np.zeros((4, D)), np.zeros((V, D)), np.zeros(5, int)), {}, ValueError,
     r"target has shape \(5,\)"),
    ((np.zeros((4, D)), np.zeros((V, D)), np.array([0, 1, V, 2])), {}, IndexError,
     "target 11 at flat position 2"),
    ((np.zeros((4, D)), np.zeros((V, D)), np.zeros((4, V + 1))), {}, ValueError,
     "probability target has shape"),
    ((np.zeros((4, D)), np.zeros((V, D)), np.full((4, V), 1 / V)), {"ignore_index": 1},
     ValueError, "ignore_index is only applicable"),
    ((np.zeros((4, D)), np.zeros((V, D)), np.zeros(4, bool)), {}, TypeError, "dtype bool"),
    ((np.zeros((4, D)), np.zeros((V, D)), np.zeros(4, int), np.zeros(V + 1)), {}, ValueError,
     "linear_bias must have shape"),
    ((*_ok(),), {"weight": np.ones(3)}, ValueError, "weight must have shape"),
    ((*_ok(),), {"sample_weight": np.ones(3)}, ValueError, "sample_weight has shape"),
    ((*_ok(),), {"chunk_size": 0}, ValueError, "chunk_size must be a positive"),
    ((*_ok(),), {"chunk_size": 2.0}, TypeError, "chunk_size must be a positive"),
    ((*_ok(),), {"chunk_size": True}, TypeError, "chunk_size must be a positive"),
    ((*_ok(),), {"reduction": "avg"}, ValueError, "reduction must be one of"),
    ((*_ok(),), {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ((*_ok(),), {"softcap": 0.0}, ValueError, "softcap"),
    ((*_ok(),), {"num_threads": 0}, ValueError, "num_threads"),
])
def test_linear_ce_errors(fn, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


# ---------------------------------------------------------------- token scores


@pytest.mark.parametrize("with_target", [True, False])
def test_linear_token_scores_equal_token_scores(rng, dtype, with_target):
    h = rng.standard_normal((2, 7, D)).astype(dtype)
    w = rng.standard_normal((V, D)).astype(dtype)
    b = rng.standard_normal(V).astype(dtype)
    t = rng.integers(0, V, (2, 7))
    t[0, 3] = -100
    t = t if with_target else None
    for chunk, bias in ((None, b), (3, None), (1, b)):
        x = h @ w.T + (0 if bias is None else bias)
        ref = xent.token_scores(x, t, top_k=4, temperature=0.7)
        got = xent.linear_token_scores(h, w, t, bias=bias, top_k=4, temperature=0.7,
                                       chunk_size=chunk)
        assert type(got) is xent.TokenScores
        for name in ref._fields:
            r, g = getattr(ref, name), getattr(got, name)
            if r is None:
                assert g is None
            elif r.dtype.kind == "i":
                np.testing.assert_array_equal(g, r, err_msg=name)
            else:
                assert g.dtype == r.dtype and g.shape == r.shape
                # equal logits up to the products' rounding (BLAS chunking)
                assert_close(g, r, rtol=RTOL[np.dtype(dtype)], err_msg=name)


def test_linear_token_scores_empty():
    s = xent.linear_token_scores(np.zeros((0, D)), np.zeros((V, D)), np.zeros(0, int), top_k=2)
    assert s.logprob.shape == (0,) and s.top_indices.shape == (0, 2)


@pytest.mark.parametrize("kwargs, target, exc, match", [
    ({"top_k": V + 1}, None, ValueError, "top_k"),
    ({"temperature": 0.0}, None, ValueError, "temperature"),
    ({}, np.zeros(4), TypeError, "integer class indices"),
    ({}, np.array([0, 1, 2, V]), IndexError, "target 11 at flat position 3"),
    ({"bias": np.zeros(2)}, None, ValueError, "bias must have shape"),
    ({"chunk_size": -1}, None, ValueError, "chunk_size"),
])
def test_linear_token_scores_errors(kwargs, target, exc, match):
    with pytest.raises(exc, match=match):
        xent.linear_token_scores(np.zeros((4, D)), np.zeros((V, D)), target, **kwargs)


@pytest.mark.parametrize("name", ["linear_cross_entropy", "linear_cross_entropy_and_grad",
                                  "linear_token_scores"])
def test_linear_num_threads_validated(rng, name):
    """As tests/test_hardening.py's gh14 check: bad counts raise, valid ones give equal results."""
    f = getattr(xent, name)
    h, w = rng.standard_normal((4, D)), rng.standard_normal((V, D))
    t = np.array([0, 1, -100, 4])
    for n in (0, -2, 2 ** 31, 1.5, "2", True, [2]):
        with pytest.raises(ValueError, match="num_threads"):
            f(h, w, t, num_threads=n)
    want = f(h, w, t, num_threads=1)
    for n in (None, -1, 2, np.int64(2)):
        got = f(h, w, t, num_threads=n)
        for g, e in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            if e is not None:
                np.testing.assert_array_equal(g, e)
