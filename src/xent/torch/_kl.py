"""Knowledge-distillation KL divergence on logits (classes on the last dim)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._common import check_floating, check_not_differentiable, check_tensor, compute_dtype
from ._common import to_numpy as _np
from ._engine import Kind, Saved, register, run_loss


class KLOptions(NamedTuple):
    temperature: float
    reduction: str
    num_threads: int | None


class _KLDiv(Kind):
    name = "kl_div_with_logits"
    rows = True
    options = KLOptions

    def numpy_args(self, target, w1, w2, o):
        return (_np(target),), dict(temperature=o.temperature, reduction=o.reduction,
                                    num_threads=o.num_threads)

    def hvp(self, sv: Saved, u: torch.Tensor):
        # d loss / d s = scale * T * (p_s - p_t), so the Hessian is scale * J(p_s).
        o = sv.opts
        p = torch.softmax(sv.x.to(sv.g.dtype) / o.temperature, -1)
        c = p.shape[-1] if p.dim() else 1
        scale = {"batchmean": c / max(p.numel(), 1), "mean": 1 / max(p.numel(), 1)}.get(
            o.reduction, 1.0)
        return scale * (p * u - p * (p * u).sum(-1, keepdim=True)), None


KL_DIV = register(_KLDiv(), "_KLDivFunction")


def kl_div_with_logits(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Knowledge-distillation loss on ``(..., C)`` logits (classes on the LAST dim).

    With ``s``, ``t`` of shape ``(..., C)``, ``T = temperature``,
    ``log_q = F.log_softmax(s / T, -1)``, ``p = F.softmax(t / T, -1)`` and the
    elementwise terms ``k = F.kl_div(log_q, p, reduction="none") * T**2``:

    * ``"sum"``: ``k.sum()``;
    * ``"mean"``: ``k.mean()`` (divided by the number of elements, classes
      included), which is ``F.kl_div(log_q, p, reduction="mean") * T**2``;
    * ``"batchmean"``: ``k.sum() / prod(s.shape[:-1])``, divided by the number of
      rows.  For 2-D logits this is ``F.kl_div(log_q, p, reduction="batchmean")
      * T**2``; for ``(B, L, C)`` logits PyTorch's ``"batchmean"`` divides by
      ``B`` only, so it is ``L`` times this value; for 1-D logits it divides by
      ``C`` where this divides by 1;
    * ``"none"``: ``k.sum(-1)``, one value per row (shape ``s.shape[:-1]``),
      unlike ``F.kl_div``'s elementwise ``"none"``.

    Unlike the other functions here it keeps xent's layout: PyTorch has no
    module for it.  Differentiable to any order in `student_logits`.

    Parameters
    ----------
    student_logits : Tensor of shape (..., C)
        Differentiated.
    teacher_logits : Tensor of the same shape
        A constant (one that requires grad, with grad mode on, raises
        RuntimeError; pass ``teacher_logits.detach()``).
    temperature : float > 0, optional
    reduction : {"batchmean", "mean", "sum", "none"}, optional
    inplace_backward : bool, optional
        See :func:`cross_entropy` (writes into `student_logits`).
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        0-d, or ``student_logits.shape[:-1]`` for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> import xent.torch as xt
    >>> s = torch.randn(2, 5, requires_grad=True)
    >>> t = torch.randn(2, 5)
    >>> loss = xt.kl_div_with_logits(s, t, temperature=2.0)
    >>> ref = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1),
    ...                reduction="batchmean") * 4
    >>> torch.allclose(loss, ref)
    True
    >>> loss.backward()
    >>> tuple(s.grad.shape)
    (2, 5)
    """
    if reduction not in ("batchmean", "mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    check_tensor(student_logits, "student_logits")
    check_tensor(teacher_logits, "teacher_logits")
    check_floating(student_logits, "kl_div_with_logits")
    check_not_differentiable(teacher_logits, "kl_div_with_logits", "teacher_logits")
    if teacher_logits.shape != student_logits.shape:
        raise RuntimeError(f"teacher_logits has shape {list(teacher_logits.shape)}, expected the "
                           f"student's shape {list(student_logits.shape)}")
    if student_logits.dim() == 0:
        raise RuntimeError("kl_div_with_logits: the logits need a class dimension (..., C); "
                           "got a 0-d tensor")
    cdt = compute_dtype(student_logits.dtype)
    teacher = teacher_logits.detach().to(cdt)
    opts = KLOptions(float(temperature), reduction, num_threads)
    loss = run_loss(KL_DIV, student_logits, teacher, opts=opts, inplace=inplace_backward)
    return loss if loss.dtype == student_logits.dtype else loss.to(student_logits.dtype)
