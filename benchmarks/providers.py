"""Helpers of the benchmark suites: data makers, result labels and NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from shapes import shape_id


def need_xent(name: str):
    """The xent function `name`, or skip when this build does not have it yet."""
    import xent

    fn = getattr(xent, name, None)
    if fn is None:
        pytest.skip(f"xent.{name} is not available in this build yet")
    return fn


def make_logits(shape, dtype, seed: int = 0) -> np.ndarray:
    """Logits ~ N(0, 3^2) of the given shape and dtype."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape, dtype=np.float32) * 3.0).astype(dtype)


def make_targets(shape, seed: int = 1) -> np.ndarray:
    """int64 class indices for logits of `shape`."""
    return np.random.default_rng(seed).integers(0, shape[-1], size=shape[:-1], dtype=np.int64)


def pedantic_rounds(benchmark) -> int:
    """Rounds of a ``benchmark.pedantic`` run: one in the smoke run, else seven."""
    return 1 if getattr(benchmark, "disabled", False) else 7


def xent_fused_in_place(x: np.ndarray, t: np.ndarray, threads: int, **options):
    """(setup, run) for ``xent.cross_entropy_and_grad(work, t, out=work)`` on a copy
    of `x` that `setup` restores before every round, outside the timed region."""
    fn = need_xent("cross_entropy_and_grad")
    work = x.copy()

    def setup():
        np.copyto(work, x)

    def run():
        return fn(work, t, out=work, num_threads=threads, **options)

    return setup, run


def label(benchmark, op: str, provider: str, dtype: str, shape, threads: int) -> None:
    """Group results per op/dtype/shape so providers are compared side by side."""
    benchmark.group = f"{op}-{dtype}-{shape_id(shape)}"
    benchmark.extra_info.update(
        {"op": op, "provider": provider, "dtype": dtype, "shape": list(shape), "threads": threads}
    )


# NumPy references (max-shifted, float computations in the input dtype)


def np_logsumexp(x: np.ndarray) -> np.ndarray:
    """``m + log(sum(exp(x - m)))`` over the last axis."""
    m = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def np_softmax(x: np.ndarray, log: bool = False) -> np.ndarray:
    """Softmax or log-softmax over the last axis."""
    s = x - x.max(axis=-1, keepdims=True)
    if log:
        s -= np.log(np.exp(s).sum(axis=-1, keepdims=True))
        return s
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def np_cross_entropy(x: np.ndarray, t: np.ndarray):
    """Mean cross-entropy of class targets."""
    picked = np.take_along_axis(x, t[..., None], axis=-1)[..., 0]
    return (np_logsumexp(x) - picked).mean()


def np_cross_entropy_and_grad(x: np.ndarray, t: np.ndarray, out: np.ndarray):
    """Mean cross-entropy and its gradient, written to `out`."""
    lse = np_logsumexp(x)
    rows = np.arange(t.size)
    flat_x, flat_out, flat_t = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]), t.ravel()
    loss = (lse.ravel() - flat_x[rows, flat_t]).mean()
    np.subtract(flat_x, lse.reshape(-1, 1), out=flat_out)
    np.exp(flat_out, out=flat_out)
    flat_out[rows, flat_t] -= 1.0
    flat_out /= t.size
    return loss, out


def np_cross_entropy_and_grad_options(x, t, weight, label_smoothing, ignore_index, out):
    """Mean cross-entropy with class weights, label smoothing and ignored rows, and
    its gradient written to `out` (PyTorch's formulas)."""
    c = x.shape[-1]
    eps = label_smoothing
    keep = t != ignore_index
    ts = np.where(keep, t, 0)
    rows = np.arange(t.size)
    lse = np_logsumexp(x)
    wt = weight[ts] * keep
    denom = wt.sum()
    lp_t = x[rows, ts] - lse
    smooth = (weight * (x - lse[:, None])).sum(axis=-1)
    loss = (-(1 - eps) * wt * lp_t - eps / c * smooth * keep).sum() / denom
    np.subtract(x, lse[:, None], out=out)
    np.exp(out, out=out)
    out *= ((1 - eps) * wt + eps / c * weight.sum() * keep)[:, None]
    out -= eps / c * weight[None, :] * keep[:, None]
    out[rows, ts] -= (1 - eps) * wt
    out /= denom
    return loss, out
