"""The results schema: one row per case, provider and malloc environment.

``FIELDS`` lists the columns in order with their meaning; ``--csv`` writes
exactly these columns, ``--json`` writes ``{"schema_version", "created",
"scale", "settings", "machine", "rows", "mixing", "skipped", "notices",
"elapsed_s"}`` with the same rows.  Ratios are ``None`` when a side is
missing.  Bump ``SCHEMA_VERSION`` when a column changes meaning or goes away.
"""

from __future__ import annotations

import csv
import json
import math

SCHEMA_VERSION = 2

FIELDS = {
    "schema_version": "version of this schema",
    "timestamp": "UTC start of the run, ISO 8601",
    "scale": "full, quick or tiny",
    "case_id": "op[_options]|RxC|dtype|tN, unique within a run",
    "op": "fused, loss, logsumexp, softmax, log_softmax, latency, token_scores, adapter",
    "label": "the operation as the table shows it",
    "mode": "fwd or fwd_bwd",
    "options": "cross-entropy options of a fused variant (all, ls, weight, ignore) or empty",
    "dtype": "float32 or float64",
    "n_rows": "rows of the logits",
    "n_cols": "classes",
    "n_threads": "threads given to every provider",
    "provider": "xent, torch, numpy, a plugin's name, or the yardsticks copy and read",
    "kind": "impl (checked against the reference before timing) or yardstick",
    "malloc_env": "tuned (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1e11) or default",
    "median_ms": "median time per call",
    "p20_ms": "20th percentile",
    "p80_ms": "80th percentile",
    "min_ms": "fastest sample",
    "n_samples": "timed samples",
    "inner": "back-to-back calls per sample (short calls are timed in blocks)",
    "compile_ms": "the provider's compile step, timed once before the check (empty if none)",
    "xent_speedup": "this row's median / xent's median (tuned pass): above 1, xent is faster",
    "time_vs_copy": "this row's median / the copy yardstick's median",
    "time_vs_read": "this row's median / the read yardstick's median",
    "gbps": "logits bytes the operation must move (traffic x size) / median time",
    "simd": "xent's SIMD path (python -m xent info)",
    "cpu_model": "CPU model name",
    "n_cpus": "logical CPUs",
    "openmp": "whether xent was built with OpenMP",
    "xent_version": "",
    "numpy_version": "",
    "torch_version": "empty when torch is not installed",
    "python_version": "",
    "what": "the exact call timed",
}


def _ratio(num, den):
    if num is None or den is None or not den or not math.isfinite(num * den):
        return None
    return num / den


def case_rows(case, result: dict, ctx: dict, baseline: dict) -> list:
    """The rows of one case's result; `baseline` holds xent/copy/read medians (tuned pass)."""
    rows = []
    for name, timing in result["timings"].items():
        med = timing["median_ms"]
        row = dict(ctx, case_id=case.id, op=case.op, label=case.label, mode=case.mode,
                   options=case.options, dtype=case.dtype, n_rows=case.n_rows,
                   n_cols=case.n_cols, n_threads=case.n_threads, provider=name,
                   kind=result["kind"].get(name, "impl"), **{k: timing[k] for k in (
                       "median_ms", "p20_ms", "p80_ms", "min_ms", "n_samples", "inner")})
        row["compile_ms"] = result["compile_ms"].get(name)
        row["xent_speedup"] = _ratio(med, baseline.get("xent"))
        row["time_vs_copy"] = _ratio(med, baseline.get("copy"))
        row["time_vs_read"] = _ratio(med, baseline.get("read"))
        row["gbps"] = _ratio(case.traffic * case.nbytes / 1e6, med)
        row["what"] = result["what"].get(name, "")
        rows.append({k: row.get(k) for k in FIELDS})
    return rows


def run_context(machine: dict, scale: str, timestamp: str, malloc_env: str) -> dict:
    """The columns every row of a pass shares."""
    return {
        "schema_version": SCHEMA_VERSION,
        "timestamp": timestamp,
        "scale": scale,
        "malloc_env": malloc_env,
        "simd": machine.get("simd_active"),
        "cpu_model": machine.get("cpu"),
        "n_cpus": machine.get("cpu_count"),
        "openmp": machine.get("openmp"),
        "xent_version": machine.get("xent"),
        "numpy_version": machine.get("numpy"),
        "torch_version": machine.get("torch"),
        "python_version": machine.get("python"),
    }


def finite(o):
    """`o` with NaN/inf floats replaced by None (strict JSON), NumPy scalars unwrapped."""
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_json(path: str, doc: dict) -> None:
    """Write the results document (strict JSON)."""
    with open(path, "w") as fh:
        json.dump(finite(dict(doc, schema_version=SCHEMA_VERSION)), fh, indent=1,
                  allow_nan=False)


def write_csv(path: str, rows: list) -> None:
    """Write the rows with the FIELDS columns (empty cells for None)."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
        writer.writeheader()
        for row in finite(rows):
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in FIELDS})
