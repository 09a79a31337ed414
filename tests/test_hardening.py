"""Regression tests for issue 14 (hardening), one group per finding.

1. ``out=`` overlapping the int64 class target (segfault / wrong gradient).
2. Another thread rewriting the targets during a call (segfault).
3. A child forked after a multi-threaded call (hang).
4. ``out=`` overlapping any other operand (silently wrong values).
5. NaN loss for finite logits with ``z_loss == 0`` on the few-class vector paths.
6. Unbounded / unvalidated thread counts.
7. Read-only empty input, numeric strings as options, big-endian input, masked arrays.

Expected values come from the same call on ``.copy()``'d arguments (the overlap policy:
NumPy ufunc semantics), from the NumPy float64 reference (benchmarks/reference.py), or from
PyTorch.  Scenarios that crash or hang today run in a child interpreter
(tests/_hardening_child.py) with a timeout.
"""

from __future__ import annotations

import inspect
import os
import sys

import _hardening_child as child
import numpy as np
import pytest
from helpers import Arena, assert_close, assert_same

import xent
from benchmarks import reference as ref
from xent._kernels import _core

OPENMP = xent.openmp_enabled()
needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                                reason="os.fork after threads needs Linux")

# ---------------------------------------------------------------------------- 1. target


@pytest.mark.parametrize("family", ["cross_entropy", "nll_loss", "focal_loss"])
def test_gh14_out_overlapping_int64_target(family):
    """The README idiom ``f(buf, labels, out=buf)`` with `labels` stored inside `buf`
    (head, tail, the spec's ``buf.view(np.int64)[:, 0]``) and a separate `out` holding
    the labels: float32/float64, the few-class, row and split paths, 1 and 2 threads.
    The result equals the call on copies."""
    child.assert_child_ok("target_overlap", timeout=60.0,
                          fns=[family + "_grad", family + "_and_grad"])


# ---------------------------------------------------------------------------- 2. races


@pytest.mark.parametrize("family", list(child.RACE_FUNCS))
def test_gh14_racing_targets_never_crash(family):
    """A thread flips the targets between valid classes, ignore_index, +-2**40, C, -1
    ... while the loss / grad / fused forms run (float32, float64; few-class, rows,
    split, streamed); each call returns or raises IndexError, never faults."""
    child.assert_child_ok("race", timeout=60.0, family=family, seconds=0.03)


# ---------------------------------------------------------------------------- 3. fork


@needs_fork
def test_gh14_fork_after_a_thread_team():
    """After a multi-threaded call (256 x 4096, num_threads=2; the parent's OS thread
    count grows), an os.fork() child runs serially by default with correct values,
    then num_threads=2 and set_num_threads(2) work; a fork Pool's workers too."""
    child.assert_child_ok("fork", openmp=OPENMP)


# ---------------------------------------------------------------------------- 4. overlaps


def _logits(rng, shape, dt):
    return (rng.standard_normal(shape) * 3).astype(dt)


def _labels(rng, n, c):
    t = rng.integers(0, c, size=n)
    t[1::7] = -100
    return t


def _grad_form(fn: str) -> bool:
    return fn.endswith("_grad") and not fn.endswith("_and_grad")


class _Case:
    """A call `fn(*args, out=out, **kw)` whose `out` overlaps an operand in `arena`."""

    def __init__(self, fn, args, kw, out, arena):
        self.fn, self.args, self.kw, self.out, self.arena = fn, args, kw, out, arena


# Each builder(rng, dt, n, c, nt) -> _Case.  "head": the operand is the first bytes of
# `out` (overwritten first); "next row": out row r is the operand's row r + 1 (a row is
# clobbered before it is read, serially); "prev row": out row r is the operand's row
# r - 1 (the spec's q = big[1:], out = big[:-1]: clobbered only by another thread).


def _two_rows(dt, n, c, out_first: bool):
    """(operand, out) as two (n, c) views of one (n + 1, c) arena, one row apart."""
    a = Arena((n + 1) * c * np.dtype(dt).itemsize)
    big = a.at(0, (n + 1, c), dt)
    return (big[1:], big[:-1], a) if out_first else (big[:-1], big[1:], a)


def _head(dt, n, c, shape):
    """(operand of `shape`, out (n, c)) with the operand at the start of out."""
    a = Arena(n * c * np.dtype(dt).itemsize)
    return a.at(0, shape, dt), a.at(0, (n, c), dt), a


def _class_target_case(fn, what):
    """cross_entropy / nll_loss / focal_loss gradient forms."""
    focal = fn.startswith("focal")

    def build(rng, dt, n, c, nt):
        kw = {"num_threads": nt, "reduction": "mean"}
        if focal:
            kw["gamma"] = 2.0
        x = _logits(rng, (n, c), dt)
        t = _labels(rng, n, c)
        go = 0.5
        vec = "alpha" if focal else "weight"
        if what == "vector_head":
            v, out, a = _head(dt, n, c, (c,))
            v[...] = rng.uniform(0.25, 2.0, c)
            kw[vec] = v
        elif what == "sample_weight_head":
            sw, out, a = _head(dt, n, c, (n,))
            sw[...] = rng.uniform(0.0, 2.0, n)
            kw["sample_weight"] = sw
        elif what == "grad_output_head":
            go, out, a = _head(dt, n, c, (n,))
            go[...] = rng.uniform(-2.0, 2.0, n)
            kw["reduction"] = "none"
        elif what in ("probs_next_row", "probs_prev_row"):
            q, out, a = _two_rows(dt, n, c, out_first=what == "probs_prev_row")
            q[...] = rng.dirichlet(np.ones(c), size=n)
            t = q
        elif what in ("logits_next_row", "logits_prev_row"):
            x, out, a = _two_rows(dt, n, c, out_first=what == "logits_prev_row")
            x[...] = _logits(rng, (n, c), dt)
        elif what in ("vector_in_logits", "sample_weight_in_logits"):
            a = Arena(n * c * np.dtype(dt).itemsize)
            x = out = a.at(0, (n, c), dt)  # the in-place form
            x[...] = _logits(rng, (n, c), dt)
            if what == "vector_in_logits":
                kw[vec] = x[n // 2]  # a row of the logits
                kw[vec][...] = rng.uniform(0.25, 2.0, c)
            else:
                kw["sample_weight"] = x.reshape(-1)[:n]
                kw["sample_weight"][...] = rng.uniform(0.0, 2.0, n)
        else:
            raise AssertionError(what)
        args = [x, t, go] if _grad_form(fn) else [x, t]
        return _Case(fn, args, kw, out, a)

    return build


def _elementwise_case(fn, what):
    """binary_cross_entropy(_with_logits), sigmoid_focal_loss, kl_div_with_logits."""
    kl = fn.startswith("kl_div")
    probs = fn.startswith("binary_cross_entropy_") and "with_logits" not in fn

    def first(rng, shape, dt):
        return rng.uniform(0.02, 0.98, shape).astype(dt) if probs else _logits(rng, shape, dt)

    def second(rng, shape, dt):
        return _logits(rng, shape, dt) if kl else rng.uniform(0.0, 1.0, shape).astype(dt)

    def build(rng, dt, n, c, nt):
        kw = {"num_threads": nt, "reduction": "batchmean" if kl else "mean"}
        x, y, go = first(rng, (n, c), dt), second(rng, (n, c), dt), 0.5
        if what in ("second_next_row", "second_prev_row"):
            y, out, a = _two_rows(dt, n, c, out_first=what == "second_prev_row")
            y[...] = second(rng, (n, c), dt)
        elif what in ("first_next_row", "first_prev_row"):
            x, out, a = _two_rows(dt, n, c, out_first=what == "first_prev_row")
            x[...] = first(rng, (n, c), dt)
        elif what in ("weight_head", "pos_weight_head"):
            v, out, a = _head(dt, n, c, (c,))
            v[...] = rng.uniform(0.25, 3.0, c)
            kw[what[:-5]] = v
        elif what == "grad_output_rows":
            kw["reduction"] = "none"
            if kl:  # one grad_output per row, at the head of out
                go, out, a = _head(dt, n, c, (n,))
                go[...] = rng.uniform(-2.0, 2.0, n)
            else:  # one per element, a row ahead of out
                go, out, a = _two_rows(dt, n, c, out_first=False)
                go[...] = rng.uniform(-2.0, 2.0, (n, c))
        elif what == "weight_in_logits":
            a = Arena(n * c * np.dtype(dt).itemsize)
            x = out = a.at(0, (n, c), dt)
            x[...] = first(rng, (n, c), dt)
            kw["pos_weight" if "with_logits" in fn else "weight"] = x[n // 2]
            x[n // 2] = rng.uniform(0.25, 0.75, c)
        else:
            raise AssertionError(what)
        args = [x, y, go] if _grad_form(fn) else [x, y]
        return _Case(fn, args, kw, out, a)

    return build


def _primitive_case(fn, what):
    def build(rng, dt, n, c, nt):
        kw = {"num_threads": nt}
        if fn == "logsumexp":
            rows, cols = (n, c) if c >= n else (c, n)  # out = x[-1, :rows] needs cols >= rows
            a = Arena(rows * cols * np.dtype(dt).itemsize)
            x = a.at(0, (rows, cols), dt)
            x[...] = _logits(rng, (rows, cols), dt)
            out = x[-1, :rows] if what == "out_in_last_row" else x.reshape(-1)[:rows]
            return _Case(fn, [x], kw, out, a)
        x, out, a = _two_rows(dt, n, c, out_first=what == "prev_row")
        x[...] = _logits(rng, (n, c), dt)
        if what == "axis0":
            kw["axis"] = 0
        return _Case(fn, [x], kw, out, a)

    return build


def _overlap_cases():
    cases = []
    for fam in ("cross_entropy", "nll_loss", "focal_loss"):
        whats = ["vector_head", "grad_output_head", "logits_next_row", "logits_prev_row",
                 "vector_in_logits"]
        if fam == "cross_entropy":
            whats += ["sample_weight_head", "probs_next_row", "probs_prev_row",
                      "sample_weight_in_logits"]
        for form in ("_grad", "_and_grad"):
            for what in whats:
                if what == "grad_output_head" and form == "_and_grad":
                    continue
                cases.append((fam + form, what, _class_target_case(fam + form, what)))
    for fam, whats in (
            ("binary_cross_entropy_with_logits", ["second_next_row", "second_prev_row",
                                                  "first_next_row", "weight_head",
                                                  "pos_weight_head", "grad_output_rows",
                                                  "weight_in_logits"]),
            ("binary_cross_entropy", ["second_next_row", "second_prev_row", "first_next_row",
                                      "weight_head", "grad_output_rows", "weight_in_logits"]),
            ("sigmoid_focal_loss", ["second_next_row", "second_prev_row", "first_next_row",
                                    "grad_output_rows"]),
            ("kl_div_with_logits", ["second_next_row", "second_prev_row", "first_next_row",
                                    "first_prev_row", "grad_output_rows"])):
        for form in ("_grad", "_and_grad"):
            for what in whats:
                if what == "grad_output_rows" and form == "_and_grad":
                    continue
                cases.append((fam + form, what, _elementwise_case(fam + form, what)))
    cases.append(("logsumexp", "out_in_last_row", _primitive_case("logsumexp",
                                                                  "out_in_last_row")))
    cases.append(("logsumexp", "out_at_head", _primitive_case("logsumexp", "out_at_head")))
    for fn in ("softmax", "log_softmax"):
        for what in ("next_row", "prev_row", "axis0"):
            cases.append((fn, what, _primitive_case(fn, what)))
    return cases


OVERLAP_CASES = _overlap_cases()
# small: one thread; team: >= 65536 elements of work with num_threads=2
OVERLAP_SIZES = {"small": (37, 19, 1), "team": (700, 101, 2)}


def _copy(v):
    return v.copy() if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("size", list(OVERLAP_SIZES))
@pytest.mark.parametrize("fn, what, build", OVERLAP_CASES,
                         ids=[f"{f}-{w}" for f, w, _ in OVERLAP_CASES])
def test_gh14_out_overlapping_other_operands(fn, what, build, size, dtype):
    """`out` sharing memory with weight / alpha / pos_weight, sample_weight, grad_output,
    a probability or binary target, the teacher, or part of the logits: the result is
    the call on copies, `out` is returned, and no byte outside `out` changes."""
    n, c, nt = OVERLAP_SIZES[size]
    case = build(np.random.default_rng(1400 + n), dtype, n, c, nt)
    func = getattr(xent, fn)
    expected = func(*[_copy(a) for a in case.args], **{k: _copy(v) for k, v in case.kw.items()})
    arena_before = case.arena.buf.copy()
    got = func(*case.args, out=case.out, **case.kw)
    grad = got[1] if isinstance(got, tuple) else got
    assert grad is case.out, "the result is not `out`"
    if isinstance(got, tuple):
        assert_same(got[0], expected[0], "loss", rounding=True)
        expected = expected[1]
    assert_same(grad, expected, "result", rounding=True)
    case.arena.assert_unchanged_outside(arena_before, case.out)


# ---------------------------------------------------------------------------- 5. z-loss


def _extreme_rows(rng, n, c, dt):
    """Finite logits whose lse**2 overflows: equal huge rows and huge rows with ties."""
    big = 2e19 if dt == np.float32 else 1e200
    x = np.full((n, c), big)
    lower = np.nextafter(dt.type(big), dt.type(0)).astype(np.float64)
    for r in range(1, n, 2):  # the maxima tie on a random subset, the rest one ulp lower
        x[r, rng.random(c) < 0.5] = lower
        x[r, rng.integers(c)] = big
    return x.astype(dt)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("opts", [{}, {"z_loss": 0.0}, {"z_loss": 0}, {"weight": "w"},
                                  {"label_smoothing": 0.1}, {"sample_weight": "sw"}],
                         ids=["default", "z0.0", "z0-int", "weight", "smoothing",
                              "sample_weight"])
def test_gh14_zero_z_loss_is_not_nan_for_huge_finite_logits(simd, dtype, reduction, opts):
    """float32 2e19 / float64 1e200 logits, C = 2..33 (few-class blocks and rows):
    loss and gradient equal the float64 reference on the max-shifted logits
    (cross-entropy without z-loss is shift invariant), not NaN."""
    rng = np.random.default_rng(5)
    n = 11  # a full block of float32 AVX2 lanes plus a partial one
    for c in range(2, 34):
        x = _extreme_rows(rng, n, c, dtype)
        t = rng.integers(0, c, size=n)
        t[3] = -100
        kw = dict(opts)
        if kw.get("weight") == "w":
            kw["weight"] = rng.uniform(0.5, 2.0, c)
        if kw.get("sample_weight") == "sw":
            kw["sample_weight"] = rng.uniform(0.5, 2.0, n)
        x64 = x.astype(np.float64)
        shifted = x64 - x64.max(axis=1, keepdims=True)
        rkw = {k: v for k, v in kw.items() if k != "z_loss"}
        exp_loss, exp_grad = ref.cross_entropy_and_grad(shifted, t, reduction=reduction, **rkw)
        loss, grad = xent.cross_entropy_and_grad(x, t, reduction=reduction, **kw)
        loss_only = xent.cross_entropy(x, t, reduction=reduction, **kw)
        for got, what in ((loss, "cross_entropy_and_grad loss"), (loss_only, "cross_entropy")):
            assert np.all(np.isfinite(got)), f"C={c}: {what} is not finite: {got}"
            assert_close(got, exp_loss, dtype, scale=0.0, err_msg=f"C={c} {what}")
        assert np.all(np.isfinite(grad)), f"C={c}: gradient not finite"
        assert_close(grad, exp_grad, dtype, scale=1e-3, err_msg=f"C={c} gradient")


def test_gh14_zero_z_loss_matches_torch(simd):
    """The issue's example: float32 [[2e19, 2e19]], target 0 -> PyTorch's 0.6931472;
    gradient [-0.5, 0.5]; and C = 2..33 against torch.nn.functional.cross_entropy."""
    torch = pytest.importorskip("torch")
    x = np.array([[2e19, 2e19]], np.float32)
    t = np.array([0])
    expected = float(torch.nn.functional.cross_entropy(torch.from_numpy(x),
                                                       torch.from_numpy(t)))
    loss, grad = xent.cross_entropy_and_grad(x, t)
    assert np.isfinite(loss) and np.isclose(loss, expected, rtol=1e-6, atol=0), (loss, expected)
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.cross_entropy(xt, torch.from_numpy(t)).backward()
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-6, atol=0)
    rng = np.random.default_rng(6)
    for c in range(2, 34):
        xx = _extreme_rows(rng, 9, c, np.dtype(np.float32))
        tt = rng.integers(0, c, size=9)
        for red in ("none", "mean", "sum"):
            want = torch.nn.functional.cross_entropy(torch.from_numpy(xx), torch.from_numpy(tt),
                                                     reduction=red).numpy()
            got = xent.cross_entropy(xx, tt, reduction=red)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=0, err_msg=f"C={c} {red}")


# ---------------------------------------------------------------------------- 6. threads


def _public_functions_with_num_threads():
    out = []
    for name in xent.__all__:
        f = getattr(xent, name)  # a name in __all__ must exist
        if callable(f) and not isinstance(f, type) and (
                "num_threads" in inspect.signature(f).parameters):
            out.append(name)
    return sorted(out)


def _minimal_call(name):
    """Valid arguments for every public function that takes num_threads."""
    x = np.random.default_rng(0).standard_normal((4, 5))
    t = np.array([0, 1, 2, 4])
    y = np.full((4, 5), 0.5)
    if name in ("logsumexp", "softmax", "log_softmax"):
        return (x,)
    if name.startswith(("binary_cross_entropy", "sigmoid_focal")):
        first = y * 0.9 if name.startswith("binary_cross_entropy") and "logits" not in name else x
        return (first, y, 1.0) if _grad_form(name) else (first, y)
    if name.startswith("kl_div"):
        return (x, x[::-1].copy(), 1.0) if _grad_form(name) else (x, x[::-1].copy())
    if name.startswith("linear_"):  # hidden (4, 5), a (6, 5) layer weight, targets
        return (x, np.random.default_rng(1).standard_normal((6, 5)), t)
    return (x, t, 1.0) if _grad_form(name) else (x, t)


THREAD_FUNCS = _public_functions_with_num_threads()
BAD_THREADS = [0, -2, -3, -(2**31), 2**31, 2**31 + 1, 2**63, 2**80, 1.5, 2.0, "2", b"2",
               True, False, np.float64(2.0), np.bool_(True), [2]]
NOT_INTEGERS = (float, str, bytes, bool, np.floating, np.bool_, list)


def _assert_rejected(call, n):
    with pytest.raises(ValueError, match="num_threads") as info:
        call(n)
    if isinstance(n, NOT_INTEGERS):
        assert isinstance(info.value, TypeError), (
            f"num_threads={n!r}: {type(info.value).__name__} is not also a TypeError")


@pytest.mark.parametrize("name", THREAD_FUNCS)
def test_gh14_num_threads_validated(name):
    """0, negatives other than -1, >= 2**31, floats, strings, bools: ValueError naming
    num_threads (also a TypeError for non-integers); None, -1, 1, 2 and NumPy integers
    work and give the single-thread values."""
    f = getattr(xent, name)
    args = _minimal_call(name)
    for n in BAD_THREADS:
        _assert_rejected(lambda nt, f=f, args=args: f(*args, num_threads=nt), n)
    want = f(*args, num_threads=1)
    for n in (None, -1, 2, np.int64(2), np.int32(1), np.uint8(3), 1000):
        got = f(*args, num_threads=n)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            if g is not None:
                np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64),
                                           rtol=1e-12, atol=0, err_msg=f"num_threads={n!r}")


def _cap():
    if not OPENMP:
        return 1
    return max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1, _core.omp_max_threads())


def test_gh14_set_num_threads_validated_and_capped(restore_threads):
    """set_num_threads: the same rejections (state unchanged, later calls still work);
    2**31 no longer breaks every later call; a count above the CPUs is capped."""
    x = np.random.default_rng(0).standard_normal((64, 33))
    for n in BAD_THREADS:
        before = xent.get_num_threads()
        _assert_rejected(xent.set_num_threads, n)
        assert xent.get_num_threads() == before
        xent.logsumexp(x)  # no OverflowError afterwards
    for n in (1, 2, np.int64(2), -1):
        xent.set_num_threads(n)
        assert 1 <= xent.get_num_threads() <= _cap()
    xent.set_num_threads(1000)
    assert xent.get_num_threads() == _cap()
    xent.set_num_threads(np.int64(10**6))
    assert xent.get_num_threads() == _cap()
    np.testing.assert_array_equal(xent.softmax(x), xent.softmax(x, num_threads=1))
    xent.set_num_threads(None)  # accepted: back to the default
    assert 1 <= xent.get_num_threads() <= _cap()


@pytest.mark.skipif(not (OPENMP and sys.platform.startswith("linux")),
                    reason="counts OpenMP threads in /proc/self/task")
def test_gh14_huge_num_threads_starts_a_bounded_team():
    """num_threads=200 in one call leaves at most cap + 2 new OS threads (fresh process)."""
    child.assert_child_ok("thread_cap", num_threads=200)


# ---------------------------------------------------------------------------- 7. smaller


@pytest.mark.parametrize("fn", [xent.softmax, xent.log_softmax], ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (0, 0), (2, 0, 3), (0, 2, 3)])
def test_gh14_readonly_empty_input_axis0(fn, shape, dtype):
    x = np.empty(shape, dtype=dtype)
    x.flags.writeable = False
    for axis in (0, -1):
        got = fn(x, axis=axis)
        assert got.shape == shape and got.dtype == dtype, (axis, got.shape, got.dtype)
        assert got.flags.writeable
    assert not x.flags.writeable


_STRING_OPTIONS = [
    ("cross_entropy", "label_smoothing"), ("cross_entropy", "z_loss"),
    ("cross_entropy", "softcap"), ("cross_entropy_grad", "label_smoothing"),
    ("cross_entropy_and_grad", "softcap"), ("cross_entropy_and_grad", "z_loss"),
    ("focal_loss", "gamma"), ("focal_loss", "alpha"), ("focal_loss_and_grad", "gamma"),
    ("sigmoid_focal_loss", "gamma"), ("sigmoid_focal_loss", "alpha"),
    ("sigmoid_focal_loss_grad", "alpha"), ("kl_div_with_logits", "temperature"),
    ("kl_div_with_logits_and_grad", "temperature"), ("token_scores", "temperature"),
]


@pytest.mark.parametrize("name, option", _STRING_OPTIONS, ids=[f"{a}-{b}" for a, b in
                                                               _STRING_OPTIONS])
@pytest.mark.parametrize("text", ["0.5", "1", np.str_("0.5"), b"0.5"], ids=repr)
def test_gh14_numeric_strings_are_not_options(name, option, text):
    """The docstrings promise TypeError for non-numbers: "0.1" is not a number."""
    args = _minimal_call(name) if name != "token_scores" else _minimal_call("cross_entropy")
    with pytest.raises(TypeError, match=option):
        getattr(xent, name)(*args, **{option: text})


def _be_calls():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 9))
    y = rng.uniform(0.05, 0.95, (5, 9))
    t = np.array([0, 8, 3, -100, 4])
    return [
        ("logsumexp", lambda a: xent.logsumexp(a)),
        ("logsumexp_axis0", lambda a: xent.logsumexp(a, axis=0)),
        ("softmax", lambda a: xent.softmax(a)),
        ("log_softmax_axis0", lambda a: xent.log_softmax(a, axis=0)),
        ("cross_entropy", lambda a: xent.cross_entropy(a, t, reduction="none")),
        ("cross_entropy_mean", lambda a: xent.cross_entropy(a, t)),
        ("cross_entropy_and_grad", lambda a: xent.cross_entropy_and_grad(a, t)),
        ("cross_entropy_soft", lambda a: xent.cross_entropy_grad(a, y / y.sum(1, keepdims=True))),
        ("nll_loss_and_grad", lambda a: xent.nll_loss_and_grad(a, t)),
        ("focal_loss_and_grad", lambda a: xent.focal_loss_and_grad(a, t, reduction="none")),
        ("bce_with_logits_and_grad",
         lambda a: xent.binary_cross_entropy_with_logits_and_grad(a, y, reduction="none")),
        ("bce_and_grad", lambda a: xent.binary_cross_entropy_and_grad(
            (1 / (1 + np.exp(-a.astype(np.float64)))).astype(a.dtype), y)),
        ("sigmoid_focal_loss_grad", lambda a: xent.sigmoid_focal_loss_grad(a, y)),
        ("kl_div_with_logits_and_grad", lambda a: xent.kl_div_with_logits_and_grad(a, a[::-1])),
        ("token_scores", lambda a: xent.token_scores(a, t, top_k=2)),
    ], x


_BE_NAMES = [n for n, _ in _be_calls()[0]]


@pytest.mark.parametrize("name", _BE_NAMES)
def test_gh14_big_endian_input_computes_natively(name, dtype):
    """'>f4' / '>f8' input: native float32 / float64 results, equal to the
    native-endian call (not silently promoted to float64)."""
    calls, x = _be_calls()
    call = dict(calls)[name]
    native = x.astype(dtype)
    swapped = native.astype(native.dtype.newbyteorder(">" if sys.byteorder == "little" else "<"))
    assert np.array_equal(swapped, native) and not swapped.dtype.isnative
    want, got = call(native), call(swapped)
    pairs = list(zip(got, want)) if isinstance(got, tuple) else [(got, want)]
    for g, w in pairs:
        if w is None:
            assert g is None
            continue
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.dtype.isnative, (g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w)


def _masked(a):
    m = np.zeros(np.shape(a), dtype=bool)
    if m.size:
        m.reshape(-1)[0] = True
    return np.ma.MaskedArray(a, mask=m)


def _masked_cases():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 5))
    t = np.array([0, 1, 2, 4])
    y = rng.uniform(0.1, 0.9, (4, 5))
    w = np.linspace(0.5, 2, 5)
    sw = np.linspace(0.5, 2, 4)
    cases = [
        ("logsumexp", lambda m: xent.logsumexp(m(x))),
        ("softmax", lambda m: xent.softmax(m(x))),
        ("log_softmax", lambda m: xent.log_softmax(m(x))),
        ("cross_entropy-logits", lambda m: xent.cross_entropy(m(x), t)),
        ("cross_entropy-target", lambda m: xent.cross_entropy(x, m(t))),
        ("cross_entropy-probs", lambda m: xent.cross_entropy(x, m(y))),
        ("cross_entropy-weight", lambda m: xent.cross_entropy(x, t, weight=m(w))),
        ("cross_entropy-sample_weight", lambda m: xent.cross_entropy(x, t, sample_weight=m(sw))),
        ("cross_entropy_grad-logits", lambda m: xent.cross_entropy_grad(m(x), t)),
        ("cross_entropy_and_grad-target", lambda m: xent.cross_entropy_and_grad(x, m(t))),
        ("nll_loss-logits", lambda m: xent.nll_loss(m(x), t)),
        ("nll_loss_and_grad-weight", lambda m: xent.nll_loss_and_grad(x, t, weight=m(w))),
        ("nll_loss_grad-target", lambda m: xent.nll_loss_grad(x, m(t))),
        ("focal_loss-logits", lambda m: xent.focal_loss(m(x), t)),
        ("focal_loss-alpha", lambda m: xent.focal_loss(x, t, alpha=m(w))),
        ("focal_loss_grad-target", lambda m: xent.focal_loss_grad(x, m(t))),
        ("bce_with_logits-logits", lambda m: xent.binary_cross_entropy_with_logits(m(x), y)),
        ("bce_with_logits-target", lambda m: xent.binary_cross_entropy_with_logits(x, m(y))),
        ("bce_with_logits-weight",
         lambda m: xent.binary_cross_entropy_with_logits(x, y, weight=m(w))),
        ("bce_with_logits-pos_weight",
         lambda m: xent.binary_cross_entropy_with_logits_and_grad(x, y, pos_weight=m(w))),
        ("bce-probs", lambda m: xent.binary_cross_entropy(m(y), y)),
        ("bce_grad-weight", lambda m: xent.binary_cross_entropy_grad(y, y, weight=m(w))),
        ("sigmoid_focal_loss-logits", lambda m: xent.sigmoid_focal_loss(m(x), y)),
        ("sigmoid_focal_loss_and_grad-target", lambda m: xent.sigmoid_focal_loss_and_grad(x, m(y))),
        ("kl-student", lambda m: xent.kl_div_with_logits(m(x), x)),
        ("kl_and_grad-teacher", lambda m: xent.kl_div_with_logits_and_grad(x, m(x))),
        ("perplexity-logits", lambda m: xent.perplexity(m(x), t)),
        ("perplexity-target", lambda m: xent.perplexity(x, m(t))),
        ("ece-logits", lambda m: xent.expected_calibration_error(m(x), t)),
        ("ece-target", lambda m: xent.expected_calibration_error(x, m(t))),
        ("token_scores-logits", lambda m: xent.token_scores(m(x), t)),
        ("token_scores-target", lambda m: xent.token_scores(x, m(t))),
    ]
    return cases


_MASKED = _masked_cases()


@pytest.mark.parametrize("name, call", _MASKED, ids=[n for n, _ in _MASKED])
def test_gh14_masked_arrays_rejected(name, call):
    """A mask would be silently ignored: np.ma.MaskedArray inputs raise TypeError
    mentioning "masked" (the same call on plain arrays works)."""
    call(lambda a: a)
    with pytest.raises(TypeError, match="(?i)masked"):
        call(_masked)
