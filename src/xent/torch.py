"""PyTorch adapter: xent's fused losses as differentiable functions and modules.

Optional: requires PyTorch (``pip install "xent[torch]"``). ``import xent`` never
imports torch; ``import xent.torch`` does.

Every loss here runs xent's CPU kernels on the tensors' memory and plugs into
autograd through a ``torch.autograd.Function``:

* when the logits require a gradient (and grad mode is on), the forward pass
  computes the loss *and* its gradient in one fused pass (``xent.*_and_grad``)
  and saves only the gradient; backward then scales it by ``grad_output`` in
  place (no second array of the logits' size; returned as is when
  ``grad_output == 1``);
* otherwise only the loss is computed (no gradient work, no extra memory).

Layouts are PyTorch's: :func:`cross_entropy` and :func:`focal_loss` take
``(N, C)``, ``(N, C, d1, ...)`` (classes on dim 1) or ``(C,)`` logits, the
binary losses any shape (elementwise), and :func:`kl_div_with_logits` keeps
xent's ``(..., C)`` layout. Contiguous float32/float64 ``(N, C)`` and ``(C,)``
logits are used without a copy; other layouts and dtypes are copied once into
a contiguous buffer in which the gradient is then written (float16 and
bfloat16 are computed in float32; the gradient is returned in the input's
dtype, scaled by ``grad_output`` before the final rounding).

Only CPU tensors are supported; tensors on any other device raise ValueError.

Gradients flow to the logits only. Targets, weights, ``alpha``, ``pos_weight``
and the teacher's logits are constants: if one of them requires a gradient
while grad mode is on, a ValueError asks for ``.detach()`` (PyTorch itself
would differentiate some of them, so silently treating them as constants
would give wrong gradients).

In-place backward (``inplace_backward=True``)
---------------------------------------------
Opt-in memory saving for the largest tensor of a language model: the gradient
is written into the logits' own storage instead of a new buffer.
Guarantees:

* it applies only when a gradient is computed and the logits need neither a
  dtype nor a layout change: contiguous float32/float64 ``(N, C)`` or ``(C,)``
  for :func:`cross_entropy` / :func:`focal_loss`, any contiguous
  float32/float64 shape for the elementwise losses and
  :func:`kl_div_with_logits`; in every other case the adapter's private copy
  is reused and the logits are left untouched;
* after the call, **the logits' values are destroyed** (they hold the
  gradient for ``grad_output = 1``, scaled in place by backward); read them
  before calling the loss. If the call raises (e.g. a target out of range),
  the logits are untouched;
* a leaf tensor that requires grad (a parameter), or a view of one, is never
  overwritten: ValueError;
* logits saved by their own producer for its backward (e.g. the output of
  ``tanh``, ``sigmoid``, ``exp``, ``softmax``) are refused with ValueError;
* the logits' version counter is bumped, so any *other* autograd node that
  saved the logits (or a view of them) for its backward raises PyTorch's
  usual "modified by an inplace operation" RuntimeError at backward instead
  of computing a wrong gradient; so does modifying the logits in place between
  the forward and the backward of the loss.

What cannot be detected: other code (including another loss) *reading* the
logits' values after the call, and memory shared outside autograd (e.g. a
NumPy array from ``tensor.numpy()``).
"""

from __future__ import annotations

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'xent.torch requires PyTorch; install it with pip install "xent[torch]" '
        "(or a CPU build of torch >= 2.1)"
    ) from exc
from torch.autograd.function import once_differentiable

import xent

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "focal_loss",
    "kl_div_with_logits",
    "sigmoid_focal_loss",
]

_NATIVE = (torch.float32, torch.float64)


# --------------------------------------------------------------------------- helpers


def _check_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(
            f"xent.torch runs on CPU tensors only; {name} is on device '{t.device}'. "
            f"Move it with .cpu() or use PyTorch's own loss on that device."
        )
    if t.layout != torch.strided:
        raise ValueError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    return t


def _check_const(t, name: str) -> None:
    """Arguments other than the logits are constants for autograd."""
    if isinstance(t, torch.Tensor) and t.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            f"{name} requires grad, but xent.torch differentiates only with respect to the "
            f"logits (it would be treated as a constant); pass {name}.detach()"
        )


def _to_numpy(t, name: str):
    """A NumPy view of a constant argument (tensor or array-like), or None."""
    if t is None or not isinstance(t, torch.Tensor):
        return t
    _check_tensor(t, name)
    _check_const(t, name)
    t = t.detach()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16
        t = t.to(torch.float32)
    return t.resolve_conj().resolve_neg().numpy()


class _Logits:
    """The logits in xent's layout: classes last, C-contiguous, float32/float64.

    ``buf`` is what the kernel reads (and writes the gradient into when
    ``owned`` or in place). ``to_torch(g)`` maps a gradient of ``buf``'s shape
    back to the input's layout and ``lead_to_torch(a)`` does the same for a
    per-row array (reduction ``"none"``).
    """

    def __init__(self, logits: torch.Tensor, name: str, classes_dim1: bool):
        _check_tensor(logits, name)
        dt = logits.dtype
        if not dt.is_floating_point:
            raise TypeError(
                f"{name} must be a real floating-point tensor (float16/bfloat16/float32/"
                f"float64), got dtype {dt}"
            )
        self.dtype = dt
        x = logits.detach()  # shares storage and version counter
        self.squeeze = False
        self.moved = False
        if classes_dim1:
            if x.dim() == 0:
                raise ValueError(
                    f"{name} must have a class dimension: shape (C,), (N, C) or "
                    f"(N, C, d1, ...); got a 0-d tensor"
                )
            if x.dim() == 1:
                x = x.unsqueeze(0)
                self.squeeze = True
            elif x.dim() > 2:
                x = x.movedim(1, -1)
                self.moved = True
        if dt in _NATIVE and x.is_contiguous():
            self.buf, self.owned = x, False
        else:
            cdt = dt if dt in _NATIVE else torch.float32
            self.buf = torch.empty(x.shape, dtype=cdt)
            self.buf.copy_(x)
            self.owned = True

    def target(self, t: torch.Tensor, name: str = "target", *, soft_ok: bool):
        """Targets in xent's layout as a NumPy array (a view when possible)."""
        _check_tensor(t, name)
        _check_const(t, name)
        t = t.detach()
        if t.dtype.is_floating_point and soft_ok:
            if self.squeeze:
                t = t.unsqueeze(0)
            elif self.moved and t.dim() > 2:
                t = t.movedim(1, -1)
        elif self.squeeze:
            t = t.reshape(1) if t.dim() == 0 else t.unsqueeze(0)
        return _to_numpy(t, name)

    def to_torch(self, g: torch.Tensor) -> torch.Tensor:
        if self.squeeze:
            return g.squeeze(0)
        if self.moved:
            return g.movedim(-1, 1)
        return g

    def lead_to_torch(self, a: torch.Tensor) -> torch.Tensor:
        return a.squeeze(0) if self.squeeze else a


def _loss_tensor(loss, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(loss))
    return t if t.dtype == dtype else t.to(dtype)


def _check_inplace(logits: torch.Tensor, name: str) -> None:
    if logits.is_leaf and logits.requires_grad:
        raise ValueError(
            f"inplace_backward=True would overwrite {name}, a leaf tensor that requires grad "
            f"(e.g. a parameter); use the default inplace_backward=False"
        )
    base = logits._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise ValueError(
            f"inplace_backward=True would overwrite {name}, a view of a leaf tensor that "
            f"requires grad; use the default inplace_backward=False"
        )
    fn = logits.grad_fn
    saved = getattr(fn, "_saved_result", None) if fn is not None else None
    if isinstance(saved, torch.Tensor):
        raise ValueError(
            f"inplace_backward=True would overwrite {name}, which its producer "
            f"({type(fn).__name__}) saved for its own backward; use the default "
            f"inplace_backward=False"
        )


class _Call:
    """One loss evaluation: the xent function, its arguments and the layout."""

    def __init__(self, fname, lg: _Logits, args, kwargs, reduction, inplace):
        self.fname = fname
        self.lg = lg
        self.args = args
        self.kwargs = kwargs
        self.reduction = reduction
        self.inplace = inplace

    def loss_only(self) -> torch.Tensor:
        loss = getattr(xent, self.fname)(self.lg.buf.numpy(), *self.args, **self.kwargs)
        return self.lg.lead_to_torch(_loss_tensor(loss, self.lg.dtype))

    def loss_and_grad(self):
        """Return (loss, grad in the input's layout, wrote_into_logits)."""
        lg = self.lg
        in_place = lg.owned or self.inplace
        g = lg.buf if in_place else torch.empty_like(lg.buf)
        loss, _ = getattr(xent, self.fname + "_and_grad")(
            lg.buf.numpy(), *self.args, **self.kwargs, out=g.numpy()
        )
        wrote = in_place and not lg.owned
        return lg.lead_to_torch(_loss_tensor(loss, lg.dtype)), lg.to_torch(g), wrote


class _FusedLoss(torch.autograd.Function):
    """Base: forward runs the fused kernel, backward scales the saved gradient."""

    @staticmethod
    def forward(ctx, logits, call: _Call):
        loss, grad, wrote = call.loss_and_grad()
        if wrote:
            # The logits' storage now holds the gradient: make every autograd node
            # that saved them (and our own saved tensor, if modified later) fail loudly.
            _bump_version(logits)
        ctx.out_dtype = call.lg.dtype
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (g,) = ctx.saved_tensors
        g = g.detach()  # shares the version counter with the saved tensor
        # Scale in place (no second array of the logits' size) unless the graph is
        # kept for another backward (retain_graph=True), which needs g unchanged.
        reuse = _keep_graph()
        if grad_output.dim() == 0:
            s = float(grad_output.detach())
            if s != 1.0:
                g = g * s if reuse else g.mul_(s)
        else:
            # reduction "none": per-row (per-element) factors, broadcast along the class dim
            go = grad_output
            if ctx.layout == "dim1":
                go = go.unsqueeze(1)
            elif ctx.layout == "last":
                go = go.unsqueeze(-1)
            g = g * go if reuse else g.mul_(go)
        if g.dtype != ctx.out_dtype:
            g = g.to(ctx.out_dtype)  # float16/bfloat16: rounded once, after scaling
        return g, None


def _bump_version(t: torch.Tensor) -> None:
    """Mark `t` (and every view of its storage) as modified in place."""
    bump = getattr(torch.autograd.graph, "increment_version", None)
    if bump is not None:
        bump(t)
    else:  # older PyTorch: an in-place op on an empty view bumps the shared counter
        t.detach().reshape(-1)[:0].zero_()


def _keep_graph() -> bool:
    """True if the running backward keeps the graph (retain_graph=True).

    PyTorch versions without this query (before 2.4 or so) are treated as
    keeping it: the gradient is then scaled out of place (correct, one more
    allocation).
    """
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if query is None else bool(query())


def _make_fn(name: str, layout: str):
    """One autograd.Function subclass per loss (its name shows in ``grad_fn``)."""

    def forward(ctx, logits, call):
        ctx.layout = layout
        return _FusedLoss.forward(ctx, logits, call)

    cls = type(name, (_FusedLoss,), {"forward": staticmethod(forward)})
    cls.__module__ = __name__
    return cls


_CrossEntropyFunction = _make_fn("_CrossEntropyFunction", "dim1")
_FocalLossFunction = _make_fn("_FocalLossFunction", "dim1")
_BCEWithLogitsFunction = _make_fn("_BCEWithLogitsFunction", "elementwise")
_SigmoidFocalFunction = _make_fn("_SigmoidFocalFunction", "elementwise")
_KLDivFunction = _make_fn("_KLDivFunction", "last")


def _apply(fn, logits: torch.Tensor, call: _Call) -> torch.Tensor:
    if torch.is_grad_enabled() and logits.requires_grad:
        if call.inplace and not call.lg.owned:
            _check_inplace(logits, "logits")
        return fn.apply(logits, call)
    return call.loss_only()  # no gradient work at all


# --------------------------------------------------------------------------- functions


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.cross_entropy`` on CPU tensors.

    Same arguments, layouts, values and gradients as PyTorch's, computed by
    xent's fused kernel (loss and gradient from one pass over the logits).

    Parameters
    ----------
    input : Tensor of shape (N, C), (N, C, d1, ...) or (C,)
        Logits, classes on dim 1 (dim 0 for a 1-D input). float16/bfloat16 are
        computed in float32.
    target : Tensor
        Class indices of shape (N,), (N, d1, ...) or () (any integer dtype), or
        class probabilities of the input's shape (floating).
    weight : Tensor of shape (C,), optional
        Per-class rescaling weights.
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch (mapped to `reduction` with PyTorch's warning).
    ignore_index : int, optional
        Target value that contributes nothing (class targets only).
    reduction : {"mean", "sum", "none"}, optional
        As in PyTorch (``"mean"`` divides by the summed weights of the
        non-ignored targets).
    label_smoothing : float in [0, 1], optional
        As in PyTorch.
    z_loss : float >= 0, optional
        xent extension (keyword-only): adds ``z_loss * w_i * lse_i**2`` per
        non-ignored sample, as ``xent.cross_entropy``.
    softcap : float > 0, optional
        xent extension (keyword-only): logits ``x`` are replaced by
        ``softcap * tanh(x / softcap)`` before the softmax (gradient with
        respect to the raw logits), as ``xent.cross_entropy``.
    inplace_backward : bool, optional
        Write the gradient into the logits' storage (destroys their values);
        see the module docstring for exactly what is guaranteed.
    num_threads : int, optional
        OpenMP threads for xent; ``None`` uses ``xent.get_num_threads()``.

    Returns
    -------
    Tensor
        0-d for ``"mean"``/``"sum"``, the target's shape for ``"none"``; the
        input's dtype.

    Raises
    ------
    ValueError
        Tensors not on the CPU, bad shapes or options, ``inplace_backward`` on
        a parameter, a target or weight that requires grad.
    TypeError
        Non-floating input, bool targets.
    IndexError
        A class target out of range.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> logits = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]], requires_grad=True)
    >>> target = torch.tensor([0, 1])
    >>> loss = xt.cross_entropy(logits, target)
    >>> torch.allclose(loss, torch.nn.functional.cross_entropy(logits, target))
    True
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([2, 3])
    """
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    lg = _Logits(input, "input", classes_dim1=True)
    t = lg.target(target, soft_ok=True)
    kwargs = dict(weight=_to_numpy(weight, "weight"), ignore_index=ignore_index,
                  reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                  softcap=softcap, num_threads=num_threads)
    call = _Call("cross_entropy", lg, (t,), kwargs, reduction, inplace_backward)
    return _apply(_CrossEntropyFunction, input, call)


def focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha=None,
    ignore_index: int = -100,
    reduction: str = "mean",
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Multi-class softmax focal loss (``xent.focal_loss``) on PyTorch's layouts.

    Per sample ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` with
    ``p_t = softmax(input, dim=1)[target]``; ``gamma=0, alpha=None`` equals
    :func:`cross_entropy`.

    Parameters
    ----------
    input : Tensor of shape (N, C), (N, C, d1, ...) or (C,)
        Logits, classes on dim 1.
    target : Tensor of int
        Class indices of shape (N,), (N, d1, ...) or ().
    gamma : float >= 0, optional
        Focusing parameter.
    alpha : float or Tensor of shape (C,), optional
        Class balance factor (indexed by the target); None means 1.
    ignore_index : int, optional
        Target value that contributes nothing.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the number of non-ignored targets.
    inplace_backward : bool, optional
        See :func:`cross_entropy`.
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        0-d, or the target's shape for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> logits = torch.randn(4, 5, requires_grad=True)
    >>> target = torch.tensor([0, 1, 2, 3])
    >>> loss = xt.focal_loss(logits, target, gamma=0.0)
    >>> ref = torch.nn.functional.cross_entropy(logits, target)
    >>> bool(torch.allclose(loss, ref, atol=1e-6))
    True
    """
    lg = _Logits(input, "input", classes_dim1=True)
    t = lg.target(target, soft_ok=False)
    kwargs = dict(gamma=gamma, alpha=_to_numpy(alpha, "alpha"), ignore_index=ignore_index,
                  reduction=reduction, num_threads=num_threads)
    call = _Call("focal_loss", lg, (t,), kwargs, reduction, inplace_backward)
    return _apply(_FocalLossFunction, input, call)


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
    *,
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.binary_cross_entropy_with_logits`` on CPU.

    Elementwise over any shape (no layout change).

    Parameters
    ----------
    input : Tensor
        Logits of any shape.
    target : Tensor
        Floating targets of the input's shape (constant).
    weight : Tensor, optional
        Broadcast against the input.
    size_average, reduce : bool, optional
        Deprecated, as in PyTorch.
    reduction : {"mean", "sum", "none"}, optional
        As in PyTorch.
    pos_weight : Tensor, optional
        Weight of positive examples, broadcast along the last dimension.
    inplace_backward : bool, optional
        See :func:`cross_entropy`.
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        0-d, or the input's shape for ``"none"``.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.randn(3, 4, requires_grad=True)
    >>> y = torch.rand(3, 4)
    >>> ref = torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    >>> bool(torch.allclose(xt.binary_cross_entropy_with_logits(x, y), ref))
    True
    """
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    lg = _Logits(input, "input", classes_dim1=False)
    kwargs = dict(weight=_to_numpy(weight, "weight"), pos_weight=_to_numpy(pos_weight,
                  "pos_weight"), reduction=reduction, num_threads=num_threads)
    t = lg.target(target, soft_ok=True)
    call = _Call("binary_cross_entropy_with_logits", lg, (t,), kwargs, reduction,
                 inplace_backward)
    return _apply(_BCEWithLogitsFunction, input, call)


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    *,
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Drop-in for ``torchvision.ops.sigmoid_focal_loss`` on CPU tensors.

    Parameters
    ----------
    inputs : Tensor
        Logits of any shape.
    targets : Tensor
        Binary (floating) targets of the same shape (constant).
    alpha : float, optional
        Weight of the positive class in ``[0, 1]``; ``alpha < 0`` disables it.
    gamma : float >= 0, optional
        Focusing parameter.
    reduction : {"none", "mean", "sum"}, optional
        Default ``"none"`` as in torchvision.
    inplace_backward : bool, optional
        See :func:`cross_entropy`.
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        The input's shape for ``"none"``, else 0-d.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.randn(3, 4, requires_grad=True)
    >>> y = (torch.rand(3, 4) > 0.5).float()
    >>> xt.sigmoid_focal_loss(x, y).shape
    torch.Size([3, 4])
    """
    lg = _Logits(inputs, "inputs", classes_dim1=False)
    t = lg.target(targets, "targets", soft_ok=True)
    kwargs = dict(alpha=alpha, gamma=gamma, reduction=reduction, num_threads=num_threads)
    call = _Call("sigmoid_focal_loss", lg, (t,), kwargs, reduction, inplace_backward)
    return _apply(_SigmoidFocalFunction, inputs, call)


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

    Equals ``F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1),
    reduction=r) * T**2`` (``"batchmean"`` divides by the product of the
    leading dims; ``"none"`` gives one value per row). Unlike the other
    functions here it keeps xent's layout: PyTorch has no module for it.

    Parameters
    ----------
    student_logits : Tensor of shape (..., C)
        Differentiated.
    teacher_logits : Tensor of the same shape
        A constant: a teacher that requires grad (with grad mode on) raises
        ValueError rather than silently receiving no gradient; pass
        ``teacher_logits.detach()``.
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
    >>> import xent
    >>> import xent.torch as xt
    >>> s = torch.randn(2, 5, requires_grad=True)
    >>> t = torch.randn(2, 5)
    >>> loss = xt.kl_div_with_logits(s, t, temperature=2.0)
    >>> loss.backward()
    >>> bool(loss.detach() >= 0), tuple(s.grad.shape)
    (True, (2, 5))
    """
    lg = _Logits(student_logits, "student_logits", classes_dim1=False)
    tt = _check_tensor(teacher_logits, "teacher_logits")
    _check_const(tt, "teacher_logits")
    kwargs = dict(temperature=temperature, reduction=reduction, num_threads=num_threads)
    call = _Call("kl_div_with_logits", lg, (_to_numpy(tt, "teacher_logits"),), kwargs,
                 reduction, inplace_backward)
    return _apply(_KLDivFunction, student_logits, call)


# --------------------------------------------------------------------------- modules


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
        them); see the module docstring.
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

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0, *,
                 z_loss: float = 0.0, softcap: float | None = None,
                 inplace_backward: bool = False, num_threads: int | None = None) -> None:
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
        Keyword-only; see the module docstring.
    num_threads : int, optional
        Keyword-only. OpenMP threads for xent.

    Examples
    --------
    >>> import torch
    >>> import xent
    >>> import xent.torch as xt
    >>> crit = xt.FocalLoss(gamma=2.0)
    >>> crit
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
