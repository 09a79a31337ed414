"""Fused cross-entropy with the options of a real training run: label_smoothing=0.1,
a class weight, 10% of the targets ignored.  xent vs NumPy vs PyTorch (same options).

As in bench_cross_entropy.py, the fused xent call writes over a copy of the logits
that is restored outside the timed region.
"""

from __future__ import annotations

import numpy as np
from providers import (
    label,
    make_logits,
    make_targets,
    np_cross_entropy_and_grad_options,
    pedantic_rounds,
    xent_fused_in_place,
)

FAMILY = "ce_options"
SMOOTHING = 0.1
IGNORE_FRACTION = 0.1


def _inputs(shape, dtype):
    x = make_logits(shape, dtype)
    t = make_targets(shape)
    t[np.random.default_rng(3).random(t.shape) < IGNORE_FRACTION] = -100
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=shape[-1]).astype(dtype)
    return x, t, w


def bench_cross_entropy_and_grad_options(benchmark, lib, provider, dtype, shape, threads):
    x, t, w = _inputs(shape, dtype)
    setup = None
    if provider == "xent":
        setup, run = xent_fused_in_place(x, t, threads, weight=w, label_smoothing=SMOOTHING)
    elif provider == "numpy":
        grad = np.empty_like(x)

        def run():
            return np_cross_entropy_and_grad_options(x, t, w, SMOOTHING, -100, grad)

    else:
        xt, tt, wt = lib.from_numpy(x).requires_grad_(), lib.from_numpy(t), lib.from_numpy(w)

        def run():
            xt.grad = None
            lib.nn.functional.cross_entropy(xt, tt, weight=wt, label_smoothing=SMOOTHING).backward()

    label(benchmark, "cross_entropy_and_grad+options", provider, dtype, shape, threads)
    benchmark.pedantic(run, setup=setup, rounds=pedantic_rounds(benchmark), warmup_rounds=1)
