"""Shapes of the pytest-benchmark suites: ``FULL`` when timing, ``SMALL`` for smoke runs."""

from __future__ import annotations

DTYPES = ("float32", "float64")
THREADS = (1, 2)
PROVIDERS = ("xent", "numpy", "torch")

FULL = {
    "softmax": [(4096, 32000), (1024, 128256), (262144, 10)],
    "cross_entropy": [(4096, 32000), (1024, 128256), (32768, 1000), (262144, 10)],
    "ce_options": [(4096, 32000)],
}
SMALL = {
    "softmax": [(16, 1000), (64, 10)],
    "cross_entropy": [(16, 1000), (64, 10)],
    "ce_options": [(16, 1000)],
}
# float64 only up to this many elements in FULL (4096x32000 float64 is 1 GB per array)
MAX_F64_ELEMENTS = 40_000_000


def shapes_for(family: str, small: bool, dtype: str) -> list:
    """The shapes to run for a family (a key of ``FULL``) and dtype."""
    if small:
        return list(SMALL[family])
    out = []
    for shape in FULL[family]:
        n = 1
        for d in shape:
            n *= d
        if dtype == "float32" or n <= MAX_F64_ELEMENTS:
            out.append(shape)
    return out


def shape_id(shape: tuple) -> str:
    """``(4096, 32000)`` -> ``"4096x32000"``."""
    return "x".join(map(str, shape))
