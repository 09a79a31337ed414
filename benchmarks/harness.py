"""One case from inputs to timings: prepare, compile, check, then measure.

Shared by the runner (``run.py``) and the pytest-benchmark suite
(``bench_cases.py``), so both time the same calls after the same check.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass

from .cases import Case, Data, make_data
from .checks import Expected, compare, expected
from .measure import Settings, measure, time_once
from .providers import Call, Provider, ProviderSkip


class CheckFailed(AssertionError):
    """A provider's outputs differ from the reference (it is not timed)."""


@dataclass
class Prepared:
    """A provider's checked call of one case, and its compile time."""

    call: Call
    compile_ms: float | None
    checked_s: list  # seconds of the check's call (a first warm-up call), if any


def usable(providers: list, notices: list) -> list:
    """The providers that can run in this process; a note for each that cannot."""
    out = []
    for p in providers:
        why = p.unavailable()
        if why is None:
            out.append(p)
        else:
            notices.append(f"{p.name} skipped: {why}")
    return out


def check(provider: Provider, case: Case, call: Call, exp: Expected) -> list:
    """Run `call` once and compare its outputs with `exp`; raise CheckFailed if they differ.

    Returns the seconds the call took (none for an unchecked yardstick).
    """
    if call.outputs is None:
        if provider.kind == "impl":
            raise CheckFailed(f"{provider.name}: its Call has no outputs to check")
        return []
    if call.restore:
        call.restore()
    out, seconds = time_once(call.run)
    why = compare(case, call.outputs(out), exp)
    if why:
        raise CheckFailed(f"{provider.name} disagrees with the reference: {why}")
    return [seconds]


def prepare(provider: Provider, case: Case, data: Data, exp: Expected | None) -> Prepared:
    """Set threads, prepare, compile (timed alone) and check one provider's call."""
    provider.set_threads(case.n_threads)
    call = provider.prepare(case, data)
    compile_ms = time_once(call.compile)[1] * 1e3 if call.compile else None
    checked_s = check(provider, case, call, exp) if exp is not None else []
    return Prepared(call, compile_ms, checked_s)


def describe(call: Call) -> str:
    """The call as the results record it: what was timed, and how it ran in brackets."""
    return f"{call.what} [{call.note}]" if call.note else call.what


def run_case(case: Case, providers: list, st: Settings, checked: bool = True) -> dict:
    """Measure `case` with every provider that handles it.

    Returns ``{"id", "timings": {name: Timing dict}, "compile_ms": {name: ms},
    "what": {name: call [note]}, "kind": {name: kind}, "skipped": [{"provider", "reason"}]}``.
    A provider that raises or fails its check is skipped with the reason; the
    others are still timed.
    """
    data = make_data(case)
    exp = expected(case, data) if checked else None
    ready, skipped = {}, []
    for p in providers:
        if not p.handles(case):
            continue
        try:
            ready[p.name] = prepare(p, case, data, exp)
        except ProviderSkip as exc:
            skipped.append({"provider": p.name, "reason": str(exc)})
        except Exception as exc:  # one provider's failure is reported, not fatal
            skipped.append({"provider": p.name, "reason": f"{type(exc).__name__}: {exc}"})
    calls = {n: r.call for n, r in ready.items()}
    timings = measure(calls, st, {n: r.checked_s for n, r in ready.items()}) if ready else {}
    result = {
        "id": case.id,
        "timings": {n: asdict(t) for n, t in timings.items()},
        "compile_ms": {n: r.compile_ms for n, r in ready.items() if r.compile_ms is not None},
        "what": {n: describe(r.call) for n, r in ready.items()},
        "kind": {p.name: p.kind for p in providers if p.name in ready},
        "skipped": skipped,
    }
    del ready, data
    gc.collect()
    return result
