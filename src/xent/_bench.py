"""``python -m xent bench``: time xent against PyTorch and NumPy on this machine.

Design
------
The command line process is only a coordinator; it never imports torch.  It
starts two worker processes one after the other:

1. the *main* worker, with ``MALLOC_MMAP_MAX_=0`` and
   ``MALLOC_TRIM_THRESHOLD_=100000000000`` so that glibc keeps freed memory and
   PyTorch's large temporaries are not page-faulted in again on every call
   (PyTorch at its best).  It measures xent, torch, the NumPy reference and an
   ``np.copyto`` of the same array *in the same run*, alternating the libraries
   repeat by repeat with a pause between calls of different libraries (an idle
   OpenMP pool spins for a while and would steal the other library's core).  It
   also measures whether mixing xent and torch calls slows either down;
2. the *default-env* worker, with those two variables removed, which times only
   the torch provider: PyTorch as users meet it.

Each worker writes its results as JSON to a temporary file; the coordinator
merges them, prints the table and the machine description, and optionally
writes ``--json`` and ``--plot`` files.

Timing: ``time.perf_counter``, arrays built and in-place inputs restored
outside the timed region, warm-up calls per provider until two in a row agree
(``_settle``), then repeats until a time budget or a repeat cap is reached; the
reported number is the median.
Calls shorter than a couple of milliseconds are timed in blocks of several
back-to-back calls (only for providers that need no restore between calls).

In full mode every case whose input reaches ``BIG_BYTES`` runs in a worker
process of its own (see ``plan``): under the tuned malloc environment the heap
of a process that ran PyTorch on 500 MB inputs never shrinks.

Environment knobs (for tests and debugging):

``XENT_BENCH_TINY=1``
    every case tiny, 1-2 repeats (a few seconds; used by the test suite);
``XENT_BENCH_ONLY=sub1,sub2``
    only the cases whose id (``op|RxC|dtype|tN``) contains one of the substrings;
``XENT_BENCH_MALLOC_TUNED=0``
    run the main pass in the default malloc environment and skip the second
    pass (less memory; the torch column is then PyTorch as users meet it);
``XENT_BENCH_INPROCESS=1``
    run the main pass in the current process (no subprocess, no default-env pass).
"""

from __future__ import annotations

import datetime
import gc
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["run_bench"]

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
PROVIDERS = ("xent", "torch", "numpy", "copy")
BIG_BYTES = 200_000_000  # inputs this large get a worker process of their own (full mode)
THREADS = 2
SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Repeat policy of one benchmark scale (``full``, ``quick`` or ``tiny``)."""

    scale: str
    min_reps: int
    max_reps: int
    budget_s: float  # stop repeating once this much time was measured in a case
    wall_cap_s: float  # ... or once a case has run this long (wall clock)
    pause_s: float  # sleep before a call when more than one library is in the case
    min_sample_s: float  # block short calls so one sample lasts at least this long
    max_inner: int
    mix_calls: int  # calls per block in the mixing measurement
    mix_rounds: int
    settle_calls: int  # warm-up: at most this many calls until two in a row agree ...
    settle_cap_s: float  # ... or until the warm-up has taken this long


_SETTINGS = {
    "full": Settings("full", 3, 40, 2.0, 30.0, 0.03, 0.005, 2000, 30, 3, 10, 25.0),
    "quick": Settings("quick", 3, 15, 0.3, 3.0, 0.02, 0.002, 500, 10, 2, 8, 4.0),
    "tiny": Settings("tiny", 1, 2, 0.0, 1.0, 0.001, 0.0, 1, 2, 1, 1, 0.0),
}

# Two warm-up calls "agree" when the slower is within this factor of the faster.
SETTLE_RATIO = 1.25


def _scale(quick: bool) -> str:
    if os.environ.get("XENT_BENCH_TINY", "") not in ("", "0"):
        return "tiny"
    return "quick" if quick else "full"


# --------------------------------------------------------------------------- cases


@dataclass
class Impl:
    """One provider's timed call, with an optional untimed restore step before it."""

    run: Callable[[], object]
    setup: Callable[[], object] | None = None
    what: str = ""


@dataclass
class Case:
    """One row of the table: an operation at a shape, dtype and thread count."""

    key: str
    op: str
    shape: tuple
    dtype: str
    threads: int
    needs: tuple  # xent attributes the case needs ("torch" means the xent.torch module)
    traffic: float  # bytes the xent call must move, in multiples of the logits' size
    make: Callable[[Case, set], dict] = field(repr=False)  # (case, wanted) -> {name: Impl}

    @property
    def id(self) -> str:
        shp = "x".join(map(str, self.shape))
        return f"{self.key}|{shp}|{self.dtype}|t{self.threads}"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


_POOL: dict = {}
_POOL_SIZE = 1 << 21  # 2M random values, tiled: building a 500 MB input costs a copy


def _logits(shape, dtype) -> np.ndarray:
    """Logits ~ N(0, 3^2), tiled from a fixed pool of random numbers (fast to build)."""
    dt = np.dtype(dtype)
    if dt not in _POOL:
        rng = np.random.default_rng(0)
        _POOL[dt] = (rng.standard_normal(_POOL_SIZE) * 3.0).astype(dt)
    pool = _POOL[dt]
    flat = np.empty(int(np.prod(shape)), dtype=dt)
    for i in range(0, flat.size, pool.size):
        n = min(pool.size, flat.size - i)
        flat[i : i + n] = pool[:n]
    return flat.reshape(shape)


def _targets(shape, ignore_frac=0.0, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, shape[-1], size=shape[:-1], dtype=np.int64)
    if ignore_frac:
        t[rng.random(t.shape) < ignore_frac] = -100
    return t


def _torch():
    import torch

    return torch


def _copy_impl(x: np.ndarray, dst: np.ndarray | None = None) -> Impl:
    dst = np.empty_like(x) if dst is None else dst
    return Impl(run=lambda: np.copyto(dst, x), what="np.copyto(dst, x)")


def _ce_options(variant: str, c: int, dtype: str):
    """(xent kwargs, torch kwargs builder, ignored fraction) of a cross-entropy variant."""
    if variant == "ls":
        return {"label_smoothing": 0.1}, lambda torch: {"label_smoothing": 0.1}, 0.0
    if variant == "weight":
        w = np.random.default_rng(2).uniform(0.5, 2.0, size=c).astype(dtype)
        return {"weight": w}, lambda torch: {"weight": torch.from_numpy(w)}, 0.0
    if variant == "ignore":
        return {}, lambda torch: {}, 0.1
    if variant == "all":  # the combined row: smoothing, class weight, 10% ignored
        w = np.random.default_rng(2).uniform(0.5, 2.0, size=c).astype(dtype)
        return (
            {"weight": w, "label_smoothing": 0.1},
            lambda torch: {"weight": torch.from_numpy(w), "label_smoothing": 0.1},
            0.1,
        )
    return {}, lambda torch: {}, 0.0


def _make_fused(variant: str = "", inplace: bool = True):
    """Fused loss+grad: xent.cross_entropy_and_grad vs torch F.cross_entropy + backward."""

    def make(case: Case, want: set) -> dict:
        xo, to, ign = _ce_options(variant, case.shape[-1], case.dtype)
        x = _logits(case.shape, case.dtype)
        t = _targets(case.shape, ign)
        nt = case.threads
        impls = {}
        work = None
        if "xent" in want:
            import xent

            if inplace:
                work = x.copy()
                impls["xent"] = Impl(
                    run=lambda: xent.cross_entropy_and_grad(
                        work, t, out=work, num_threads=nt, **xo
                    ),
                    setup=lambda: np.copyto(work, x),
                    what="cross_entropy_and_grad(x, t, out=x)",
                )
            else:
                impls["xent"] = Impl(
                    run=lambda: xent.cross_entropy_and_grad(x, t, num_threads=nt, **xo),
                    what="cross_entropy_and_grad(x, t)",
                )
        if "torch" in want:
            torch = _torch()
            F = torch.nn.functional
            xt = torch.from_numpy(x).requires_grad_()
            tt = torch.from_numpy(t)
            kw = to(torch)

            def run_torch():
                xt.grad = None
                F.cross_entropy(xt, tt, **kw).backward()

            impls["torch"] = Impl(run=run_torch, what="F.cross_entropy(x, t).backward()")
        if "copy" in want:
            impls["copy"] = _copy_impl(x, work)
        return impls

    return make


def _make_loss(case: Case, want: set) -> dict:
    """Loss only: xent.cross_entropy vs torch F.cross_entropy forward."""
    x = _logits(case.shape, case.dtype)
    t = _targets(case.shape)
    nt = case.threads
    impls = {}
    if "xent" in want:
        import xent

        impls["xent"] = Impl(
            run=lambda: xent.cross_entropy(x, t, num_threads=nt), what="cross_entropy(x, t)"
        )
    if "torch" in want:
        torch = _torch()
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        F = torch.nn.functional
        impls["torch"] = Impl(run=lambda: F.cross_entropy(xt, tt), what="F.cross_entropy(x, t)")
    if "numpy" in want and case.shape[-1] <= 64:
        impls["numpy"] = Impl(run=lambda: _np_ce(x, t), what="lse(x) - x[t] (NumPy)")
    if "copy" in want:
        impls["copy"] = _copy_impl(x)
    return impls


def _np_lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def _np_ce(x: np.ndarray, t: np.ndarray):
    lse = _np_lse(x)
    picked = np.take_along_axis(x, t[..., None], axis=-1)[..., 0]
    return (lse - picked).mean()


def _np_softmax(x: np.ndarray, log: bool) -> np.ndarray:
    s = x - x.max(axis=-1, keepdims=True)
    if log:
        s -= np.log(np.exp(s).sum(axis=-1, keepdims=True))
        return s
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def _make_lse(case: Case, want: set) -> dict:
    """logsumexp over the last axis."""
    x = _logits(case.shape, case.dtype)
    nt = case.threads
    impls = {}
    if "xent" in want:
        import xent

        impls["xent"] = Impl(run=lambda: xent.logsumexp(x, num_threads=nt), what="logsumexp(x)")
    if "torch" in want:
        torch = _torch()
        xt = torch.from_numpy(x)
        impls["torch"] = Impl(run=lambda: torch.logsumexp(xt, -1), what="torch.logsumexp(x, -1)")
    if "numpy" in want:
        impls["numpy"] = Impl(run=lambda: _np_lse(x), what="m + log(sum(exp(x - m)))")
    if "copy" in want:
        impls["copy"] = _copy_impl(x)
    return impls


def _make_softmax(log: bool):
    """softmax / log_softmax over the last axis, output allocated by every provider."""

    def make(case: Case, want: set) -> dict:
        x = _logits(case.shape, case.dtype)
        nt = case.threads
        impls = {}
        name = "log_softmax" if log else "softmax"
        if "xent" in want:
            import xent

            fn = getattr(xent, name)
            impls["xent"] = Impl(run=lambda: fn(x, num_threads=nt), what=f"{name}(x)")
        if "torch" in want:
            torch = _torch()
            xt = torch.from_numpy(x)
            tfn = getattr(torch, name)
            impls["torch"] = Impl(run=lambda: tfn(xt, -1), what=f"torch.{name}(x, -1)")
        if "numpy" in want:
            impls["numpy"] = Impl(run=lambda: _np_softmax(x, log), what="max-shifted NumPy")
        if "copy" in want:
            impls["copy"] = _copy_impl(x)
        return impls

    return make


def _make_token_scores(case: Case, want: set) -> dict:
    """token_scores(top_k=20) vs torch log_softmax + gather + topk + entropy + rank."""
    x = _logits(case.shape, case.dtype)
    t = _targets(case.shape)
    nt = case.threads
    impls = {}
    if "xent" in want:
        import xent

        impls["xent"] = Impl(
            run=lambda: xent.token_scores(x, t, top_k=20, num_threads=nt),
            what="token_scores(x, t, top_k=20)",
        )
    if "torch" in want:
        torch = _torch()
        xt = torch.from_numpy(x)
        tc = torch.from_numpy(t)[..., None]

        def run_torch():
            lp = torch.log_softmax(xt, -1)
            logprob = lp.gather(-1, tc)
            top = lp.topk(20, -1)
            entropy = -(lp.exp() * lp).sum(-1)
            rank = (xt > xt.gather(-1, tc)).sum(-1) + 1
            return logprob, top, entropy, rank

        impls["torch"] = Impl(run=run_torch, what="log_softmax+gather+topk+entropy+rank")
    if "copy" in want:
        impls["copy"] = _copy_impl(x)
    return impls


def _make_adapter(case: Case, want: set) -> dict:
    """xent.torch.CrossEntropyLoss vs torch.nn.CrossEntropyLoss, forward + backward."""
    x = _logits(case.shape, case.dtype)
    t = _targets(case.shape)
    impls = {}
    if "xent" in want:
        import torch

        import xent
        import xent.torch as xtorch

        xent.set_num_threads(case.threads)
        crit = xtorch.CrossEntropyLoss()
        xa = torch.from_numpy(x.copy()).requires_grad_()
        ta = torch.from_numpy(t)

        def run_xent():
            xa.grad = None
            crit(xa, ta).backward()

        impls["xent"] = Impl(run=run_xent, what="xent.torch.CrossEntropyLoss()(x, t).backward()")
    if "torch" in want:
        torch = _torch()
        tcrit = torch.nn.CrossEntropyLoss()
        xt = torch.from_numpy(x).requires_grad_()
        tt = torch.from_numpy(t)

        def run_torch():
            xt.grad = None
            tcrit(xt, tt).backward()

        impls["torch"] = Impl(run=run_torch, what="nn.CrossEntropyLoss()(x, t).backward()")
    if "copy" in want:
        impls["copy"] = _copy_impl(x)
    return impls


def _shape(scale: str, full: tuple, quick: tuple | None = None) -> tuple:
    if scale == "tiny":  # distinct tiny shapes keep the case ids unique
        rows, c = full
        return (min(rows, 8), c // 125 if c > 1000 else min(c, 100))
    if scale == "quick" and quick is not None:
        return quick
    return full


# Rows only in the full run (the quick run keeps at least one row of every other key).
FULL_ONLY_KEYS = frozenset({"fused_ls", "fused_w", "fused_ign"})


def build_cases(scale: str) -> list[Case]:
    """All benchmark cases of a scale, in table order.

    ``quick`` uses smaller shapes and drops a few second shapes of the same
    operation (every operation keeps at least one row); ``tiny`` runs the quick
    rows at tiny shapes (for tests).
    """
    big = _shape(scale, (4096, 32000), (1024, 32000))
    vocab = _shape(scale, (1024, 128256), (256, 128256))
    mid = _shape(scale, (32768, 1000), (8192, 1000))
    few = _shape(scale, (262144, 10), (65536, 10))
    f32, f64 = "float32", "float64"
    fused = ("cross_entropy_and_grad",)
    c = []

    def add(key, op, shape, dtype, needs, traffic, make, threads=THREADS, quick=True):
        if quick or scale == "full":
            c.append(Case(key, op, shape, dtype, threads, needs, traffic, make))

    add("fused", "fused loss+grad (in place)", big, f32, fused, 2, _make_fused())
    add("fused", "fused loss+grad (in place)", vocab, f32, fused, 2, _make_fused())
    add("loss", "loss only", big, f32, ("cross_entropy",), 1, _make_loss)
    add("loss", "loss only", vocab, f32, ("cross_entropy",), 1, _make_loss, quick=False)
    add("logsumexp", "logsumexp", big, f32, ("logsumexp",), 1, _make_lse)
    add("logsumexp", "logsumexp", vocab, f32, ("logsumexp",), 1, _make_lse, quick=False)
    add("fused", "fused loss+grad (in place)", mid, f32, fused, 2, _make_fused())
    add("fused", "fused loss+grad (in place)", mid, f64, fused, 2, _make_fused())
    opts = "fused, smoothing+weight+10% ignored"
    add("fused_all", opts, big, f32, fused, 2, _make_fused("all"))
    # the combined row's options one by one (FULL_ONLY_KEYS)
    for key, op, variant in (
        ("fused_ls", "fused, label_smoothing=0.1", "ls"),
        ("fused_w", "fused, class weight", "weight"),
        ("fused_ign", "fused, 10% ignored", "ignore"),
    ):
        add(key, op, big, f32, fused, 2, _make_fused(variant), quick=False)
    add("fused", "fused loss+grad (in place)", few, f32, fused, 2, _make_fused())
    add("loss", "loss only", few, f32, ("cross_entropy",), 1, _make_loss)
    add("logsumexp", "logsumexp", few, f32, ("logsumexp",), 1, _make_lse)
    for shp in ((1, 32000), (8, 128256)):
        add(
            "latency",
            "latency fwd+bwd (whole call)",
            _shape(scale, shp),
            f32,
            fused,
            2,
            _make_fused(inplace=False),
        )
    add("fused", "fused loss+grad (in place)", big, f32, fused, 2, _make_fused(), threads=1)
    add("softmax", "softmax", big, f32, ("softmax",), 2, _make_softmax(False))
    add("log_softmax", "log_softmax", big, f32, ("log_softmax",), 2, _make_softmax(True))
    for shp, q in (((8, 128256), True), ((64, 32000), False), ((1, 128256), True)):
        add(
            "token_scores",
            "token_scores top_k=20",
            _shape(scale, shp),
            f32,
            ("token_scores",),
            1,
            _make_token_scores,
            quick=q,
        )
    add("adapter", "xent.torch.CrossEntropyLoss fwd+bwd", big, f32, ("torch",), 2, _make_adapter)
    return c


def _missing(case: Case) -> str | None:
    """Why the case cannot run with this xent build (None if it can)."""
    import xent

    for name in case.needs:
        if name == "torch":
            try:
                import xent.torch  # noqa: F401
            except ImportError as exc:
                return f"xent.torch not importable ({exc})"
        elif not hasattr(xent, name):
            return f"xent.{name} not available in this build"
    return None


# --------------------------------------------------------------------------- timing


def _median(v: list) -> float:
    return float(np.median(v)) if v else math.nan


def _set_threads(n: int, have_torch: bool) -> None:
    import xent

    xent.set_num_threads(n)
    if have_torch:
        _torch().set_num_threads(n)


def _settle(impl: Impl, pause: float, st: Settings) -> None:
    """Warm-up calls until two in a row take about the same time.

    The first call pays one-time costs (lazy initialisation, page faults).  Under
    the tuned malloc environment PyTorch's large cases need several more: measured
    here, fwd+bwd on 4096x32000 took 1.0-2.7 s for its first five calls, then 87 ms.
    """
    times: list = []
    start = time.perf_counter()
    while True:
        if impl.setup:
            impl.setup()
        time.sleep(pause)
        t0 = time.perf_counter()
        impl.run()
        times.append(time.perf_counter() - t0)
        if len(times) >= max(1, st.settle_calls) or time.perf_counter() - start >= st.settle_cap_s:
            return
        if len(times) >= 2 and max(times[-2:]) <= SETTLE_RATIO * min(times[-2:]):
            return


def measure(impls: dict, st: Settings) -> dict:
    """Time each provider's call; return ``{name: {"ms", "min_ms", "n", "inner"}}``.

    The providers take turns within each repeat (the starting provider rotates
    from one repeat to the next), with a pause of ``st.pause_s`` before every
    call when more than one provider is present, so that the previous library's
    OpenMP pool has gone idle.
    """
    names = list(impls)
    # The same pause whether one or several providers run, so that a provider timed
    # alone (the default-environment PyTorch pass) is measured under the same
    # conditions (idle thread pool) as in the shared pass.
    pause = st.pause_s
    inner = {}
    for n in names:  # warm-up, and calibrate blocks of back-to-back calls
        impl = impls[n]
        _settle(impl, pause, st)
        k = 1
        if impl.setup is None and st.min_sample_s > 0:
            t0 = time.perf_counter()
            impl.run()
            dt = time.perf_counter() - t0
            if 0 < dt < st.min_sample_s:
                k = min(st.max_inner, math.ceil(st.min_sample_s / dt))
        inner[n] = k
    samples: dict = {n: [] for n in names}
    start = time.perf_counter()
    timed = 0.0
    rep = 0
    while True:
        r = rep % len(names)
        for n in names[r:] + names[:r]:
            impl, k = impls[n], inner[n]
            if impl.setup:
                impl.setup()
            time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(k):
                impl.run()
            dt = time.perf_counter() - t0
            timed += dt
            samples[n].append(dt / k)
        rep += 1
        if rep >= st.min_reps and (
            rep >= st.max_reps
            or timed >= st.budget_s
            or time.perf_counter() - start >= st.wall_cap_s
        ):
            break
    return {
        n: {
            "ms": _median(samples[n]) * 1e3,
            "min_ms": min(samples[n]) * 1e3,
            "n": len(samples[n]),
            "inner": inner[n],
        }
        for n in names
    }


def _mixing(scale: str, st: Settings) -> list:
    """Does calling xent right before torch (or torch before xent) slow the second down?

    For each library, blocks of back-to-back calls of that library alone (the
    other one idle for 50 ms first) alternate with blocks where every timed
    call directly follows an untimed call of the other library.
    """
    import xent

    torch = _torch()
    shape = {"full": (1024, 32000), "quick": (256, 32000)}.get(scale, (4, 64))
    x = _logits(shape, "float32")
    t = _targets(shape)
    xt = torch.from_numpy(x.copy())
    tt = torch.from_numpy(t)
    if hasattr(xent, "cross_entropy_and_grad"):
        what = "fused loss+grad"
        xtg = xt.requires_grad_()

        def run_x():
            xent.cross_entropy_and_grad(x, t, num_threads=THREADS)

        def run_t():
            xtg.grad = None
            torch.nn.functional.cross_entropy(xtg, tt).backward()

    else:
        what = "log_softmax"

        def run_x():
            xent.log_softmax(x, num_threads=THREADS)

        def run_t():
            torch.log_softmax(xt, -1)

    _set_threads(THREADS, True)
    run_x()
    run_t()
    out = []
    for lib, target, other in (("torch", run_t, run_x), ("xent", run_x, run_t)):
        alone, mixed = [], []
        for _ in range(st.mix_rounds):
            time.sleep(0.05)
            for _ in range(st.mix_calls):
                t0 = time.perf_counter()
                target()
                alone.append(time.perf_counter() - t0)
            time.sleep(0.05)
            for _ in range(st.mix_calls):
                other()
                t0 = time.perf_counter()
                target()
                mixed.append(time.perf_counter() - t0)
        a, m = _median(alone) * 1e3, _median(mixed) * 1e3
        slow = (m / a - 1.0) * 100.0 if a > 0 else math.nan
        out.append(
            {
                "library": lib,
                "other": "xent" if lib == "torch" else "torch",
                "op": what,
                "shape": list(shape),
                "dtype": "float32",
                "threads": THREADS,
                "alone_ms": a,
                "interleaved_ms": m,
                "slowdown_pct": slow,
                "within_10pct": bool(slow <= 10.0),
                "n": len(alone),
            }
        )
    return out


def _versions(have_torch: bool) -> dict:
    from ._config import config_dict

    info = config_dict()
    if have_torch:
        torch = _torch()
        info["torch"] = torch.__version__
        info["torch_num_threads"] = torch.get_num_threads()
    info["malloc_env"] = {k: os.environ.get(k) for k in TUNED_ENV}
    return info


def worker(config: dict) -> dict:
    """Measure every case with the wanted providers; return the results as a dict."""
    scale = config["scale"]
    st = _SETTINGS[scale]
    label = config.get("label", "main")
    want = set(config["providers"])
    notices = []
    have_torch = importlib.util.find_spec("torch") is not None
    if "torch" in want and not have_torch:
        want.discard("torch")
        notices.append("torch is not installed: torch columns skipped")
    all_cases = _selected(scale)
    index = {c.id: i for i, c in enumerate(all_cases, 1)}
    ids = config.get("case_ids")
    cases = all_cases if ids is None else [c for c in all_cases if c.id in set(ids)]
    results, skipped = [], []
    reported = set()
    for case in cases:
        shp = "x".join(map(str, case.shape))
        num = f"{index[case.id]:2d}/{len(all_cases)}"
        head = f"[{label} {num}] {case.op} {shp} {case.dtype} t={case.threads}"
        why = _missing(case)
        if why is None and case.needs == ("torch",) and not have_torch:
            why = "torch is not installed"
        if why is not None:
            skipped.append({"id": case.id, "reason": why})
            if why not in reported:
                reported.add(why)
                notices.append(f"skipped rows needing it: {why}")
            print(f"{head}: skipped ({why})", file=sys.stderr, flush=True)
            continue
        t0 = time.perf_counter()
        _set_threads(case.threads, have_torch and "torch" in want)
        try:
            impls = case.make(case, want)
            res = measure(impls, st)
        except Exception as exc:  # a provider failed: report it, keep benchmarking
            why = f"error: {type(exc).__name__}: {exc}"
            skipped.append({"id": case.id, "reason": why})
            notices.append(f"{case.id} failed ({why})")
            print(f"{head}: FAILED ({why})", file=sys.stderr, flush=True)
            impls = None
            gc.collect()
            continue
        results.append(
            {
                "id": case.id,
                "what": {n: impl.what for n, impl in impls.items()},
                "timings": res,
                "peak_rss_gb": _peak_rss_gb(),
            }
        )
        del impls
        gc.collect()
        msg = "  ".join(f"{n} {r['ms']:.3g} ms" for n, r in res.items())
        took = time.perf_counter() - t0
        print(
            f"{head}: {msg}  ({took:.1f} s, peak RSS {_peak_rss_gb():.2f} GB)",
            file=sys.stderr,
            flush=True,
        )
    mixing = []
    if config.get("mixing") and have_torch and "torch" in want:
        print(
            f"[{label}] mixing xent and torch calls in one process ...", file=sys.stderr, flush=True
        )
        mixing = _mixing(scale, st)
    _set_threads(THREADS, have_torch and "torch" in want)
    machine = _versions(have_torch and "torch" in want)
    machine["peak_rss_gb"] = _peak_rss_gb()
    return {
        "label": label,
        "settings": st.__dict__,
        "results": results,
        "skipped": skipped,
        "notices": notices,
        "mixing": mixing,
        "machine": machine,
    }


def _selected(scale: str) -> list:
    """The cases of a scale, filtered by ``XENT_BENCH_ONLY`` (comma-separated id substrings)."""
    cases = build_cases(scale)
    only = [w for w in os.environ.get("XENT_BENCH_ONLY", "").split(",") if w]
    if only:
        cases = [c for c in cases if any(w in c.id for w in only)]
    return cases


def plan(scale: str) -> list:
    """Split the cases into groups of ids, each measured by a fresh worker process.

    In full mode every case whose input reaches ``BIG_BYTES`` gets a process
    of its own: with ``MALLOC_MMAP_MAX_=0`` glibc never returns memory to the
    system and the heap of a process that ran PyTorch on 500 MB inputs only
    grows (fragmentation), so a fresh process per large case bounds the peak
    memory.  Smaller cases (and every case of the quick and tiny scales, which
    must start fast) share one process.
    """
    groups: list = []
    small: list = []
    for case in _selected(scale):
        if scale == "full" and case.nbytes >= BIG_BYTES:
            if small:
                groups.append(small)
                small = []
            groups.append([case.id])
        else:
            small.append(case.id)
    if small or not groups:
        groups.append(small)
    return groups


def _merge(parts: list) -> dict:
    """Concatenate the outputs of several workers of the same label."""
    out = dict(parts[0])
    for key in ("results", "skipped", "mixing"):
        out[key] = [x for p in parts for x in p[key]]
    out["notices"] = list(dict.fromkeys(n for p in parts for n in p["notices"]))
    out["machine"] = dict(parts[0]["machine"])
    out["machine"]["peak_rss_gb"] = max(p["machine"]["peak_rss_gb"] for p in parts)
    out["machine"]["worker_processes"] = len(parts)
    return out


def _peak_rss_gb() -> float:
    """Peak resident memory of this process in GB (Linux/macOS; NaN elsewhere)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return math.nan
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1e9 if sys.platform == "darwin" else 1e6)


def _worker_main(path: str) -> int:
    """Entry point of a worker process: read its config, write its results."""
    with open(path) as fh:
        config = json.load(fh)
    out = worker(config)
    with open(config["out"], "w") as fh:
        json.dump(out, fh)
    return 0


# --------------------------------------------------------------------------- coordinator


def _spawn(config: dict, env_update: dict, drop: tuple = ()) -> dict:
    """Run ``worker(config)`` in a fresh interpreter with a modified environment."""
    import xent

    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_update)
    src = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="xent-bench-") as tmp:
        cfg_path = os.path.join(tmp, "config.json")
        config = dict(config, out=os.path.join(tmp, "out.json"))
        with open(cfg_path, "w") as fh:
            json.dump(config, fh)
        code = (
            "import sys; from xent._bench import _worker_main; sys.exit(_worker_main(sys.argv[1]))"
        )
        proc = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code, cfg_path], env=env, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"benchmark worker {config['label']!r} failed (exit status {proc.returncode})"
            )
        with open(config["out"]) as fh:
            return json.load(fh)


def _ratio(a, b) -> float | None:
    if a is None or b is None or not a or not math.isfinite(a) or not math.isfinite(b):
        return None
    return b / a


def _rows(main: dict, default: dict | None) -> list:
    """Merge the workers' timings into one flat record per case."""
    cases = {c.id: c for c in build_cases(main["settings"]["scale"])}
    dflt = {r["id"]: r["timings"] for r in (default or {}).get("results", [])}
    rows = []
    for r in main["results"]:
        case = cases[r["id"]]
        tm = r["timings"]

        def ms(name, src=tm):
            return src[name]["ms"] if name in src else None

        x, tq, npy, cp = ms("xent"), ms("torch"), ms("numpy"), ms("copy")
        td = ms("torch", dflt.get(r["id"], {}))
        gbps = case.traffic * case.nbytes / (x * 1e-3) / 1e9 if x else None
        copy_gbps = 2 * case.nbytes / (cp * 1e-3) / 1e9 if cp else None
        rows.append(
            {
                "id": case.id,
                "op": case.op,
                "key": case.key,
                "shape": list(case.shape),
                "dtype": case.dtype,
                "threads": case.threads,
                "xent_ms": x,
                "torch_ms": tq,
                "torch_default_env_ms": td,
                "numpy_ms": npy,
                "copy_ms": cp,
                "speedup_vs_torch": _ratio(x, tq),
                "speedup_vs_torch_default_env": _ratio(x, td),
                "speedup_vs_numpy": _ratio(x, npy),
                "xent_gbps": gbps,
                "copy_gbps": copy_gbps,
                "pct_of_copy": 100.0 * gbps / copy_gbps if gbps and copy_gbps else None,
                "bytes": int(case.traffic * case.nbytes),
                "calls": r.get("what", {}),
                "samples": {n: v["n"] for n, v in tm.items()},
                "peak_rss_gb": r.get("peak_rss_gb"),
                "inner": {n: v["inner"] for n, v in tm.items()},
            }
        )
    return rows


def _fmt(v, spec: str = ".3g", suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:{spec}}{suffix}"


def format_table(rows: list) -> str:
    """The results as a fixed-width text table."""
    head = (
        "op",
        "shape",
        "dtype",
        "thr",
        "xent ms",
        "torch ms",
        "torch(def) ms",
        "numpy ms",
        "copy ms",
        "vs torch",
        "vs torch(def)",
        "vs numpy",
        "GB/s",
        "% copy",
    )
    body = []
    for r in rows:
        body.append(
            (
                r["op"],
                "x".join(map(str, r["shape"])),
                r["dtype"],
                str(r["threads"]),
                _fmt(r["xent_ms"]),
                _fmt(r["torch_ms"]),
                _fmt(r["torch_default_env_ms"]),
                _fmt(r["numpy_ms"]),
                _fmt(r["copy_ms"]),
                _fmt(r["speedup_vs_torch"], ".2f", "x"),
                _fmt(r["speedup_vs_torch_default_env"], ".2f", "x"),
                _fmt(r["speedup_vs_numpy"], ".2f", "x"),
                _fmt(r["xent_gbps"], ".1f"),
                _fmt(r["pct_of_copy"], ".0f", "%"),
            )
        )
    width = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    left = {0, 1, 2}

    def line(cells):
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, width))
        ).rstrip()

    out = [line(head), line(["-" * w for w in width])]
    out += [line(b) for b in body]
    return "\n".join(out)


def format_mixing(mixing: list) -> str:
    """The mixing measurement as text."""
    lines = []
    for m in mixing:
        verdict = "ok" if m["within_10pct"] else "SLOWER THAN 10%"
        lines.append(
            f"  {m['library']:5s} {m['op']} {'x'.join(map(str, m['shape']))}: alone "
            f"{m['alone_ms']:.3g} ms, right after a {m['other']} call {m['interleaved_ms']:.3g} "
            f"ms ({m['slowdown_pct']:+.1f}%, {verdict})"
        )
    return "\n".join(lines)


def format_machine(m: dict) -> str:
    """Machine and version summary."""
    keys = (
        "cpu",
        "cpu_count",
        "platform",
        "python",
        "numpy",
        "torch",
        "xent",
        "compiler",
        "openmp",
        "simd_active",
        "simd_supported",
    )
    return "\n".join(f"  {k:15s} {m.get(k, '-')}" for k in keys)


def write_plot(rows: list, path: str, title: str = "") -> None:
    """Bar chart of xent's speedups over torch (tuned and default env) and NumPy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{r['op']}\n{'x'.join(map(str, r['shape']))} {r['dtype']} t{r['threads']}" for r in rows
    ]
    series = [
        ("vs torch", "speedup_vs_torch"),
        ("vs torch (default env)", "speedup_vs_torch_default_env"),
        ("vs NumPy", "speedup_vs_numpy"),
    ]
    series = [(n, k) for n, k in series if any(r[k] for r in rows)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(4, len(rows)) + 1.5))
    y = np.arange(len(rows))
    h = 0.8 / max(1, len(series))
    for i, (name, key) in enumerate(series):
        vals = [r[key] or 0.0 for r in rows]
        ax.barh(y + i * h, vals, height=h, label=name)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y + h * (len(series) - 1) / 2, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speedup of xent (x, higher is better)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run_workers(base: dict, tuned: bool, have_torch: bool) -> tuple:
    """Run the main pass (and, when `tuned`, the default-env torch pass) in workers."""
    groups = plan(base["scale"])
    env, drop = (TUNED_ENV, ()) if tuned else ({}, tuple(TUNED_ENV))
    main = _merge(
        [
            _spawn(
                dict(
                    base,
                    label="main",
                    providers=list(PROVIDERS),
                    case_ids=ids,
                    mixing=k == len(groups) - 1,
                ),
                env,
                drop,
            )
            for k, ids in enumerate(groups)
        ]
    )
    default = None
    if tuned and have_torch:
        default = _merge(
            [
                _spawn(
                    dict(
                        base, label="default-env", providers=["torch"], case_ids=ids, mixing=False
                    ),
                    {},
                    drop=tuple(TUNED_ENV),
                )
                for ids in groups
            ]
        )
    return main, default


def run_bench(quick: bool, json_path: str | None, plot_path: str | None) -> int:
    """Run the benchmark, print the table, optionally write JSON and a plot.

    Parameters
    ----------
    quick : bool
        Smaller shapes and fewer repeats (under a minute on two cores).
    json_path : str or None
        Write every row, the mixing measurement and the machine info there.
    plot_path : str or None
        Write a bar chart of the speedups (PNG; needs matplotlib).

    Returns
    -------
    int
        The process exit status (0 on success, 2 when ``--plot`` cannot work).
    """
    if plot_path and importlib.util.find_spec("matplotlib") is None:
        print("error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    scale = _scale(quick)
    have_torch = importlib.util.find_spec("torch") is not None
    base = {"scale": scale, "mixing": True}
    t0 = time.perf_counter()
    print(
        f"xent bench ({scale}): progress on stderr, one line per case", file=sys.stderr, flush=True
    )
    tuned = os.environ.get("XENT_BENCH_MALLOC_TUNED", "1") != "0"
    if os.environ.get("XENT_BENCH_INPROCESS", "") not in ("", "0"):
        main = worker(dict(base, label="main", providers=list(PROVIDERS)))
        default = None
    else:
        main, default = _run_workers(base, tuned, have_torch)
    rows = _rows(main, default)
    notices = list(dict.fromkeys(main["notices"] + (default or {}).get("notices", [])))
    print()
    if main["machine"]["malloc_env"] == TUNED_ENV:
        best = " ".join(f"{k}={v}" for k, v in TUNED_ENV.items())
        torch_note = f"torch ms = PyTorch at its best ({best}), torch(def) = default environment"
    else:
        torch_note = "torch ms = PyTorch in the default environment (XENT_BENCH_MALLOC_TUNED=0)"
    print(f"xent benchmark ({scale}); medians of repeated runs; {torch_note};")
    print(
        "vs = speedup of xent (>1: xent faster); GB/s = logits bytes the xent call must "
        "move / time; % copy = of np.copyto(dst, x) bandwidth in the same run"
    )
    print()
    print(format_table(rows))
    if main["mixing"]:
        print()
        print("Mixing xent and torch in one process (goal: either slowed by at most 10%):")
        print(format_mixing(main["mixing"]))
    for n in notices:
        print(f"note: {n}")
    print()
    print("Machine:")
    print(format_machine(main["machine"]))
    print(f"  {'threads':15s} {THREADS} per library (1 in the t=1 rows)")
    print(
        f"  {'peak RSS':15s} {main['machine'].get('peak_rss_gb', math.nan):.2f} GB "
        f"(largest main worker process)"
    )
    elapsed = time.perf_counter() - t0
    print(f"  {'elapsed':15s} {elapsed:.1f} s")
    if json_path:
        doc = {
            "schema": SCHEMA_VERSION,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "scale": scale,
            "settings": main["settings"],
            "machine": main["machine"],
            "default_env_machine": (default or {}).get("machine"),
            "rows": rows,
            "mixing": main["mixing"],
            "skipped": main["skipped"],
            "notices": notices,
            "elapsed_s": elapsed,
        }
        with open(json_path, "w") as fh:
            json.dump(_finite(doc), fh, indent=1, allow_nan=False)
        print(f"wrote {json_path}")
    if plot_path:
        m = main["machine"]
        title = f"xent {m.get('xent')} vs torch {m.get('torch', '-')}, {m.get('cpu')}, {scale}"
        write_plot(rows, plot_path, title)
        print(f"wrote {plot_path}")
    return 0


def _finite(o: Any) -> Any:
    """`o` with NaN/inf floats replaced by None (strict JSON) and NumPy scalars unwrapped."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o
