"""The README's ```python blocks run as written, and their results are right.

Each block runs in a fresh namespace; the values it leaves behind are checked against
float64 NumPy computations written here, independently of xent.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

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


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def test_every_readme_block_is_checked():
    """Each block is run by one of the tests below (a new block needs its own test)."""
    checked = {_block_defining(name) for name in ("loss_z", "s", "criterion")}
    assert checked == set(range(len(BLOCKS)))


def test_readme_cross_entropy_values():
    ns = _run(_block_defining("loss_z"))
    pred = ns["pred"].astype(np.float64)
    labels = ns["labels"]
    keep = labels != -100
    lsm = _log_softmax(pred)
    safe = np.where(keep, labels, 0)
    nll = -np.take_along_axis(lsm, safe[..., None], axis=-1)[..., 0]
    rows = np.where(keep, nll, 0.0)
    mean = rows[keep].mean()
    np.testing.assert_allclose(ns["loss"], mean, rtol=1e-5)
    np.testing.assert_allclose(ns["per_token"], rows, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ns["ppl"], np.exp(mean), rtol=1e-5)
    assert type(ns["ppl"]) is np.float64

    p = np.exp(lsm)
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, safe[..., None], 1.0, axis=-1)
    grad = np.where(keep[..., None], p - onehot, 0.0) / keep.sum()
    np.testing.assert_allclose(ns["grad"], grad, rtol=1e-5, atol=1e-8)

    capped = 30.0 * np.tanh(pred / 30.0)
    lse = np.log(np.exp(capped - capped.max(-1, keepdims=True)).sum(-1)) + capped.max(-1)
    z_rows = lse - np.take_along_axis(capped, safe[..., None], axis=-1)[..., 0] + 1e-4 * lse**2
    np.testing.assert_allclose(ns["loss_z"], z_rows[keep].mean(), rtol=1e-5)


def test_readme_token_scores_values():
    ns = _run(_block_defining("s"))
    logits, tokens, s = ns["logits"], ns["tokens"], ns["s"]
    lsm = _log_softmax(logits)
    target = np.take_along_axis(lsm, tokens[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(s.logprob, target, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s.rank, 1 + (lsm > target[..., None]).sum(-1))
    top = np.argsort(-lsm, axis=-1, kind="stable")[..., :5]
    np.testing.assert_array_equal(s.top_indices, top)


def test_readme_torch_block_trains():
    ns = _run(_block_defining("criterion"))
    torch = pytest.importorskip("torch")
    assert torch.isfinite(ns["loss"]).item()
    grad = ns["model"][-1].weight.grad
    assert grad is not None and torch.isfinite(grad).all().item()
