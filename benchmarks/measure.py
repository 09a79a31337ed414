"""Timing discipline: warm-up until stable, providers alternating with pauses, medians.

* Every provider first gets warm-up calls until two in a row take about the
  same time (`settle`): the first calls pay lazy initialisation and page
  faults, and PyTorch under the tuned malloc environment needs several (its
  fwd+bwd on 4096x32000 once took 1.0-2.7 s for each of its first five calls,
  then 87 ms).
* Then the providers take turns, one call each per repeat, the starting
  provider rotating from one repeat to the next, with a pause before every
  call: an idle OpenMP pool spins for a while after a call and would steal a
  core from the next library.
* Calls shorter than ``min_sample_s`` are timed in blocks of back-to-back
  calls (only those that need no restore between calls).
* Repeats continue until a time budget or a repeat cap; the result is the
  median, with the 20th and 80th percentiles.

Only the standard library and NumPy are needed here, so tests import it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Settings:
    """Repeat policy of one scale of the benchmark."""

    min_reps: int
    max_reps: int
    budget_s: float  # stop repeating once this much time was measured in a case
    wall_cap_s: float  # ... or once its repeats have run this long (wall clock)
    pause_s: float  # sleep before every timed call
    min_sample_s: float  # block short calls so one sample lasts at least this long
    max_inner: int  # at most this many calls per block
    settle_calls: int  # warm-up: at most this many calls until two in a row agree ...
    settle_cap_s: float  # ... or until the warm-up has taken this long

    def as_dict(self) -> dict:
        return asdict(self)


SETTINGS = {
    "full": Settings(3, 40, 2.0, 30.0, 0.03, 0.005, 2000, 10, 25.0),
    "quick": Settings(3, 15, 0.3, 3.0, 0.02, 0.002, 500, 8, 4.0),
    "tiny": Settings(1, 2, 0.0, 1.0, 0.001, 0.0, 1, 1, 0.0),
}
SETTINGS["rivals"] = SETTINGS["full"]
#: Two warm-up calls agree when the slower is within this factor of the faster.
SETTLE_RATIO = 1.25


@dataclass
class Timing:
    """Summary of one provider's samples (milliseconds per call)."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    min_ms: float
    n_samples: int
    inner: int  # calls per sample


def _call_once(call, pause: float) -> float:
    """Seconds one ``call.run()`` took, after its restore and a pause (both untimed)."""
    if call.restore:
        call.restore()
    time.sleep(pause)
    t0 = time.perf_counter()
    call.run()
    return time.perf_counter() - t0


def _settled(times: list, st: Settings, start: float) -> bool:
    if not times:
        return False
    if len(times) >= max(1, st.settle_calls) or time.perf_counter() - start >= st.settle_cap_s:
        return True
    return len(times) >= 2 and max(times[-2:]) <= SETTLE_RATIO * min(times[-2:])


def settle(call, st: Settings, times: list | None = None) -> None:
    """Warm-up calls until two in a row agree within SETTLE_RATIO, or a cap is reached.

    `times` are the seconds of calls already made (the correctness check's call).
    """
    times = list(times or [])
    start = time.perf_counter()
    while not _settled(times, st, start):
        times.append(_call_once(call, st.pause_s))


def block_size(call, st: Settings) -> int:
    """Back-to-back calls per sample, so that a sample lasts at least ``min_sample_s``."""
    if call.restore is not None or st.min_sample_s <= 0:
        return 1
    dt = _call_once(call, 0.0)
    if 0 < dt < st.min_sample_s:
        return min(st.max_inner, math.ceil(st.min_sample_s / dt))
    return 1


def _sample(call, inner: int, pause: float) -> float:
    """Seconds per call of one block of `inner` calls."""
    if call.restore:
        call.restore()
    time.sleep(pause)
    t0 = time.perf_counter()
    for _ in range(inner):
        call.run()
    return (time.perf_counter() - t0) / inner


def _summary(samples: list, inner: int) -> Timing:
    ms = np.asarray(samples) * 1e3
    p20, p50, p80 = np.percentile(ms, [20, 50, 80])
    return Timing(float(p50), float(p20), float(p80), float(ms.min()), len(samples), inner)


def measure(calls: dict, st: Settings, warm: dict | None = None) -> dict:
    """Time every ``Call`` of `calls` (name -> Call) in alternation; return name -> Timing.

    `warm` maps a name to the seconds of calls made before (they count as warm-up).
    """
    names = list(calls)
    inner = {}
    for name in names:
        settle(calls[name], st, (warm or {}).get(name))
        inner[name] = block_size(calls[name], st)
    samples: dict = {name: [] for name in names}
    start, timed, rep = time.perf_counter(), 0.0, 0
    while True:
        r = rep % len(names)
        for name in names[r:] + names[:r]:
            dt = _sample(calls[name], inner[name], st.pause_s)
            timed += dt * inner[name]
            samples[name].append(dt)
        rep += 1
        if rep >= st.min_reps and (rep >= st.max_reps or timed >= st.budget_s
                                   or time.perf_counter() - start >= st.wall_cap_s):
            break
    return {name: _summary(samples[name], inner[name]) for name in names}


def time_once(fn) -> tuple:
    """(result, seconds) of one call of `fn`."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
