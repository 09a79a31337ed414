"""The rival providers: torch.compile (Inductor CPU) and JAX (``jax.jit`` of optax's loss).

Both are ordinary providers of the harness (``providers.py``), timed with the
same discipline as the others, with three differences:

* **Compilation is a separate step.** ``Call.compile`` compiles (torch.compile:
  the first call, forward and backward; JAX: ``jit(...).lower(...).compile()``),
  timed once, reported as ``compile_ms`` and never part of a timed call.
* **Some rows only.** Seconds of compilation per case: they time the cases
  whose ``Case.rivals`` is set (every row of ``full`` and ``rivals``, seven of
  ``quick``, none of ``tiny``; see ``cases.py``).
* **Threads.** torch.compile follows ``torch.set_num_threads``, but Inductor
  bakes the count into the code it generates and dynamo's guards do not check
  it: every case gets a fresh compile (``torch._dynamo.reset()``; Inductor's
  on-disk cache, keyed by the thread count too, makes a repeated compile
  cheap). XLA sizes its CPU thread pool once, when JAX's client starts
  (``PJRT_NPROC``): the first ``set_threads`` of a process fixes it, the
  runner times each thread count in its own worker process, and a case with
  another count in the same process is skipped with a note.

Missing packages make ``unavailable()`` return a note (``pip install -e
'.[rivals]'``) and the run goes on without the column.
"""

from __future__ import annotations

import os

import numpy as np

from .providers import Call, Provider, ProviderSkip, TorchProvider, _ce_outputs

INSTALL_HINT = "pip install -e '.[rivals]'"
#: Ops the rivals compute (optax has no token_scores; the adapter is xent's own module).
RIVAL_OPS = ("fused", "latency", "loss", "logsumexp", "softmax", "log_softmax")


# --------------------------------------------------------------------------- torch.compile


class TorchCompileProvider(TorchProvider):
    """``torch.compile(fn, dynamic=False)`` of the torch provider's calls (Inductor, CPU)."""

    name = "torch.compile"
    malloc_sensitive = False  # timed in the tuned pass only: a second compile per case
    install_hint = INSTALL_HINT
    rival = True
    about = ("Inductor CPU, dynamic=False, compiled once per case (the first call, forward "
             "and backward) with Inductor's on-disk cache as configured; timed under the "
             "tuned malloc only")

    def unavailable(self):
        why = super().unavailable()
        if why is None:
            import torch

            if not hasattr(torch, "compile"):
                why = f"torch {torch.__version__} has no torch.compile"
        return why

    def handles(self, case):
        return case.rivals and case.op in RIVAL_OPS

    def wrap(self, fn):
        import torch

        return torch.compile(fn, dynamic=False)

    def prepare(self, case, data):
        import torch
        from torch._dynamo.utils import counters

        torch._dynamo.reset()  # see the module docstring: one compile per case
        call = super().prepare(case, data)
        call.what = f"torch.compile: {call.what}"
        before = _cache_counts(counters)

        def compile_first_call():
            out = call.run()
            hits, misses = (n - m for n, m in zip(_cache_counts(counters), before))
            warm = hits and not misses
            call.note = "warm: from the on-disk cache" if warm else "cold: Inductor generated code"
            return out

        call.compile = compile_first_call
        return call


def _cache_counts(counters) -> tuple:
    """(hits, Inductor misses) of torch.compile's on-disk caches (AOTAutograd's, Inductor's)."""
    aot, inductor = counters["aot_autograd"], counters["inductor"]
    return aot["autograd_cache_hit"] + inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"]


# --------------------------------------------------------------------------- JAX


def _pool_size_from_env() -> int:
    """The size XLA gives its CPU pool (xla::DefaultThreadPoolSize): PJRT_NPROC, NPROC, CPUs."""
    for var in ("PJRT_NPROC", "NPROC"):
        try:
            return max(0, int(os.environ[var]))
        except (KeyError, ValueError):
            pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def start_xla(n_threads: int) -> int:
    """Start JAX's CPU backend with `n_threads` pool threads if it has not started; its size.

    XLA reads ``PJRT_NPROC`` when its CPU client is created (JAX's first device
    use, not its import), so it is set just before.  float64 needs
    ``jax_enable_x64``; float32 inputs still compute in float32 (checked in
    ``JaxProvider``).
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:  # another JAX: assume not started yet
        backends_are_initialized = lambda: False  # noqa: E731
    if backends_are_initialized():  # started before the harness: its pool is what it is
        return _pool_size_from_env()
    os.environ["PJRT_NPROC"] = str(n_threads)
    jax.config.update("jax_platforms", "cpu")
    jax.devices()  # creates the client now, with this pool
    return n_threads


def _jax_function(op: str):
    """(function of the device arrays, its description) for `op`."""
    import jax
    import optax

    def mean_ce(x, t):
        return optax.softmax_cross_entropy_with_integer_labels(x, t).mean()

    ce = "mean(optax.softmax_cross_entropy_with_integer_labels(x, t))"
    if op in ("fused", "latency"):
        return jax.value_and_grad(mean_ce), f"jit(value_and_grad({ce}))"
    if op == "loss":
        return mean_ce, f"jit({ce})"
    fn = getattr(jax.nn, op)
    return (lambda x: fn(x, axis=-1)), f"jit(jax.nn.{op}(x, axis=-1))"


def _jax_outputs(op: str):
    if op in ("fused", "latency"):
        return lambda r: _ce_outputs((r[0], np.asarray(r[1])))
    if op == "loss":
        return lambda r: {"loss": float(r)}
    return lambda r: {op: np.asarray(r)}


class JaxProvider(Provider):
    """``jax.jit`` of optax's mean cross-entropy (``value_and_grad`` for fwd+bwd) and ``jax.nn``.

    Inputs are ``jax.device_put`` copies made when the case is prepared (int32
    targets); optax's integer-label loss has no class weights, label smoothing
    or ignored targets, so only the plain cases are timed.
    """

    name = "jax"
    requires = ("jax", "jaxlib", "optax")
    install_hint = INSTALL_HINT
    rival = True
    fixed_threads = True
    about = ("XLA's CPU thread pool is sized once, when JAX starts (PJRT_NPROC): each "
             "thread count is timed in its own worker process with PJRT_NPROC=n; in a "
             "single process (--in-process, the pytest suite) only its first thread count")
    #: XLA's CPU pool threads in this process, fixed by the first ``set_threads``.
    pool: int | None = None
    #: (op, shape, dtype) -> compiled executable, reused within the process.
    _compiled: dict = {}

    def handles(self, case):
        return case.rivals and case.op in RIVAL_OPS and not case.options

    def set_threads(self, n):
        if JaxProvider.pool is None:
            JaxProvider.pool = start_xla(n)

    def prepare(self, case, data):
        if self.pool != case.n_threads:
            raise ProviderSkip(f"XLA's CPU pool has {self.pool} thread(s) in this process, "
                               f"fixed when JAX started; the case has {case.n_threads} "
                               "(python -m xent bench times each count in its own worker)")
        import jax

        fn, what = _jax_function(case.op)
        args = [jax.device_put(data.x)]
        if case.op in ("fused", "latency", "loss"):
            args.append(jax.device_put(data.t.astype(np.int32)))
        for out in jax.tree_util.tree_leaves(jax.eval_shape(fn, *args)):
            if out.dtype != np.dtype(case.dtype):  # jax_enable_x64 must not widen float32
                raise ProviderSkip(f"JAX computes in {out.dtype}, not {case.dtype}")
        key = (case.op, case.shape, case.dtype)
        ready: dict = {}
        pool = f"XLA CPU pool: {self.pool} thread(s)"

        def compile_step():
            cached = key in self._compiled
            if not cached:
                self._compiled[key] = jax.jit(fn).lower(*args).compile()
            ready["exe"] = self._compiled[key]
            call.note = f"{pool}; reused this process's executable" if cached else pool

        def run():
            if "exe" not in ready:
                compile_step()
            return jax.block_until_ready(ready["exe"](*args))

        call = Call(run, compile=compile_step, outputs=_jax_outputs(case.op), what=what,
                    note=pool)
        return call
