"""Does calling xent right before PyTorch (or PyTorch before xent) slow the second down?

Both libraries run OpenMP teams (xent's libgomp, PyTorch's own).  For each
library, blocks of back-to-back calls of that library alone (the other idle
for 50 ms first) alternate with blocks where every timed call directly
follows an untimed call of the other library.  The goal: neither slowed by
more than 10%.
"""

from __future__ import annotations

import time

import numpy as np

from ..cases import THREADS, make_logits, make_targets

#: scale -> (calls per block, rounds, shape)
SIZES = {"full": (30, 3, (1024, 32000)), "quick": (10, 2, (256, 32000)), "tiny": (2, 1, (4, 64))}
SIZES["rivals"] = SIZES["full"]


def _fused_calls(shape):
    import torch

    import xent

    x = make_logits(shape, "float32")
    t = make_targets(shape)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    tt = torch.from_numpy(t)

    def run_xent():
        xent.cross_entropy_and_grad(x, t, num_threads=THREADS)

    def run_torch():
        xt.grad = None
        torch.nn.functional.cross_entropy(xt, tt).backward()

    return run_xent, run_torch


def _blocks(target, other, calls: int, rounds: int) -> tuple:
    """Median ms of `target` alone and right after `other`."""
    alone, mixed = [], []
    for _ in range(rounds):
        time.sleep(0.05)
        for _ in range(calls):
            t0 = time.perf_counter()
            target()
            alone.append(time.perf_counter() - t0)
        time.sleep(0.05)
        for _ in range(calls):
            other()
            t0 = time.perf_counter()
            target()
            mixed.append(time.perf_counter() - t0)
    return float(np.median(alone)) * 1e3, float(np.median(mixed)) * 1e3


def run(scale: str) -> list:
    """The mixing measurement at a scale: one record per library."""
    import torch

    calls, rounds, shape = SIZES[scale]
    torch.set_num_threads(THREADS)
    run_xent, run_torch = _fused_calls(shape)
    run_xent()
    run_torch()
    out = []
    for lib, target, other in (("torch", run_torch, run_xent), ("xent", run_xent, run_torch)):
        alone, mixed = _blocks(target, other, calls, rounds)
        slow = (mixed / alone - 1.0) * 100.0 if alone > 0 else float("nan")
        out.append({"library": lib, "other": "xent" if lib == "torch" else "torch",
                    "op": "fused loss+grad", "shape": list(shape), "dtype": "float32",
                    "threads": THREADS, "alone_ms": alone, "interleaved_ms": mixed,
                    "slowdown_pct": slow, "within_10pct": bool(slow <= 10.0),
                    "n": calls * rounds})
    return out


def format_mixing(mixing: list) -> str:
    """The mixing records as text lines."""
    lines = []
    for m in mixing:
        verdict = "ok" if m["within_10pct"] else "SLOWER THAN 10%"
        lines.append(f"  {m['library']:5s} {m['op']} {'x'.join(map(str, m['shape']))}: alone "
                     f"{m['alone_ms']:.3g} ms, right after a {m['other']} call "
                     f"{m['interleaved_ms']:.3g} ms ({m['slowdown_pct']:+.1f}%, {verdict})")
    return "\n".join(lines)
