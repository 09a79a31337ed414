"""The runner behind ``python -m xent bench``: every case, every provider, one table.

The process started by the command is only a coordinator (it never imports
PyTorch).  It starts worker processes (``lab/isolation.py``):

1. the *main* pass, under ``TUNED_ENV`` (PyTorch at its best): every
   provider, checked against the reference, then timed in alternation
   (``measure.py``); the xent/PyTorch mixing check (``lab/mixing.py``) at the
   end; one worker per thread count when a provider whose library fixes its
   thread count at start (JAX) will run;
2. the *default-env* pass, without it: the malloc-sensitive providers
   (PyTorch) again, as users meet them.

It then prints the table (``report.py``), the mixing check, notes and the
machine (with xent's SIMD path), and writes ``--json`` / ``--csv``
(``schema.py``).  Progress goes to stderr, one line per case.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import sys
import time

from . import report, schema
from .cases import SCALES, THREADS, build_cases, select, with_threads
from .harness import run_case, usable
from .lab import isolation
from .lab.mixing import format_mixing
from .measure import SETTINGS
from .providers import all_providers

MACHINE_KEYS = ("cpu", "cpu_count", "platform", "python", "numpy", "torch", "xent", "compiler",
                "openmp", "simd_active", "simd_supported")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (also the worker's hidden ``--worker CONFIG``)."""
    p = argparse.ArgumentParser(prog="python -m xent bench",
                                description="Time xent against PyTorch, torch.compile, JAX, "
                                "NumPy and the memory yardsticks on this machine (see "
                                "benchmarks/README.md).")
    p.add_argument("--quick", action="store_true",
                   help="smaller shapes, the rivals on 7 rows: 1-3 minutes")
    p.add_argument("--scale", choices=SCALES,
                   help="full (default), quick, tiny (tests), or rivals (issue 17's rows, "
                   "float32 and float64, 2 and 1 threads, every rival)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--csv", metavar="FILE", help="write the results as CSV")
    p.add_argument("--only", metavar="S1,S2", help="cases whose id contains a substring")
    p.add_argument("--providers", metavar="N1,N2", help="only these providers (default: all)")
    p.add_argument("--threads", metavar="N1,N2",
                   help="every case at each of these thread counts (default: 2, and 1 in the "
                   "t1 rows)")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="one pass in the default malloc environment (less memory)")
    p.add_argument("--in-process", action="store_true",
                   help="measure in this process (no workers, no default-env pass)")
    p.add_argument("--no-mixing", action="store_true", help="skip the xent/torch mixing check")
    p.add_argument("--worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scale = args.scale or ("quick" if args.quick else "full")
    try:
        args.threads = [int(n) for n in args.threads.split(",")] if args.threads else None
    except ValueError:
        p.error(f"--threads takes comma-separated integers, not {args.threads!r}")
    if args.threads and min(args.threads) < 1:
        p.error("--threads: thread counts start at 1")
    return args


def case_list(scale: str, only: str | None = None, threads: list | None = None) -> list:
    """The cases of a run: the scale's, at each of `threads` if given, those matching `only`."""
    return select(with_threads(build_cases(scale), threads), only)


# --------------------------------------------------------------------------- worker


def machine_info() -> dict:
    """Versions, CPU and xent's build (``python -m xent info``), malloc env, peak RSS."""
    from xent._config import config_dict

    info = config_dict()
    try:
        info["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        info["torch"] = None
    info["malloc_env"] = {k: os.environ.get(k) for k in isolation.TUNED_ENV}
    info["peak_rss_gb"] = peak_rss_gb()
    return info


def peak_rss_gb() -> float:
    """Peak resident memory of this process in GB (NaN where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return math.nan
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1e9 if sys.platform == "darwin" else 1e6)


def _worker_providers(config: dict, notices: list) -> list:
    providers = usable(all_providers(), notices)
    names = config.get("providers")
    if names:
        providers = [p for p in providers if p.name in names]
    if config["pass"] == "default":
        providers = [p for p in providers if p.malloc_sensitive]
    return providers


def _progress(head: str, result: dict, took: float) -> None:
    msg = "  ".join(f"{n} {t['median_ms']:.3g} ms" for n, t in result["timings"].items())
    for s in result["skipped"]:
        msg += f"  [{s['provider']} skipped: {s['reason']}]"
    print(f"{head}: {msg}  ({took:.1f} s, peak RSS {peak_rss_gb():.2f} GB)",
          file=sys.stderr, flush=True)


def _measure_case(case, providers, config, head) -> dict:
    """run_case, with a failure of the whole case reported as a skipped row."""
    t0 = time.perf_counter()
    try:
        result = run_case(case, providers, SETTINGS[config["scale"]],
                          checked=config["pass"] == "main")
    except Exception as exc:  # report it and go on with the other cases
        reason = f"{type(exc).__name__}: {exc}"
        print(f"{head}: FAILED ({reason})", file=sys.stderr, flush=True)
        return {"id": case.id, "timings": {}, "compile_ms": {}, "what": {}, "kind": {},
                "skipped": [{"provider": "*", "reason": reason}]}
    _progress(head, result, time.perf_counter() - t0)
    return result


def worker(config: dict) -> dict:
    """Measure the cases of `config` (``scale``, ``case_ids``, ``pass``, ...); a JSON dict."""
    notices: list = []
    providers = _worker_providers(config, notices)
    cases = case_list(config["scale"], config.get("only"), config.get("threads"))
    wanted = config.get("case_ids")
    results = []
    for i, case in enumerate(cases, 1):
        if wanted is not None and case.id not in wanted:
            continue
        head = (f"[{config['label']} {i:2d}/{len(cases)}] {case.label} "
                f"{case.n_rows}x{case.n_cols} {case.dtype} t={case.n_threads}")
        results.append(_measure_case(case, providers, config, head))
    mixing = []
    if config.get("mixing") and any(p.name == "torch" for p in providers):
        print(f"[{config['label']}] mixing xent and torch calls ...", file=sys.stderr, flush=True)
        from .lab.mixing import run as run_mixing

        mixing = run_mixing(config["scale"])
    return {"results": results, "notices": notices, "mixing": mixing,
            "malloc_sensitive": [p.name for p in providers if p.malloc_sensitive],
            "about": {p.name: p.about for p in providers if p.about},
            "machine": machine_info()}


def worker_main(path: str) -> int:
    """Entry point of a worker process: read its config, write its output."""
    with open(path) as fh:
        config = json.load(fh)
    out = schema.finite(worker(config))
    with open(config["out"], "w") as fh:
        json.dump(out, fh)
    return 0


# --------------------------------------------------------------------------- coordinator


def _merge(parts: list, order: list) -> dict:
    """One pass's output from its workers' outputs, results in the case ids' `order`."""
    out = dict(parts[0])
    rank = {case_id: i for i, case_id in enumerate(order)}
    out["results"] = sorted((r for p in parts for r in p["results"]), key=lambda r: rank[r["id"]])
    out["about"] = {k: v for p in parts for k, v in p["about"].items()}
    out["mixing"] = [m for p in parts for m in p["mixing"]]
    out["notices"] = list(dict.fromkeys(n for p in parts for n in p["notices"]))
    out["machine"] = dict(parts[0]["machine"], worker_processes=len(parts),
                          peak_rss_gb=max(p["machine"]["peak_rss_gb"] or 0 for p in parts))
    return out


def _config(args, label: str, mixing: bool) -> dict:
    """A worker's configuration: the main pass, or the default-env pass of PyTorch & co."""
    return {"scale": args.scale, "only": args.only, "threads": args.threads, "label": label,
            "mixing": mixing,
            "pass": "main" if label == "main" else "default",
            "providers": args.providers.split(",") if args.providers else None}


def thread_workers(args, cases: list) -> bool:
    """Whether a selected, installed provider fixing its threads at start has cases to time."""
    names = args.providers.split(",") if args.providers else None
    return any(p.fixed_threads and (names is None or p.name in names) and p.installed()
               and any(p.handles(c) for c in cases) for p in all_providers())


def _run_pass(args, label: str, tuned: bool, mixing: bool) -> dict:
    """One pass in worker processes (big inputs each in their own in full mode)."""
    cases = case_list(args.scale, args.only, args.threads)
    by_threads = label == "main" and thread_workers(args, cases)
    groups = isolation.plan(cases, args.scale, by_threads)
    base = _config(args, label, False)
    return _merge([isolation.spawn(dict(base, case_ids=ids, mixing=mixing and k == len(groups)),
                                   tuned) for k, ids in enumerate(groups, 1)],
                  [c.id for c in cases])


def run_passes(args) -> tuple:
    """(main pass, default-env pass or None), in workers or in this process."""
    mixing = not args.no_mixing
    if args.in_process:
        return worker(_config(args, "main", mixing)), None
    tuned = not args.no_malloc_tuning
    main = _run_pass(args, "main", tuned, mixing)
    default = None
    if tuned and main["malloc_sensitive"]:
        default = _run_pass(args, "default-env", False, False)
    return main, default


def build_rows(main: dict, default: dict | None, args, stamp: str) -> list:
    """The schema rows of both passes (ratios against the main pass's xent and yardsticks)."""
    scale = args.scale
    cases = {c.id: c for c in case_list(scale, None, args.threads)}
    malloc = "tuned" if main["machine"]["malloc_env"] == isolation.TUNED_ENV else "default"
    base = {r["id"]: {n: t["median_ms"] for n, t in r["timings"].items()}
            for r in main["results"]}
    rows = []
    for out, env in ((main, malloc), (default, "default")):
        if out is None:
            continue
        ctx = schema.run_context(out["machine"], scale, stamp, env)
        for r in out["results"]:
            rows += schema.case_rows(cases[r["id"]], r, ctx, base.get(r["id"], {}))
    return rows


def _skipped(main: dict) -> list:
    return [dict(s, case_id=r["id"]) for r in main["results"] for s in r["skipped"]]


def rival_notes(args, main: dict, rows: list) -> list:
    """How the rivals ran (their ``about``) and, in quick/tiny, how many rows they time."""
    timed = {r["provider"] for r in rows}
    notes = [f"{name}: {about}" for name, about in main["about"].items() if name in timed]
    rivals = [p.name for p in all_providers() if p.rival and p.name in main["about"]]
    cases = case_list(args.scale, args.only, args.threads)
    with_rivals = sum(c.rivals for c in cases)
    if rivals and with_rivals < len(cases):
        notes.append(f"{args.scale}: {' and '.join(rivals)} time {with_rivals} of the "
                     f"{len(cases)} cases (seconds of compilation per case); --scale full or "
                     "--scale rivals times them on every case they compute")
    return notes


def print_report(rows: list, main: dict, notices: list, args, elapsed: float) -> None:
    """The table, the mixing check, the notes and the machine, on stdout."""
    tuned = " ".join(f"{k}={v}" for k, v in isolation.TUNED_ENV.items())
    print(f"\nxent benchmark ({args.scale}): medians; all providers under {tuned} (PyTorch at its "
          "best), '(def)' columns in the default malloc environment;")
    print("vs X = X's time / xent's (above 1: xent faster), vs best = the fastest of torch, "
          "torch.compile and jax; xent/copy, xent/read = xent's time / np.copyto's and "
          "np.add.reduce's of the same logits, same threads\n")
    print(report.text(rows))
    compiled = report.compile_text(rows)
    if compiled:
        print("\nCompile time (s), once per case before the check, excluded from the medians:")
        print(compiled)
    if main["mixing"]:
        print("\nMixing xent and torch in one process (goal: either slowed by at most 10%):")
        print(format_mixing(main["mixing"]))
    for note in notices:
        print(f"note: {note}")
    m = main["machine"]
    print("\nMachine:")
    print("\n".join(f"  {k:15s} {m.get(k, '-')}" for k in MACHINE_KEYS))
    threads = (f"{THREADS} per library (1 in the t=1 rows)" if not args.threads else
               f"{', '.join(map(str, args.threads))} per library (--threads)")
    print(f"  {'threads':15s} {threads}")
    print(f"  {'peak RSS':15s} {m.get('peak_rss_gb') or math.nan:.2f} GB (largest worker)")
    print(f"  {'elapsed':15s} {elapsed:.1f} s")


def main(argv=None) -> int:
    """Command line entry point (coordinator, or worker with ``--worker``)."""
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    t0 = time.perf_counter()
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(f"xent bench ({args.scale}): progress on stderr, one line per case",
          file=sys.stderr, flush=True)
    main_pass, default = run_passes(args)
    rows = build_rows(main_pass, default, args, stamp)
    notices = list(dict.fromkeys(main_pass["notices"] + (default or {}).get("notices", [])))
    notices += rival_notes(args, main_pass, rows)
    notices += [f"{s['case_id']}: {s['provider']} skipped ({s['reason']})"
                for s in _skipped(main_pass)]
    elapsed = time.perf_counter() - t0
    print_report(rows, main_pass, notices, args, elapsed)
    doc = {"created": stamp, "scale": args.scale, "settings": SETTINGS[args.scale].as_dict(),
           "machine": main_pass["machine"],
           "default_env_machine": (default or {}).get("machine"), "rows": rows,
           "mixing": main_pass["mixing"], "skipped": _skipped(main_pass),
           "notices": notices, "elapsed_s": elapsed, "fields": schema.FIELDS}
    write_outputs(args, doc)
    return 0


def write_outputs(args, doc: dict) -> None:
    """Write ``--json`` (the whole document) and ``--csv`` (its rows)."""
    if args.json:
        schema.write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.csv:
        schema.write_csv(args.csv, doc["rows"])
        print(f"wrote {args.csv}")
