"""The correctness check every provider passes before it is timed.

A provider turns what its timed call returned into a dict of NumPy values
(the op's ``OUTPUTS`` keys); ``expected(case, data)`` computes the same keys
with the float64 oracles of ``reference.py``, and ``compare`` returns
a message when they disagree.  Row-wise outputs are checked on a sample of at
most ``SAMPLE_ROWS`` rows, in float64 (the check must stay cheap next to
500 MB inputs).  The mean loss depends on every row: it is summed over all
rows in chunks, in the input dtype, by the ``numpy`` provider's
``cross_entropy_terms`` (checked against the oracle by the tests; a float64 oracle
over every row would cost more than the timed calls; NumPy's pairwise sums keep
float32 within about 1e-6, far inside the tolerance) and summed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import numpy_ops, reference
from .cases import TOP_K, Case, Data

#: The outputs each op must return for the check (row-wise arrays, or the scalar "loss").
OUTPUTS = {
    "fused": ("loss", "grad"),
    "latency": ("loss", "grad"),
    "adapter": ("loss", "grad"),
    "loss": ("loss",),
    "logsumexp": ("logsumexp",),
    "softmax": ("softmax",),
    "log_softmax": ("log_softmax",),
    "token_scores": ("logsumexp", "entropy", "logprob", "rank", "top_logprobs"),
}
#: Largest accepted ``max|actual - expected| / max|expected|`` per input dtype.
#: 16-bit results are rounded once (bfloat16: 2**-8 relative, float16: 2**-11).
TOLERANCE = {"float32": 1e-4, "float64": 1e-9, "bfloat16": 1e-2, "float16": 2e-3}
SAMPLE_ROWS = 32
_CHUNK_ELEMENTS = 1 << 21


@dataclass
class Expected:
    """Reference values of the sampled `rows` (the scalar loss over all rows)."""

    rows: np.ndarray
    values: dict


def sample_rows(n_rows: int) -> np.ndarray:
    """At most SAMPLE_ROWS row indices spread over the rows, first and last included."""
    return np.unique(np.linspace(0, n_rows - 1, min(n_rows, SAMPLE_ROWS)).astype(np.int64))


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _mean_ce_terms(data: Data) -> tuple:
    """(loss, denominator) of the mean cross-entropy over all rows (chunks, input dtype)."""
    step = max(1, _CHUNK_ELEMENTS // data.x.shape[-1])
    opts = {"weight": data.weight, "label_smoothing": data.label_smoothing}
    total = denom = 0.0
    for i in range(0, data.x.shape[0], step):
        rows = slice(i, i + step)
        x = data.x[rows]
        if x.dtype.itemsize == 2:  # 16-bit logits: their exact float32 values
            x = x.astype(np.float32)
        loss, w_row = numpy_ops.cross_entropy_terms(x, data.t[rows], **opts)
        total += float(loss.sum(dtype=np.float64))
        denom += float(w_row.sum(dtype=np.float64))
    return total / denom, denom


def expected(case: Case, data: Data) -> Expected:
    """The reference outputs of `case` on `data` (float64)."""
    rows = sample_rows(case.n_rows)
    x, t = _f64(data.x[rows]), data.t[rows]
    if case.op in ("fused", "latency", "adapter", "loss"):
        loss, denom = _mean_ce_terms(data)
        values = {"loss": loss}
        if case.op != "loss":
            sampled = reference.rows("cross_entropy", x, t, weight=_f64(data.weight),
                                     label_smoothing=data.label_smoothing)
            values["grad"] = sampled.grad / denom
    elif case.op == "token_scores":
        values = reference.token_scores(x, t, top_k=TOP_K)._asdict()
    else:
        values = {case.op: getattr(reference, case.op)(x)}
    return Expected(rows, values)


def _relative_error(actual, want) -> float:
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(actual - want))) if want.size else 0.0
    return diff / scale if scale > 0 else diff


def compare(case: Case, outputs: dict, exp: Expected) -> str | None:
    """None when `outputs` (full-size NumPy values) match `exp`, else what differs."""
    for key in OUTPUTS[case.op]:
        if key not in outputs:
            return f"output {key!r} missing"
        got = np.asarray(outputs[key])
        want = np.asarray(exp.values[key])
        if key != "loss":
            got = got.reshape(case.n_rows, -1)[exp.rows].reshape(want.shape)
        if want.dtype.kind in "iu":
            if not np.array_equal(got, want):
                return f"{key}: integer values differ"
            continue
        err = _relative_error(got.astype(np.float64), want)
        if not err <= TOLERANCE[case.dtype]:  # NaN fails too
            return f"{key}: max relative error {err:.2e} > {TOLERANCE[case.dtype]:.0e}"
    return None
