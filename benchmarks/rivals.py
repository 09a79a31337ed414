"""Rival providers for the benchmarks: torch eager, torch.compile (Inductor CPU), JAX jit.

Each provider builds, for one operation on given NumPy logits and targets, a
:class:`Prepared` call with the same discipline as ``python -m xent bench``:

* arrays are converted outside the timed region (``torch.from_numpy``, zero-copy;
  ``jax.device_put``, a copy made once);
* compilation is done when the call is prepared (torch.compile: the first call,
  forward and backward; JAX: ``jit(...).lower(...).compile()``), timed, and
  reported in ``compile_s``; it is never part of a timed call;
* :func:`check` compares a rival's outputs with xent's before anything is timed.

Operations (``op``): ``"fused"`` (mean cross-entropy and its gradient w.r.t. the
logits), ``"loss"`` (mean cross-entropy, forward only) and ``"logsumexp"`` (over
the last axis).  The JAX losses are optax's
(``optax.softmax_cross_entropy_with_integer_labels``), jitted, with
``jax.value_and_grad`` for the fused case; ``jax.nn.logsumexp`` for logsumexp.
Missing packages are reported by :func:`unavailable` (a reason string), and the
callers skip that rival with the note.

Threads: torch eager and torch.compile follow ``torch.set_num_threads`` (set by
:func:`prepare`; Inductor bakes the count into the code it compiles, so prepare
after setting it).  XLA's CPU thread count is fixed at import: set
:func:`jax_env` in the environment of the process before JAX is imported (the
table script runs one worker process per thread count for that reason).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

RIVALS = ("torch", "torch.compile", "jax")
OPS = ("fused", "loss", "logsumexp")


@dataclass
class Prepared:
    """A rival's timed call and what it took to get there."""

    run: Callable[[], Any]  # the timed call; returns outputs for check()
    compile_s: float  # compilation time (0 for eager), excluded from every timing
    what: str  # the call, for the table's notes
    setup: Callable[[], Any] | None = None  # untimed step before each call


def unavailable(rival: str) -> str | None:
    """Why `rival` cannot run here (None when it can)."""
    need = {"torch": ("torch",), "torch.compile": ("torch",), "jax": ("jax", "optax")}[rival]
    for mod in need:
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install -e '.[rivals]')"
    if rival == "torch.compile":
        import torch

        if not hasattr(torch, "compile"):
            return "this torch has no torch.compile"
    return None


def jax_env(threads: int) -> dict:
    """Environment for XLA's CPU backend with `threads` threads (set before JAX is imported).

    One thread: Eigen's thread pool off.  More: XLA's default, every core of the
    machine (it has no exact count), which is the thread count on a 2-core host.
    """
    if threads == 1:
        return {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    return {}


# --------------------------------------------------------------------------- torch


def _torch_fns(torch, op: str) -> Callable:
    F = torch.nn.functional
    if op == "logsumexp":
        return lambda x: torch.logsumexp(x, -1)
    return lambda x, t: F.cross_entropy(x, t)


def _prepare_torch(op: str, x: np.ndarray, t: np.ndarray, threads: int, compiled: bool) -> Prepared:
    import torch

    torch.set_num_threads(threads)
    fn = _torch_fns(torch, op)
    name = "torch.compile" if compiled else "torch"
    if compiled:
        torch._dynamo.reset()  # a fresh compile for this shape and thread count
        fn = torch.compile(fn, dynamic=False)
    xt = torch.from_numpy(x)
    tt = torch.from_numpy(t)
    if op == "fused":
        xg = xt.clone().requires_grad_()  # autograd leaf (the NumPy array stays untouched)

        def run():
            xg.grad = None
            loss = fn(xg, tt)
            loss.backward()
            return float(loss.detach()), xg.grad.numpy()

        what = f"{name}(F.cross_entropy)(x, t).backward()"
    elif op == "loss":

        def run():
            with torch.no_grad():
                return float(fn(xt, tt)), None

        what = f"{name}(F.cross_entropy)(x, t), no_grad"
    else:

        def run():
            with torch.no_grad():
                return fn(xt).numpy(), None

        what = f"{name}(torch.logsumexp)(x, -1)"
    t0 = time.perf_counter()
    if compiled:
        run()  # compiles forward (and backward for "fused")
    return Prepared(run=run, compile_s=time.perf_counter() - t0 if compiled else 0.0, what=what)


# --------------------------------------------------------------------------- JAX


def _prepare_jax(op: str, x: np.ndarray, t: np.ndarray) -> Prepared:
    import jax

    if x.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    def loss_fn(xx, tt):
        return optax.softmax_cross_entropy_with_integer_labels(xx, tt).mean()

    if op == "fused":
        f = jax.value_and_grad(loss_fn)
        what = "jit(value_and_grad(optax.softmax_cross_entropy_with_integer_labels(x, t).mean()))"
    elif op == "loss":
        f = loss_fn
        what = "jit(optax.softmax_cross_entropy_with_integer_labels(x, t).mean())"
    else:
        f = lambda xx: jax.nn.logsumexp(xx, axis=-1)  # noqa: E731
        what = "jit(jax.nn.logsumexp(x, axis=-1))"
    xj = jax.device_put(x)
    tj = jax.device_put(t.astype(np.int32 if x.dtype == np.float32 else np.int64))
    args = (xj,) if op == "logsumexp" else (xj, tj)
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    compile_s = time.perf_counter() - t0

    def run():
        out = compiled(*args)
        jax.block_until_ready(out)
        if op == "fused":
            return float(out[0]), np.asarray(out[1])
        if op == "loss":
            return float(out), None
        return np.asarray(out), None

    del jnp
    return Prepared(run=run, compile_s=compile_s, what=what)


# --------------------------------------------------------------------------- public


def prepare(rival: str, op: str, x: np.ndarray, t: np.ndarray | None, threads: int) -> Prepared:
    """The rival's call for `op` on logits `x` (2-D, C-contiguous) and targets `t`."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    reason = unavailable(rival)
    if reason:
        raise RuntimeError(f"{rival}: {reason}")
    if rival == "jax":
        return _prepare_jax(op, x, t)
    return _prepare_torch(op, x, t, threads, compiled=rival == "torch.compile")


def xent_reference(op: str, x: np.ndarray, t: np.ndarray | None, threads: int):
    """xent's outputs for `op`, in the shape ``Prepared.run`` returns."""
    import xent

    if op == "fused":
        loss, grad = xent.cross_entropy_and_grad(x, t, num_threads=threads)
        return float(loss), grad
    if op == "loss":
        return float(xent.cross_entropy(x, t, num_threads=threads)), None
    return xent.logsumexp(x, num_threads=threads), None


def check(got, want, dtype) -> str | None:
    """None if a rival's outputs match xent's, else what differs.

    Tolerance: API.md's (1e-5 float32, 1e-12 float64) widened tenfold for the
    rival's own rounding, relative to each value, plus the same times the largest
    magnitude for the gradient (whose tiny entries carry no relative precision).
    """
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-11
    (ga, gb), (wa, wb) = got, want
    ga, wa = np.asarray(ga, dtype=np.float64), np.asarray(wa, dtype=np.float64)
    if not np.allclose(ga, wa, rtol=rtol, atol=rtol * float(np.max(np.abs(wa), initial=0.0))):
        return f"value differs: max |diff| {float(np.max(np.abs(ga - wa))):.3e}"
    if wb is not None:
        gb, wb = np.asarray(gb, dtype=np.float64), np.asarray(wb, dtype=np.float64)
        if gb.shape != wb.shape:
            return f"gradient shape {gb.shape} != {wb.shape}"
        scale = float(np.max(np.abs(wb), initial=0.0))
        if not np.allclose(gb, wb, rtol=rtol, atol=rtol * scale):
            diff = float(np.max(np.abs(gb - wb)))
            return f"gradient differs: max |diff| {diff:.3e} (scale {scale:.3e})"
    return None
