"""``torch.nn`` loss modules computed by xent (subclasses of PyTorch's own)."""

from __future__ import annotations

import torch

from ._binary import binary_cross_entropy, binary_cross_entropy_with_logits
from ._ce import cross_entropy, focal_loss, nll_loss


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    r"""Drop-in for ``torch.nn.CrossEntropyLoss`` computed by xent on CPU.

    A subclass of ``torch.nn.CrossEntropyLoss`` with the same constructor
    (including the deprecated `size_average` / `reduce`, mapped to
    `reduction` as PyTorch does), buffers and ``state_dict``; only
    ``forward`` differs. See :func:`cross_entropy`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As ``torch.nn.CrossEntropyLoss``.
    z_loss, softcap : optional
        Keyword-only xent extensions; see :func:`cross_entropy`.
    inplace_backward : bool, optional
        Keyword-only. Write the gradient into the logits' storage (destroys
        them); see the package docstring.
    num_threads : int, optional
        Keyword-only. OpenMP threads for xent.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> crit = xt.CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = torch.randn(8, 10, requires_grad=True)
    >>> target = torch.randint(0, 10, (8,))
    >>> ref = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target)
    >>> torch.allclose(crit(logits, target), ref)
    True
    """

    def __init__(self, weight: torch.Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0, *, z_loss: float = 0.0,
                 softcap: float | None = None, inplace_backward: bool = False,
                 num_threads: int | None = None) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.z_loss = z_loss
        self.softcap = softcap
        self.inplace_backward = inplace_backward
        self.num_threads = num_threads

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             z_loss=self.z_loss, softcap=self.softcap,
                             inplace_backward=self.inplace_backward, num_threads=self.num_threads)


class NLLLoss(torch.nn.NLLLoss):
    r"""Drop-in for ``torch.nn.NLLLoss`` computed by xent on CPU; see :func:`nll_loss`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction
        As ``torch.nn.NLLLoss``.
    num_threads : int, optional
        Keyword-only. OpenMP threads for xent.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> logp = torch.log_softmax(torch.randn(3, 4), 1)
    >>> t = torch.tensor([0, 3, 1])
    >>> torch.allclose(xt.NLLLoss()(logp, t), torch.nn.NLLLoss()(logp, t))
    True
    """

    def __init__(self, weight: torch.Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean", *,
                 num_threads: int | None = None) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction, num_threads=self.num_threads)


class BCELoss(torch.nn.BCELoss):
    r"""Drop-in for ``torch.nn.BCELoss`` computed by xent on CPU.

    See :func:`binary_cross_entropy`.

    Parameters
    ----------
    weight, size_average, reduce, reduction
        As ``torch.nn.BCELoss``.
    num_threads : int, optional
        Keyword-only. OpenMP threads for xent.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> p, t = torch.tensor([0.3, 0.8]), torch.tensor([0.0, 1.0])
    >>> torch.allclose(xt.BCELoss()(p, t), torch.nn.BCELoss()(p, t))
    True
    """

    def __init__(self, weight: torch.Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean", *, num_threads: int | None = None) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.num_threads = num_threads

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction,
                                    num_threads=self.num_threads)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    r"""Drop-in for ``torch.nn.BCEWithLogitsLoss`` computed by xent on CPU.

    See :func:`binary_cross_entropy_with_logits`.

    Parameters
    ----------
    weight, size_average, reduce, reduction, pos_weight
        As ``torch.nn.BCEWithLogitsLoss``.
    inplace_backward : bool, optional
        Keyword-only; see the package docstring.
    num_threads : int, optional
        Keyword-only. OpenMP threads for xent.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x, y = torch.randn(2, 3), torch.rand(2, 3)
    >>> crit = xt.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 3.0]))
    >>> ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 3.0]))
    >>> torch.allclose(crit(x, y), ref(x, y))
    True
    """

    def __init__(self, weight: torch.Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean", pos_weight: torch.Tensor | None = None, *,
                 inplace_backward: bool = False, num_threads: int | None = None) -> None:
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self.inplace_backward = inplace_backward
        self.num_threads = num_threads

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight,
            inplace_backward=self.inplace_backward, num_threads=self.num_threads)


class FocalLoss(torch.nn.Module):
    r"""Multi-class softmax focal loss module; see :func:`focal_loss`.

    Parameters
    ----------
    gamma : float, optional
    alpha : float or Tensor of shape (C,), optional
        A tensor is registered as a buffer (moves with ``.to()``, saved in
        ``state_dict``).
    ignore_index : int, optional
    reduction : {"mean", "sum", "none"}, optional
    inplace_backward : bool, optional
        Keyword-only; see the package docstring.
    num_threads : int, optional
        Keyword-only. OpenMP threads for xent.

    Examples
    --------
    >>> import xent.torch as xt
    >>> xt.FocalLoss(gamma=2.0)
    FocalLoss(gamma=2.0, alpha=None, ignore_index=-100, reduction='mean')
    """

    def __init__(self, gamma: float = 2.0, alpha=None, ignore_index: int = -100,
                 reduction: str = "mean", *, inplace_backward: bool = False,
                 num_threads: int | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        if isinstance(alpha, torch.Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.inplace_backward = inplace_backward
        self.num_threads = num_threads

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(input, target, gamma=self.gamma, alpha=self.alpha,
                          ignore_index=self.ignore_index, reduction=self.reduction,
                          inplace_backward=self.inplace_backward, num_threads=self.num_threads)

    def extra_repr(self) -> str:
        a = "tensor" if isinstance(self.alpha, torch.Tensor) else self.alpha
        return (f"gamma={self.gamma}, alpha={a}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}")
