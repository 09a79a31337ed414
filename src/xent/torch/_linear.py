"""Fused linear layer + cross-entropy with autograd, without the N x V logits.

The chunk loop is xent's own (``xent._linear.run_linear_ce``); here its matrix
products run through ``torch.mm`` / ``torch.addmm`` / in-place ``addmm_`` on
tensors that share memory with the loop's NumPy buffers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._cross_entropy import _checked_options
from .._linear import _CHUNK, LinearInputs, linear_inputs, run_linear_ce
from .._threads import _resolve
from ._common import check_not_differentiable, check_tensor, to_numpy, transforms_active

__all__ = ["LinearCrossEntropyLoss", "linear_cross_entropy"]

_T = torch.from_numpy


class TorchProducts:
    """The chunk loop's products by PyTorch's BLAS (accumulating in place with addmm_)."""

    @staticmethod
    def take(a, idx, out):
        torch.index_select(_T(a), 0, _T(idx), out=_T(out))
        return out

    @staticmethod
    def logits(h, w, b, out):
        if b is None:
            torch.mm(_T(h), _T(w).t(), out=_T(out))
        else:
            torch.addmm(_T(b), _T(h), _T(w).t(), out=_T(out))
        return out

    @staticmethod
    def grad_hidden(g, w, out):
        torch.mm(_T(g), _T(w), out=_T(out))
        return out

    @staticmethod
    def grad_weight(g, h, acc, first):
        if first:
            torch.mm(_T(g).t(), _T(h), out=_T(acc))
        else:
            _T(acc).addmm_(_T(g).t(), _T(h))

    @staticmethod
    def grad_bias(g, acc, first):
        if first:
            torch.sum(_T(g), 0, out=_T(acc))
        else:
            _T(acc).add_(_T(g).sum(0))


def _array(t: torch.Tensor, name: str) -> np.ndarray:
    """A NumPy view (or contiguous copy) of a float32/float64 CPU tensor."""
    check_tensor(t, name)
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"xent.torch.linear_cross_entropy computes float32 and float64; "
                        f"{name} has dtype {t.dtype}")
    return t.detach().contiguous().resolve_conj().resolve_neg().numpy()


def _inputs(hidden, linear_weight, target, linear_bias, weight, opts, sample_weight):
    h = _array(hidden, "hidden")
    w = _array(linear_weight, "linear_weight")
    if hidden.dtype != linear_weight.dtype:
        raise RuntimeError(f"expected hidden and linear_weight to have the same dtype, but got: "
                           f"{hidden.dtype} != {linear_weight.dtype}")
    b = None
    if linear_bias is not None:
        b = _array(linear_bias, "linear_bias")
        if linear_bias.dtype != hidden.dtype:
            raise RuntimeError(f"expected linear_bias of dtype {hidden.dtype}, "
                               f"got {linear_bias.dtype}")
    check_tensor(target, "target")
    check_not_differentiable(target, "linear_cross_entropy", "target")
    check_not_differentiable(weight, "linear_cross_entropy", "weight")
    check_not_differentiable(sample_weight, "linear_cross_entropy", "sample_weight")
    return linear_inputs(h, w, to_numpy(target), b, to_numpy(weight), opts[1],
                         to_numpy(sample_weight))


def _tensor(a):
    return None if a is None else torch.from_numpy(a)


class _LinearCE(torch.autograd.Function):
    """Loss from one pass that also computes the three gradients for grad_output = 1."""

    @staticmethod
    def forward(ctx, hidden, linear_weight, linear_bias, a: LinearInputs, opts, chunk_size,
                nt):
        want = any(ctx.needs_input_grad[:3])
        loss, gh, gw, gb = run_linear_ce(a, opts, chunk_size, nt, want, products=TorchProducts)
        ctx.a, ctx.opts, ctx.chunk_size, ctx.nt = a, opts, chunk_size, nt
        ctx.grads = (_tensor(gh), _tensor(gw), _tensor(gb)) if want else None
        return torch.from_numpy(np.array(loss, dtype=a.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads, ctx.grads = ctx.grads, None  # handed to autograd once (no copy)
        go = grad_output.detach()
        if go.ndim and go.numel():
            first = go.reshape(-1)[0]
            uniform = bool((go == first).all())
            scalar = first.item() if uniform else None
        else:
            scalar = go.item() if go.ndim == 0 else 1.0
        if grads is None or scalar is None:
            # retain_graph's second backward, or a per-row grad_output of "none": recompute
            g = go.numpy() if scalar is None else scalar
            _, gh, gw, gb = run_linear_ce(ctx.a, ctx.opts, ctx.chunk_size, ctx.nt, True, g,
                                          products=TorchProducts)
            grads = (_tensor(gh), _tensor(gw), _tensor(gb))
        elif scalar != 1.0:
            for g in grads:
                if g is not None:
                    g.mul_(scalar)
        gh, gw, gb = grads
        need = ctx.needs_input_grad
        return (gh if need[0] else None, gw if need[1] else None,
                gb if need[2] else None, None, None, None, None)


def linear_cross_entropy(
    hidden: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None = None,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight: torch.Tensor | None = None,
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Cross-entropy of ``F.linear(hidden, linear_weight, linear_bias)`` without the logits.

    The loss and its gradients with respect to `hidden`, `linear_weight` and
    `linear_bias` come from one pass over chunks of rows (see
    :func:`xent.linear_cross_entropy`); backward only scales the saved
    gradients by ``grad_output``.  Peak extra memory: the three gradients and
    one chunk of logits (plus one chunk of gathered hidden rows when some
    targets are ignored), instead of several ``N x V`` tensors.

    Parameters
    ----------
    hidden : Tensor of shape (..., D)
        float32 or float64, any number of leading axes (``(B, T, D)`` needs no
        reshape).
    linear_weight : Tensor of shape (V, D)
        Same dtype as `hidden` (``torch.nn.Linear(D, V).weight``).
    target : Tensor
        Class indices of shape ``hidden.shape[:-1]``, or class probabilities of
        shape ``hidden.shape[:-1] + (V,)`` (not differentiated).
    linear_bias : Tensor of shape (V,), optional
        The layer's bias.
    weight, ignore_index, reduction, label_smoothing
        As ``torch.nn.functional.cross_entropy`` (`weight`: per-class weights).
    z_loss, softcap, sample_weight
        As :func:`xent.cross_entropy` (`sample_weight` of shape
        ``hidden.shape[:-1]``).
    {chunk}
    num_threads : int, optional
        OpenMP threads of xent's kernel (the products use PyTorch's threads).

    Returns
    -------
    Tensor
        A scalar for ``"mean"``/``"sum"``; shape ``hidden.shape[:-1]`` for
        ``"none"``.

    Notes
    -----
    Names follow ``torch.nn.functional.linear_cross_entropy`` (`linear_weight`,
    `linear_bias`; `weight` is the class weights), with `linear_bias` also
    accepted positionally.  Layout: features on the last axis of `hidden`, as
    for ``F.linear`` (PyTorch's function takes ``(N, D)``).

    The gradients for ``grad_output = 1`` are computed in the forward pass
    whenever one of the three inputs requires grad; a scalar (or, for
    ``"none"``, uniform) ``grad_output`` scales them in place.  A non-uniform
    ``grad_output`` of ``reduction="none"``, and a second backward through a
    retained graph, recompute the pass with it (the inputs are kept by
    reference; modifying them in place in between gives wrong gradients).
    Double backward is not supported (RuntimeError).  CPU float32/float64
    tensors only.  Unlike the adapter's other functions this is a plain
    ``torch.autograd.Function``, not a ``torch.library`` custom op: forward-mode
    AD, ``torch.func`` transforms and ``torch.compile``/``torch.export``
    tracing through it are not supported.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> import xent.torch as xt
    >>> h = torch.randn(2, 5, 16, requires_grad=True)
    >>> head = torch.nn.Linear(16, 100)
    >>> t = torch.randint(0, 100, (2, 5))
    >>> loss = xt.linear_cross_entropy(h, head.weight, t, head.bias, label_smoothing=0.1)
    >>> loss.backward()
    >>> ref = F.cross_entropy(head(h).flatten(0, 1), t.flatten(), label_smoothing=0.1)
    >>> torch.allclose(loss, ref)
    True
    """
    for t in (hidden, linear_weight):
        check_tensor(t, "hidden" if t is hidden else "linear_weight")
    if transforms_active():
        raise NotImplementedError(
            "xent.torch.linear_cross_entropy does not support torch.func transforms (grad, "
            "vjp, jacrev, vmap...); compose F.linear with xent.torch.cross_entropy instead")
    opts = _checked_options(reduction, ignore_index, label_smoothing, z_loss, softcap)
    nt = _resolve(num_threads)
    a = _inputs(hidden, linear_weight, target, linear_bias, weight, opts, sample_weight)
    return _LinearCE.apply(hidden, linear_weight, linear_bias, a, opts, chunk_size, nt)


class LinearCrossEntropyLoss(torch.nn.Module):
    r"""Module form of :func:`linear_cross_entropy`: a language model head's loss.

    ``forward(hidden, linear_weight, target, linear_bias=None)`` takes the
    head's parameters (e.g. ``lm_head.weight``), so the head's logits are never
    materialised.

    Parameters
    ----------
    weight : Tensor of shape (V,), optional
        Per-class weights (a buffer, as ``torch.nn.CrossEntropyLoss``'s).
    ignore_index, reduction, label_smoothing
        As ``torch.nn.CrossEntropyLoss``.
    z_loss, softcap, chunk_size, num_threads : optional
        Keyword-only; see :func:`linear_cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> head = torch.nn.Linear(8, 50, bias=False)
    >>> crit = xt.LinearCrossEntropyLoss(ignore_index=0)
    >>> h, t = torch.randn(4, 8), torch.tensor([0, 3, 7, 49])
    >>> ref = torch.nn.CrossEntropyLoss(ignore_index=0)(head(h), t)
    >>> torch.allclose(crit(h, head.weight, t), ref)
    True
    """

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0, *,
                 z_loss: float = 0.0, softcap: float | None = None,
                 chunk_size: int | None = None, num_threads: int | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_size = chunk_size
        self.num_threads = num_threads

    def forward(self, hidden: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor,
                linear_bias: torch.Tensor | None = None,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        return linear_cross_entropy(
            hidden, linear_weight, target, linear_bias, weight=self.weight,
            ignore_index=self.ignore_index, reduction=self.reduction,
            label_smoothing=self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap,
            sample_weight=sample_weight, chunk_size=self.chunk_size,
            num_threads=self.num_threads)


linear_cross_entropy.__doc__ = linear_cross_entropy.__doc__.replace(
    "    {chunk}", "\n".join("    " + ln if ln else ln for ln in _CHUNK.splitlines()))
