"""The benchmark cases: one operation at one shape, dtype, thread count and options.

``build_cases(scale)`` is the single list of rows, used by the runner
(``python -m xent bench``) and by the pytest-benchmark suite:

``full``
    the shapes of real workloads (4096x32000, 1024x128256, ...), plus issue 18's
    bfloat16 (with ml_dtypes) and float16 rows at 4096x32000 (no rivals);
``quick``
    smaller shapes and a few second shapes dropped (about a minute without the
    rivals, two to three with them);
``tiny``
    the quick rows at tiny shapes (seconds; tests and the CI smoke run);
``rivals``
    issue 17's rows (fused, loss, logsumexp, few classes, latency) at the full
    shapes, float32 and float64, 2 and 1 threads, every one timed with the
    rivals too (tens of minutes).

The rival providers (torch.compile, JAX: seconds of compilation per row) time
only the rows whose ``Case.rivals`` is set: every row of ``full`` and
``rivals``; seven rows of ``quick`` (fused, loss and logsumexp 1024x32000,
fused 256x128256, fused float64, latency 8x128256, fused on one thread); none
of ``tiny`` (the tests and CI's smoke run would pay torch.compile's start-up,
10-20 s per process).

Inputs come from ``make_data(case)``: deterministic, built outside any timed
region, logits ~ N(0, 3^2) tiled from a fixed pool (fast even at 500 MB).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass

import numpy as np

from .reference import IGNORE_INDEX

SCALES = ("full", "quick", "tiny", "rivals")
TOP_K = 20
#: Threads per library in every row but the ``t1`` rows.
THREADS = 2


@dataclass(frozen=True)
class Op:
    """What a case computes, as the table labels it."""

    label: str
    mode: str  # "fwd" or "fwd_bwd"
    traffic: int  # bytes the xent call must move, in multiples of the logits' size


OPS = {
    "fused": Op("fused loss+grad (in place)", "fwd_bwd", 2),
    "loss": Op("loss only", "fwd", 1),
    "logsumexp": Op("logsumexp", "fwd", 1),
    "softmax": Op("softmax", "fwd", 2),
    "log_softmax": Op("log_softmax", "fwd", 2),
    "latency": Op("latency fwd+bwd (whole call)", "fwd_bwd", 2),
    "token_scores": Op(f"token_scores top_k={TOP_K}", "fwd", 1),
    "adapter": Op("xent.torch.CrossEntropyLoss fwd+bwd", "fwd_bwd", 2),
}

#: Cross-entropy options of the ``fused`` variants: (label, smoothing, weighted, ignored share).
OPTIONS = {
    "": ("", 0.0, False, 0.0),
    "all": ("smoothing+weight+10% ignored", 0.1, True, 0.1),
    "ls": ("label_smoothing=0.1", 0.1, False, 0.0),
    "weight": ("class weight", 0.0, True, 0.0),
    "ignore": ("10% ignored", 0.0, False, 0.1),
}


@dataclass(frozen=True)
class Case:
    """One row of the results: `op` on `shape` logits of `dtype` with `n_threads`."""

    op: str
    shape: tuple
    dtype: str
    n_threads: int = THREADS
    options: str = ""  # a key of OPTIONS
    rivals: bool = True  # timed by the rival providers too (torch.compile, JAX)

    @property
    def key(self) -> str:
        """``op``, or ``op_options`` for a variant (``fused_all``)."""
        return f"{self.op}_{self.options}" if self.options else self.op

    @property
    def id(self) -> str:
        """Unique id, ``key|RxC|dtype|tN``."""
        return f"{self.key}|{self.n_rows}x{self.n_cols}|{self.dtype}|t{self.n_threads}"

    @property
    def label(self) -> str:
        """The operation as the table shows it."""
        if self.options:
            return f"fused, {OPTIONS[self.options][0]}"
        return OPS[self.op].label

    @property
    def mode(self) -> str:
        return OPS[self.op].mode

    @property
    def traffic(self) -> int:
        return OPS[self.op].traffic

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_cols(self) -> int:
        return self.shape[1]

    @property
    def nbytes(self) -> int:
        """Size of the logits in bytes."""
        return self.n_rows * self.n_cols * np_dtype(self.dtype).itemsize


@dataclass
class Data:
    """The inputs of a case: logits, int64 targets and the cross-entropy options."""

    x: np.ndarray
    t: np.ndarray
    weight: np.ndarray | None
    label_smoothing: float

    def ce_options(self) -> dict:
        """Keyword arguments for xent's and the reference's cross-entropy."""
        opts = {}
        if self.weight is not None:
            opts["weight"] = self.weight
        if self.label_smoothing:
            opts["label_smoothing"] = self.label_smoothing
        return opts


#: The 16-bit dtypes of issue 18's rows (bfloat16 is ml_dtypes').
HALF = ("bfloat16", "float16")


def np_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a case's dtype name ("bfloat16" registers ml_dtypes first)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


_POOL: dict = {}
_POOL_SIZE = 1 << 21


def make_logits(shape, dtype) -> np.ndarray:
    """Logits ~ N(0, 3^2), tiled from a fixed pool of 2M numbers."""
    dt = np_dtype(dtype)
    if dt not in _POOL:
        _POOL[dt] = (np.random.default_rng(0).standard_normal(_POOL_SIZE) * 3.0).astype(dt)
    pool = _POOL[dt]
    flat = np.empty(int(np.prod(shape)), dtype=dt)
    for i in range(0, flat.size, pool.size):
        n = min(pool.size, flat.size - i)
        flat[i : i + n] = pool[:n]
    return flat.reshape(shape)


def make_targets(shape, ignore_share: float = 0.0) -> np.ndarray:
    """int64 class indices for logits of `shape`, `ignore_share` of them IGNORE_INDEX."""
    rng = np.random.default_rng(1)
    t = rng.integers(0, shape[-1], size=shape[:-1], dtype=np.int64)
    if ignore_share:
        t[rng.random(t.shape) < ignore_share] = IGNORE_INDEX
    return t


def make_data(case: Case) -> Data:
    """The inputs of `case` (deterministic)."""
    _, smoothing, weighted, ignored = OPTIONS[case.options]
    weight = None
    if weighted:
        weight = np.random.default_rng(2).uniform(0.5, 2.0, case.n_cols).astype(case.dtype)
    x = make_logits(case.shape, case.dtype)
    return Data(x, make_targets(case.shape, ignored), weight, smoothing)


def _shape(scale: str, full: tuple, quick: tuple | None = None) -> tuple:
    if scale == "tiny":  # distinct tiny shapes keep the ids unique
        rows, cols = full
        return (min(rows, 8), cols // 125 if cols > 1000 else min(cols, 100))
    if scale == "quick" and quick is not None:
        return quick
    return full


def build_cases(scale: str) -> list:
    """Every case of a scale, in table order (see the module docstring)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    if scale == "rivals":
        return _rival_cases()
    big = _shape(scale, (4096, 32000), (1024, 32000))
    vocab = _shape(scale, (1024, 128256), (256, 128256))
    mid = _shape(scale, (32768, 1000), (8192, 1000))
    few = _shape(scale, (262144, 10), (65536, 10))
    full = scale == "full"
    f32, f64 = "float32", "float64"
    # (in this scale, rivals in quick, case); the rivals time every row of full
    rows = [
        (True, True, Case("fused", big, f32)),
        (True, True, Case("fused", vocab, f32)),
        (True, True, Case("loss", big, f32)),
        (full, False, Case("loss", vocab, f32)),
        (True, True, Case("logsumexp", big, f32)),
        (full, False, Case("logsumexp", vocab, f32)),
        (True, False, Case("fused", mid, f32)),
        (True, True, Case("fused", mid, f64)),
        (True, False, Case("fused", big, f32, options="all")),
        (full, False, Case("fused", big, f32, options="ls")),
        (full, False, Case("fused", big, f32, options="weight")),
        (full, False, Case("fused", big, f32, options="ignore")),
        (True, False, Case("fused", few, f32)),
        (True, False, Case("loss", few, f32)),
        (True, False, Case("logsumexp", few, f32)),
        (True, False, Case("latency", _shape(scale, (1, 32000)), f32)),
        (True, True, Case("latency", _shape(scale, (8, 128256)), f32)),
        (True, True, Case("fused", big, f32, n_threads=1)),
        (full, False, Case("loss", big, f32, n_threads=1)),
        (full, False, Case("logsumexp", big, f32, n_threads=1)),
        (True, False, Case("softmax", big, f32)),
        (True, False, Case("log_softmax", big, f32)),
        (True, False, Case("token_scores", _shape(scale, (8, 128256)), f32)),
        (full, False, Case("token_scores", _shape(scale, (64, 32000)), f32)),
        (True, False, Case("token_scores", _shape(scale, (1, 128256)), f32)),
        (True, False, Case("adapter", big, f32)),
    ]
    # issue 18: 16-bit logits read natively (full scale; needs ml_dtypes for bfloat16)
    halves = [h for h in HALF if h != "bfloat16" or importlib.util.find_spec("ml_dtypes")]
    rows += [(full, False, Case(op, big, half)) for half in halves
             for op in ("fused", "loss", "logsumexp", "adapter")]
    return [dataclasses.replace(case, rivals=(full or (scale == "quick" and quick_rival))
                                and case.dtype not in HALF)
            for keep, quick_rival, case in rows if keep]


#: Issue 17's rows: (op, shape) at full size; the ``rivals`` scale times each in float32
#: and float64 with 2 and 1 threads.
RIVAL_ROWS = (
    ("fused", (4096, 32000)),
    ("fused", (1024, 128256)),
    ("loss", (4096, 32000)),
    ("loss", (1024, 128256)),
    ("loss", (32768, 1000)),
    ("logsumexp", (4096, 32000)),
    ("fused", (262144, 10)),
    ("loss", (262144, 10)),
    ("latency", (8, 128256)),
)


def _rival_cases() -> list:
    return [Case(op, shape, dtype, n_threads=n) for n in (THREADS, 1)
            for dtype in ("float32", "float64") for op, shape in RIVAL_ROWS]


def with_threads(cases: list, counts: tuple | None) -> list:
    """`cases` at each thread count of `counts` (each case's own count when None), deduplicated."""
    if not counts:
        return cases
    moved = [dataclasses.replace(c, n_threads=n) for c in cases for n in counts]
    return list({c.id: c for c in moved}.values())


def select(cases: list, only: str | None) -> list:
    """The cases whose id contains one of the comma-separated substrings of `only`."""
    words = [w for w in (only or "").split(",") if w]
    return [c for c in cases if not words or any(w in c.id for w in words)]
