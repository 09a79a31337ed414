"""Calibration metric: expected_calibration_error."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._docs import fill_doc
from ._kernels import _core
from ._threads import _resolve
from ._validation import (
    class_logits,
    class_targets,
    integer_scalar,
    raise_target_error,
)

__all__ = ["expected_calibration_error"]


def expected_calibration_error(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    n_bins: int = 15,
    ignore_index: int = -100,
    num_threads: int | None = None,
) -> np.float64:
    r"""Top-1 expected calibration error (ECE) of softmax predictions.

    Each non-ignored row is assigned to one of `n_bins` equal-width bins
    ``(lo, hi]`` of its confidence ``max(softmax(logits))``; then
    ``ECE = sum_b (n_b / N) |accuracy_b - mean_confidence_b|``, the prediction
    being the arg-max (ties go to the lower class index).

    Parameters
    ----------
    {logits_rows}
    {class_target}
    n_bins : int, optional
        Number of confidence bins, ``>= 1`` (boundaries
        ``numpy.linspace(0, 1, n_bins + 1)``).
    ignore_index : int, optional
        Target value of rows to leave out.
    {num_threads}

    Returns
    -------
    numpy.float64
        The ECE in ``[0, 1]``; NaN when every row is ignored (or the batch is
        empty), or when a counted row's softmax is NaN (a row holding NaN or
        ``+inf``, or only ``-inf``).

    Raises
    ------
    TypeError
        If `logits` is not real floating point or `target` is not integer.
    ValueError
        On a shape mismatch, ``C == 0`` or ``n_bins < 1``.
    IndexError
        If a target is outside ``[0, C)`` and not `ignore_index`.

    Notes
    -----
    Confidences and the bin sums are accumulated in float64, in row order
    (the result does not depend on the thread count).

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of
       Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> logits = np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    >>> round(float(xent.expected_calibration_error(logits, np.array([0, 0, 0]), n_bins=10)), 6)
    0.34145
    """
    x = class_logits(logits)
    lead = x.shape[:-1]
    c = x.shape[-1]
    t = class_targets(target, lead)
    nb = integer_scalar(n_bins, "n_bins")
    if nb < 1:
        raise ValueError(f"n_bins must be >= 1, got {nb}")
    ign = integer_scalar(ignore_index, "ignore_index")
    nt = _resolve(num_threads)
    bad, ece = _core.ece_rows(x.reshape(-1, c), t.reshape(-1),
                              _core.ECEOptions(n_bins=nb, ignore_index=ign), nt)
    if bad:
        raise_target_error(t, c, ign)
    return np.float64(ece)


fill_doc(expected_calibration_error)
