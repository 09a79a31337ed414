"""bfloat16 / float16 tensors handed to the kernels without a float32 copy.

The NumPy API reads 16-bit logits natively (:mod:`xent._half`); a contiguous
float16 tensor is a NumPy float16 array, a bfloat16 tensor an ``ml_dtypes.bfloat16``
array over the same memory when ml_dtypes is installed (otherwise the adapter
copies it to float32 as before).  The fused call still keeps its gradient G in
float32, so the backward applies ``grad_output`` before the one rounding to the
input's dtype.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import has_storage

_BF16: list = []  # [ml_dtypes.bfloat16 dtype or None], looked up once


def _bfloat16():
    if not _BF16:
        try:
            import ml_dtypes
        except ImportError:
            _BF16.append(None)
        else:
            _BF16.append(np.dtype(ml_dtypes.bfloat16))
    return _BF16[0]


def half_numpy(x: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of a contiguous float16/bfloat16 tensor, or None (then: copy)."""
    if x.dtype is not torch.float16 and x.dtype is not torch.bfloat16:
        return None
    if not x.is_contiguous() or not has_storage(x) or x.is_neg():
        return None
    x = x.detach()
    if x.dtype is torch.float16:
        return x.numpy()
    bf16 = _bfloat16()
    return None if bf16 is None else x.view(torch.int16).numpy().view(bf16)


def from_numpy(a) -> torch.Tensor:
    """A NumPy result (any float dtype, bfloat16 included) as a tensor sharing it."""
    a = np.asarray(a)
    if a.dtype.kind == "V":  # ml_dtypes.bfloat16
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)
