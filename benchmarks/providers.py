"""Providers: who computes a case (xent, PyTorch, NumPy, ...) and the yardsticks.

A provider is a `Provider` subclass.  For each case the harness calls, in
this order and outside every timed region:

1. ``unavailable()`` once per process: a note when the provider cannot run
   here at all (library not installed), else None;
2. ``handles(case)``: whether the provider computes this op at this shape at
   all (by design; cases it does not handle get no column entry);
3. ``set_threads(case.n_threads)``: global thread settings of its library;
4. ``prepare(case, data) -> Call``: converts the inputs (zero-copy where it
   can), builds the closure to time; raises `ProviderSkip` with a note when
   this case cannot run here (e.g. an optional module missing);
5. ``Call.compile()`` if set, once, timed alone and reported as
   ``compile_ms`` (jit compilation, autotuning);
6. ``Call.restore()`` (if set) then ``Call.run()``, and ``Call.outputs`` of
   the result compared with the float64 reference (``checks.py``); a
   provider whose outputs differ is not timed;
7. the timed repeats: ``restore()`` (untimed) before every ``run()``.

A new provider is a subclass added to ``all_providers``; the rivals
(torch.compile and JAX) are in ``rivals.py``.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import numpy_ops
from .cases import HALF, TOP_K, Case, Data

CE_OPS = ("fused", "latency", "loss", "adapter")


class ProviderSkip(Exception):
    """Raised by ``prepare``: the case cannot run with this provider here (the note)."""


@dataclass
class Call:
    """One provider's prepared call of one case."""

    run: Callable[[], Any]  # the timed call
    restore: Callable[[], None] | None = None  # untimed, before every run (in-place inputs)
    compile: Callable[[], Any] | None = None  # untimed, once first; reported as compile_ms
    outputs: Callable[[Any], dict] | None = None  # run()'s result -> checks.OUTPUTS keys
    what: str = ""  # the call, as recorded in the results
    note: str = ""  # how it ran (thread pool, compile cache), set by prepare or compile


class Provider:
    """Base class: override ``prepare`` and, where needed, the other hooks."""

    name = ""
    kind = "impl"  # "impl" (checked against the reference) or "yardstick"
    malloc_sensitive = False  # also timed in the default malloc environment pass
    requires: tuple = ()  # top-level modules it imports (absent: skipped with a note)
    install_hint = ""  # how to get them
    #: Times only the cases whose ``Case.rivals`` is set (seconds of compilation per case).
    rival = False
    #: Its library's thread count is fixed when the library starts: the runner
    #: times each thread count in its own worker process.
    fixed_threads = False
    about = ""  # a note on how it is run, printed when it has timed rows

    def installed(self) -> bool:
        """Whether every module of ``requires`` can be found (without importing it)."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def unavailable(self) -> str | None:
        """A note when the provider cannot run in this process, else None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed ({self.install_hint})"
        return None

    def handles(self, case: Case) -> bool:
        """Whether the provider computes `case` at all."""
        return True

    def set_threads(self, n: int) -> None:
        """Apply `n` threads to the provider's library (called before every case)."""

    def prepare(self, case: Case, data: Data) -> Call:
        """Build the call to time (see the module docstring)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- xent


def _ce_outputs(ret) -> dict:
    loss, grad = ret
    return {"loss": float(loss), "grad": grad}


def _scores_outputs(s) -> dict:
    return {"logsumexp": s.logsumexp, "entropy": s.entropy, "logprob": s.logprob,
            "rank": s.rank, "top_logprobs": s.top_logprobs}


class XentProvider(Provider):
    """The public xent API with ``num_threads=case.n_threads``."""

    name = "xent"

    def prepare(self, case, data):
        import xent

        x, t, nt, opts = data.x, data.t, case.n_threads, data.ce_options()
        if case.op == "fused":
            work = x.copy()
            return Call(lambda: xent.cross_entropy_and_grad(work, t, out=work, num_threads=nt,
                                                            **opts),
                        restore=lambda: np.copyto(work, x), outputs=_ce_outputs,
                        what="cross_entropy_and_grad(x, t, out=x)")
        if case.op == "latency":
            return Call(lambda: xent.cross_entropy_and_grad(x, t, num_threads=nt, **opts),
                        outputs=_ce_outputs, what="cross_entropy_and_grad(x, t)")
        if case.op == "loss":
            return Call(lambda: xent.cross_entropy(x, t, num_threads=nt, **opts),
                        outputs=lambda r: {"loss": float(r)}, what="cross_entropy(x, t)")
        if case.op == "token_scores":
            return Call(lambda: xent.token_scores(x, t, top_k=TOP_K, num_threads=nt),
                        outputs=_scores_outputs, what=f"token_scores(x, t, top_k={TOP_K})")
        if case.op == "adapter":
            return self._adapter(data, nt)
        fn = getattr(xent, case.op)
        return Call(lambda: fn(x, num_threads=nt), outputs=lambda r: {case.op: r},
                    what=f"{case.op}(x)")

    @staticmethod
    def _adapter(data, nt):
        try:
            import torch

            import xent.torch as xtorch
        except ImportError as exc:
            raise ProviderSkip(f"xent.torch is not importable ({exc})") from None
        crit = xtorch.CrossEntropyLoss(num_threads=nt)
        xa = _tensor(data.x.copy()).requires_grad_()
        return _torch_backward_call(crit, xa, torch.from_numpy(data.t),
                                    "xent.torch.CrossEntropyLoss()(x, t).backward()")


# --------------------------------------------------------------------------- torch


def _torch_backward_call(loss_fn, xt, tt, what: str) -> Call:
    """``loss_fn(xt, tt).backward()`` on a leaf whose ``.grad`` is reset before each call."""

    def run():
        xt.grad = None
        loss = loss_fn(xt, tt)
        loss.backward()
        return loss

    return Call(run, outputs=lambda loss: {"loss": loss.item(), "grad": _np(xt.grad)},
                what=what)


def _tensor(a: np.ndarray):
    """A tensor sharing `a` (an ml_dtypes bfloat16 array as a bfloat16 tensor)."""
    import torch

    if a.dtype.kind == "V":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _np(t) -> np.ndarray:
    """A tensor's values in NumPy (bfloat16 as float32: NumPy has no bfloat16)."""
    import torch

    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _torch_token_scores(torch, xt, tc):
    """log_softmax, gather, topk, entropy and rank: what a PyTorch server computes."""
    lp = torch.log_softmax(xt, -1)
    return {
        "logsumexp": xt[:, 0] - lp[:, 0],  # any column gives it back, in O(rows)
        "entropy": -(lp.exp() * lp).sum(-1),
        "logprob": lp.gather(-1, tc)[:, 0],
        "rank": (xt > xt.gather(-1, tc)).sum(-1) + 1,
        "top_logprobs": lp.topk(TOP_K, -1).values,
    }


class TorchProvider(Provider):
    """PyTorch eager on zero-copy ``torch.from_numpy`` views, ``torch.set_num_threads(n)``."""

    name = "torch"
    malloc_sensitive = True
    requires = ("torch",)
    install_hint = "pip install torch==2.13.0"

    def set_threads(self, n):
        import torch

        torch.set_num_threads(n)

    def wrap(self, fn: Callable) -> Callable:
        """The function to time for a loss or ``torch.<op>``: `fn` itself (eager)."""
        return fn

    def prepare(self, case, data):
        import torch

        F = torch.nn.functional
        xt, tt = _tensor(data.x), torch.from_numpy(data.t)
        kw = {"label_smoothing": data.label_smoothing}
        if data.weight is not None:
            kw["weight"] = torch.from_numpy(data.weight)
        if case.op in ("fused", "latency"):
            return _torch_backward_call(self.wrap(lambda a, b: F.cross_entropy(a, b, **kw)),
                                        xt.requires_grad_(), tt,
                                        "F.cross_entropy(x, t).backward()")
        if case.op == "adapter":
            return _torch_backward_call(torch.nn.CrossEntropyLoss(), xt.requires_grad_(), tt,
                                        "nn.CrossEntropyLoss()(x, t).backward()")
        if case.op == "loss":
            loss = self.wrap(lambda a, b: F.cross_entropy(a, b, **kw))
            return Call(lambda: loss(xt, tt), outputs=lambda r: {"loss": r.item()},
                        what="F.cross_entropy(x, t)")
        if case.op == "token_scores":
            tc = tt[:, None]
            return Call(lambda: _torch_token_scores(torch, xt, tc),
                        outputs=lambda r: {k: _np(v) for k, v in r.items()},
                        what="log_softmax+gather+topk+entropy+rank")
        op = getattr(torch, case.op)
        fn = self.wrap(lambda a: op(a, -1))
        return Call(lambda: fn(xt), outputs=lambda r: {case.op: _np(r)},
                    what=f"torch.{case.op}(x, -1)")


# --------------------------------------------------------------------------- NumPy


class NumpyProvider(Provider):
    """``numpy_ops.py``, in the input dtype (NumPy: one thread whatever the case says).

    Cross-entropy only for a few classes (at most ``MAX_CE_COLS``), where it
    is a meaningful yardstick; its large-vocabulary runs would only add
    minutes.
    """

    name = "numpy"
    MAX_CE_COLS = 64

    def handles(self, case):
        if case.dtype in HALF:  # NumPy has no fast 16-bit math
            return False
        if case.op in ("logsumexp", "softmax", "log_softmax"):
            return True
        return case.op in ("fused", "loss") and case.n_cols <= self.MAX_CE_COLS

    def prepare(self, case, data):
        x, t, opts = data.x, data.t, data.ce_options()
        if case.op == "fused":
            grad = np.empty_like(x)
            return Call(lambda: numpy_ops.cross_entropy_and_grad(x, t, out=grad, **opts),
                        outputs=_ce_outputs, what="numpy_ops.cross_entropy_and_grad")
        if case.op == "loss":
            return Call(lambda: numpy_ops.cross_entropy(x, t, **opts),
                        outputs=lambda r: {"loss": float(r)}, what="numpy_ops.cross_entropy")
        fn = getattr(numpy_ops, case.op)
        return Call(lambda: fn(x), outputs=lambda r: {case.op: r}, what=f"numpy_ops.{case.op}")


# --------------------------------------------------------------------------- yardsticks

#: Arrays smaller than this are passed over by one thread (a pool hand-off costs more).
MIN_SPLIT_BYTES = 1 << 20
_POOLS: dict = {}


def _parallel(fn, n_threads: int, *arrays: np.ndarray) -> Callable[[], None]:
    """A call running ``fn(*pieces)`` on `n_threads` equal pieces of the flat `arrays`."""
    k = n_threads if arrays[0].nbytes >= MIN_SPLIT_BYTES else 1
    pieces = [np.array_split(a.reshape(-1), k) for a in arrays]
    if k == 1:
        args = [p[0] for p in pieces]
        return lambda: fn(*args)
    pool = _POOLS.setdefault(k, ThreadPoolExecutor(k, thread_name_prefix="yardstick"))
    return lambda: list(pool.map(fn, *pieces))


class CopyYardstick(Provider):
    """``np.copyto`` of the logits into another buffer, on the case's threads."""

    name = "copy"
    kind = "yardstick"

    def prepare(self, case, data):
        dst = np.empty_like(data.x)
        return Call(_parallel(np.copyto, case.n_threads, dst, data.x),
                    what=f"np.copyto(dst, x), {case.n_threads} thread(s)")


class ReadYardstick(Provider):
    """``np.add.reduce`` of the logits: one read-only pass, on the case's threads."""

    name = "read"
    kind = "yardstick"

    def prepare(self, case, data):
        return Call(_parallel(np.add.reduce, case.n_threads, data.x),
                    what=f"np.add.reduce(x), {case.n_threads} thread(s)")


# --------------------------------------------------------------------------- registry


def all_providers() -> list:
    """Every provider, in column order: xent, torch, numpy, the rivals, then the yardsticks."""
    from .rivals import JaxProvider, TorchCompileProvider  # rivals.py imports this module

    return [XentProvider(), TorchProvider(), NumpyProvider(), TorchCompileProvider(),
            JaxProvider(), CopyYardstick(), ReadYardstick()]
