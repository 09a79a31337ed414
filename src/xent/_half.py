"""16-bit logits: float16 and bfloat16 (``ml_dtypes.bfloat16``, an optional dependency).

``logsumexp``, ``softmax``, ``log_softmax``, the ``cross_entropy`` family and
``token_scores`` read 16-bit logits directly: the C kernels widen blocks of rows
to float32 in cache and narrow the (n_rows, n_cols) results back with
round-to-nearest-even (xent_half.h).  Their array results have the input's dtype
and their scalar reductions are float32.  The other functions convert 16-bit
input to float32 first and return float32.

bfloat16 has no buffer-protocol format, so its arrays reach the Cython boundary
as their bits (a uint16 view); float16 arrays go as they are.
"""

from __future__ import annotations

import numpy as np

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


def is_bfloat16(dt: np.dtype) -> bool:
    """True for ``ml_dtypes.bfloat16`` (recognised without importing ml_dtypes)."""
    return (dt.kind == "V" and dt.itemsize == 2 and dt.name == "bfloat16"
            and getattr(dt.type, "__module__", "").startswith("ml_dtypes"))


def is_half(dt: np.dtype) -> bool:
    """True for the 16-bit logits the kernels read natively (native-order float16, bfloat16)."""
    return dt == _F16 or is_bfloat16(dt)


def compute_dtype(dt: np.dtype) -> np.dtype:
    """The dtype a call computes in: float32 for 16-bit logits, else `dt`."""
    return _F32 if is_half(dt) else dt


def kernel_array(a: np.ndarray | None) -> np.ndarray | None:
    """`a` as the Cython boundary takes it: bfloat16 as its uint16 bits."""
    if a is not None and is_bfloat16(a.dtype):
        return a.view(np.uint16)
    return a
