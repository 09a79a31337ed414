"""The README's ```python blocks run as written, and their results are right.

Each block runs in a fresh namespace; the values it leaves behind are checked against
the float64 NumPy oracles of benchmarks/reference.py, written independently of xent.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import reference

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                    flags=re.S | re.M)


def _run(index: int) -> dict:
    code = BLOCKS[index]
    if re.search(r"^import torch|^import xent\.torch", code, flags=re.M):
        pytest.importorskip("torch")
    ns: dict = {}
    exec(compile(code, f"{README}:block{index}", "exec"), ns)
    return ns


def _block_defining(name: str) -> int:
    for i, code in enumerate(BLOCKS):
        if re.search(rf"^{name}\b.*=", code, flags=re.M):
            return i
    raise AssertionError(f"no README block assigns {name!r}")


def test_every_readme_block_is_checked():
    """Each block is run by one of the tests below (a new block needs its own test)."""
    checked = {_block_defining(name) for name in ("loss_z", "s", "criterion")}
    assert checked == set(range(len(BLOCKS)))


def test_readme_cross_entropy_values():
    ns = _run(_block_defining("loss_z"))
    pred, labels = ns["pred"], ns["labels"]
    mean, grad = reference.cross_entropy_and_grad(pred, labels)
    np.testing.assert_allclose(ns["loss"], mean, rtol=1e-5)
    np.testing.assert_allclose(ns["per_token"],
                               reference.cross_entropy(pred, labels, reduction="none"),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ns["ppl"], reference.perplexity(pred, labels), rtol=1e-5)
    assert type(ns["ppl"]) is np.float64
    np.testing.assert_allclose(ns["grad"], grad, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        ns["loss_z"], reference.cross_entropy(pred, labels, z_loss=1e-4, softcap=30.0),
        rtol=1e-5)


def test_readme_token_scores_values():
    ns = _run(_block_defining("s"))
    s = ns["s"]
    want = reference.token_scores(ns["logits"], ns["tokens"], top_k=5)
    np.testing.assert_allclose(s.logprob, want.logprob, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s.rank, want.rank)
    np.testing.assert_array_equal(s.top_indices, want.top_indices)


def test_readme_torch_block_trains():
    ns = _run(_block_defining("criterion"))
    torch = pytest.importorskip("torch")
    assert torch.isfinite(ns["loss"]).item()
    grad = ns["model"][-1].weight.grad
    assert grad is not None and torch.isfinite(grad).all().item()
