"""Knowledge-distillation loss: kl_div_with_logits (+ _grad, _and_grad)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._docs import fill_doc
from ._half import in_float32
from ._kernels import _core
from ._threads import _resolve
from ._validation import (
    as_float_array,
    check_reduction,
    class_logits,
    finish_output,
    grad_output_rows,
    output_for,
    positive,
    reduce_loss,
)

__all__ = ["kl_div_with_logits", "kl_div_with_logits_grad", "kl_div_with_logits_and_grad"]

_KL_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def _kl(student, teacher, temperature, reduction, num_threads, want_loss, grad_output,
        want_grad, out):
    s = class_logits(student, "student_logits")
    dt, lead, c = s.dtype, s.shape[:-1], s.shape[-1]
    t = as_float_array(teacher, "teacher_logits")
    if t.shape != s.shape:
        raise ValueError(
            f"teacher_logits has shape {t.shape}, expected the student_logits shape {s.shape}"
        )
    t = np.ascontiguousarray(t, dtype=dt)
    red = check_reduction(reduction, _KL_REDUCTIONS)
    scale, g_rows = grad_output_rows(grad_output, red, lead, dt) if want_grad else (1.0, None)
    opt = _core.KLOptions(temperature=positive(temperature, "temperature"), reduction=red,
                          grad_scale=scale)
    nt = _resolve(num_threads)
    dest = None
    if want_grad:
        dest, out, (t, g_rows) = output_for(out, s.shape, dt, (s,), (t, g_rows))
    rows = np.empty(lead, dtype=dt) if want_loss else None
    total = _core.kl_rows(s.reshape(-1, c), t, g_rows, rows,
                          None if dest is None else dest.reshape(-1, c), opt, nt)
    loss = None
    if want_loss:
        n = rows.size
        loss = reduce_loss(rows, total, n * c if red == "mean" else n, red, dt)
    return loss, finish_output(dest, out) if want_grad else None


_kl = in_float32(_kl)


def kl_div_with_logits(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    num_threads: int | None = None,
) -> NDArray[np.floating] | np.floating:
    r"""Knowledge-distillation loss: KL(teacher || student) on softened softmaxes.

    Equals ``F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1),
    reduction=r) * T**2``, computed from the logits in one fused pass per row
    (no probability arrays are materialised).

    Parameters
    ----------
    student_logits : array_like, shape (..., C)
        Student scores (the gradient is taken with respect to these).
        float32/float64 natively; float16/bfloat16 in float32, array results
        rounded once to the input dtype.
    teacher_logits : array_like, shape (..., C)
        Teacher scores, same shape (converted to the student's dtype).
    temperature : float, optional
        Softening temperature ``T > 0``; the loss is scaled by ``T**2``.
    reduction : {"batchmean", "mean", "sum", "none"}, optional
        ``"batchmean"`` divides the sum by the product of the leading axes
        (the number of rows); ``"mean"`` by the number of elements (PyTorch's
        ``"mean"``); ``"none"`` returns one value per row (the elementwise
        terms summed over the class axis), shape ``logits.shape[:-1]``.
    {num_threads}

    Returns
    -------
    numpy scalar or ndarray

    Raises
    ------
    TypeError
        If either input is not real floating point.
    ValueError
        On a shape mismatch, ``C == 0``, ``temperature <= 0`` or an unknown
        `reduction`.

    See Also
    --------
    kl_div_with_logits_grad, kl_div_with_logits_and_grad

    Notes
    -----
    A class whose teacher probability is 0 contributes ``0 * log p_student``
    as in PyTorch's ``xlogy(pt, pt) - pt * log ps`` form: 0 for a finite
    student logit, NaN when the student logit is ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> s = np.array([[1.0, 2.0, 0.5]])
    >>> t = np.array([[1.5, 1.0, 0.0]])
    >>> round(float(xent.kl_div_with_logits(s, t, temperature=2.0)), 6)
    0.224028
    >>> float(xent.kl_div_with_logits(s, s))
    0.0
    """
    return _kl(student_logits, teacher_logits, temperature, reduction, num_threads,
               True, None, False, None)[0]


def kl_div_with_logits_grad(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    grad_output: ArrayLike = 1.0,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> NDArray[np.floating]:
    r"""Gradient of `kl_div_with_logits` w.r.t. the student logits, times `grad_output`.

    ``T * (softmax(s / T) - softmax(t / T))``, divided by the number of rows
    (``"batchmean"``) or elements (``"mean"``).

    Parameters
    ----------
    student_logits, teacher_logits
        As in `kl_div_with_logits`.
    {grad_output_rows}
    temperature, reduction
        As in `kl_div_with_logits`.
    {out_grad}
    {num_threads}

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError, ValueError
        As in `kl_div_with_logits`, plus an unacceptable `out`/`grad_output`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> s = np.array([[1.0, 2.0, 0.5]])
    >>> g = xent.kl_div_with_logits_grad(s, np.zeros((1, 3)))
    >>> np.allclose(g, xent.softmax(s) - 1 / 3)
    True
    """
    return _kl(student_logits, teacher_logits, temperature, reduction, num_threads,
               False, grad_output, True, out)[1]


def kl_div_with_logits_and_grad(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    out: NDArray[np.floating] | None = None,
    num_threads: int | None = None,
) -> tuple[NDArray[np.floating] | np.floating, NDArray[np.floating]]:
    r"""`kl_div_with_logits` and its gradient w.r.t. the student logits.

    Parameters
    ----------
    student_logits, teacher_logits, temperature, reduction
        As in `kl_div_with_logits`.
    {out_grad}
    {num_threads}

    {returns_loss_and_grad}

    Raises
    ------
    TypeError, ValueError
        As in `kl_div_with_logits_grad`.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> s = np.zeros((2, 4), dtype=np.float32)
    >>> loss, grad = xent.kl_div_with_logits_and_grad(s, s)
    >>> float(loss), float(np.abs(grad).max())
    (0.0, 0.0)
    """
    return _kl(student_logits, teacher_logits, temperature, reduction, num_threads,
               True, 1.0, True, out)


fill_doc(kl_div_with_logits, kl_div_with_logits_grad, kl_div_with_logits_and_grad)
