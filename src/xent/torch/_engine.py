"""How a fused xent loss plugs into PyTorch: autograd, forward AD, torch.func, torch.compile.

Design
------
A *kind* (:class:`Kind`) describes one fused loss: the xent kernel that returns the
loss and its gradient ``G = d loss / d input`` (for ``grad_output = 1``) from one
pass over the input, how ``grad_output`` broadcasts against ``G``, and its
second-order terms (a Hessian-vector product).  Every kind gets

* an ``autograd.Function`` (eager mode): ``forward`` returns ``(loss, G)``.  ``G``
  is a differentiable output, so a backward with ``create_graph=True`` that
  returns ``grad_output * G`` routes the second derivative back into this node
  (``backward`` then receives a cotangent for ``G`` and answers with the
  Hessian-vector product).  ``jvp`` gives forward-mode AD (``sum(G * tangent)``
  for the loss, the Hessian-vector product for ``G``), and ``vmap`` runs the
  kernel once per batch entry;
* two ``torch.library`` custom ops, ``xent::<name>`` (loss only) and
  ``xent::<name>_and_grad`` (fused, with ``register_autograd``), used while
  ``torch.compile`` / ``torch.export`` trace the call (Dynamo cannot trace an
  ``autograd.Function`` that defines ``jvp``; the ops are opaque to it, with
  fake implementations for shapes);
* an in-place variant (``inplace_backward=True``) that writes ``G`` into the
  input's own storage.

Memory: the graph keeps ``G`` (one array of the input's size) and, only for the
kinds whose second derivatives need it (softcap, focal, binary and distillation
losses) or when a target is differentiated, a reference to the input itself.
The first-order backward scales ``G`` in place and hands it to autograd when the
graph is not kept; with ``retain_graph=True`` or ``create_graph=True`` it never
hands out the saved buffer.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import torch

import xent

from ._common import (
    NATIVE,
    as_compute,
    compute_dtype,
    has_storage,
    has_tangent,
    is_compiling,
    loss_tensor,
    needs_autograd,
)
from ._half import half_numpy

_OPTION_TYPES = {"int": "int", "float": "float", "str": "str", "bool": "bool",
                 "int | None": "int?", "float | None": "float?"}

#: Whether a torch.func transform is active (what autograd.Function.apply itself checks;
#: no public API). Without it: whenever a floating input is a transform's wrapper.
_FUNCTORCH_QUERY = getattr(torch._C, "_are_functorch_transforms_active", None)

#: PyTorch's query whether the running backward keeps the graph (retain_graph=True);
#: no public API exists. Without it the gradient is always scaled out of place.
_KEEP_GRAPH_QUERY = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


class Saved(NamedTuple):
    """What a backward / jvp sees: the saved gradient, input and constants."""

    g: torch.Tensor  # d loss / d input for grad_output = 1 (compute dtype)
    x: torch.Tensor | None  # the input, when the kind keeps it
    target: torch.Tensor
    w1: torch.Tensor | None
    w2: torch.Tensor | None
    opts: Any


class Kind:
    """One fused loss.  Subclasses set the class attributes and implement the kernel.

    Attributes
    ----------
    name : str
        The xent function (``xent.<name>`` and ``xent.<name>_and_grad``) and the
        custom ops ``xent::<name>`` / ``xent::<name>_and_grad``.
    rows : bool
        True if the loss is per row over a last class axis (``grad_output`` of
        reduction ``"none"`` broadcasts over that axis), False if elementwise.
    weights : tuple of str
        Names of the (at most two) optional constant tensors.
    options : type
        NamedTuple of the scalar options (each has a ``reduction`` field).
    target_differentiable : bool
        True if a floating target may require grad (its gradient is implemented).
    """

    name: str
    rows: bool
    weights: tuple = ()
    options: type
    target_differentiable = False
    half_native = False  # reads float16/bfloat16 logits zero-copy (half_kernel)
    function: type  # the autograd.Functions, set by register()
    func_function: type
    inplace_function: type

    # ----------------------------------------------------------------- kernel
    def numpy_args(self, target, w1, w2, opts) -> tuple[tuple, dict]:
        """Positional and keyword arguments of ``xent.<name>`` after the input."""
        raise NotImplementedError

    def raise_value_error(self, exc, x, target, opts) -> None:
        """Raise PyTorch's error for a bad value the kernel found (default: none)."""

    def kernel(self, x, target, w1, w2, opts, *, grad: bool = False, in_place: bool = False):
        """``(loss, gradient or None)`` of a contiguous float32/float64 input.

        With `in_place` the gradient overwrites `x` (``out=`` the input's own array);
        otherwise xent allocates it: with default options on a canonical call that
        is the NumPy API's lean path, which a separate ``out=`` array would skip.
        """
        args, kwargs = self.numpy_args(target, w1, w2, opts)
        xn = (x.detach() if x.requires_grad else x).numpy()
        try:
            if not grad:
                return loss_tensor(getattr(xent, self.name)(xn, *args, **kwargs), x.dtype), None
            fn = getattr(xent, self.name + "_and_grad")
            loss, g = fn(xn, *args, **kwargs, out=xn) if in_place else fn(xn, *args, **kwargs)
        except (IndexError, ValueError) as exc:
            self.raise_value_error(exc, x, target, opts)
            raise
        return loss_tensor(loss, x.dtype), (x if in_place else torch.from_numpy(g))

    def half_kernel(self, xh, dtype, target, w1, w2, opts, *, grad: bool):
        """As :meth:`kernel` on the NumPy view `xh` of a float16/bfloat16 tensor of
        `dtype` (kinds with ``half_native``): the loss in `dtype`, G in float32."""
        raise NotImplementedError

    # ---------------------------------------------------------- second order
    def keeps_input(self, opts) -> bool:
        """True if the second derivatives need the input (not only G)."""
        return True

    def hvp(self, sv: Saved, u: torch.Tensor):
        """``(H u, M u)``: the Hessian-vector product for the input and the mixed
        term for a differentiable target (None if zero), both for grad_output = 1."""
        raise NotImplementedError

    def target_grad(self, sv: Saved) -> torch.Tensor:
        """d loss / d target for grad_output = 1 (kinds with a differentiable target)."""
        raise NotImplementedError

    def target_jvp(self, sv: Saved, t_dot: torch.Tensor) -> torch.Tensor:
        """The tangent of G along a target tangent `t_dot`."""
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def expand(self, go: torch.Tensor) -> torch.Tensor:
        """`go` (the loss's shape) broadcast against G."""
        return go.unsqueeze(-1) if (self.rows and go.dim() > 0) else go

    def reduce(self, opts, t: torch.Tensor) -> torch.Tensor:
        """The loss's tangent from its elementwise terms ``G * input_tangent``."""
        if opts.reduction == "none":
            return t.sum(-1) if self.rows else t
        return t.sum()

    def loss_shape(self, x: torch.Tensor, opts) -> tuple:
        if opts.reduction != "none":
            return ()
        return tuple(x.shape[:-1]) if self.rows else tuple(x.shape)


# ------------------------------------------------------------------ running the kernel


def fused_call(kind: Kind, x, target, w1, w2, opts):
    """``(loss, G)`` with G in a new buffer (the private copy of `x`, if one is made)."""
    xh = half_numpy(x) if kind.half_native else None
    if xh is not None:
        return kind.half_kernel(xh, x.dtype, target, w1, w2, opts, grad=True)
    xc, copied = as_compute(x)
    return kind.kernel(xc, target, w1, w2, opts, grad=True, in_place=copied)


def loss_call(kind: Kind, x, target, w1, w2, opts) -> torch.Tensor:
    xh = half_numpy(x) if kind.half_native else None
    if xh is not None:
        return kind.half_kernel(xh, x.dtype, target, w1, w2, opts, grad=False)[0]
    xc, _ = as_compute(x)
    return kind.kernel(xc, target, w1, w2, opts)[0]


def _target_active(kind: Kind, target) -> bool:
    """True if the target is differentiated (requires grad, a tangent, or a func wrapper).

    Independent of grad mode: setup_context runs with grad mode off.
    """
    return (kind.target_differentiable and target.dtype.is_floating_point
            and (target.requires_grad or has_tangent(target) or not has_storage(target)))


def _keeps_x(kind: Kind, opts, target) -> bool:
    return kind.keeps_input(opts) or _target_active(kind, target)


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b


def functorch_active(*tensors) -> bool:
    if _FUNCTORCH_QUERY is not None:
        return bool(_FUNCTORCH_QUERY())
    return any(t is not None and not has_storage(t) for t in tensors)  # pragma: no cover


def _keep_graph() -> bool:
    return True if _KEEP_GRAPH_QUERY is None else bool(_KEEP_GRAPH_QUERY())


def _scaled(kind: Kind, g: torch.Tensor, go: torch.Tensor, may_reuse: bool) -> torch.Tensor:
    """``go * G``; in place in G when nothing else can see G afterwards."""
    if not (may_reuse and not torch.is_grad_enabled() and not functorch_active(go)
            and not _keep_graph()):
        return g * kind.expand(go)  # create_graph, retain_graph or torch.func: G intact
    if go.dim() == 0:
        s = go.item()
        return g if s == 1.0 else g.mul_(s)
    return g.mul_(kind.expand(go))


def backward_core(ctx, gloss, gg, *, eager: bool):
    """Gradients for (input, target) from the loss's and G's cotangents."""
    need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    sv = _saved(ctx, check=gg is not None or need_t)
    kind = ctx.kind
    dx = dt = None
    if gg is not None:
        hx, ht = kind.hvp(sv, gg)
        dx, dt = (hx if need_x else None), (ht if need_t else None)
    if gloss is not None:
        if need_t:
            dt = _add(dt, kind.target_grad(sv) * kind.expand(gloss))
        if need_x:
            dx = _add(dx, _scaled(kind, sv.g, gloss, eager and gg is None))
    if dx is not None and dx.dtype != ctx.x_dtype:
        dx = dx.to(ctx.x_dtype)  # half input: rounded once, after scaling
    return dx, dt


def jvp_core(ctx, x_t, target_t, w_t: bool):
    """Tangents of (loss, G) along the input's and the target's tangents."""
    if w_t:
        raise RuntimeError(f"xent.torch.{ctx.kind.name}: weights are constants "
                           f"(forward-mode AD with respect to them is not implemented)")
    sv = _saved(ctx, check=True)
    kind, g, loss_t, g_t = ctx.kind, sv.g, None, None
    if x_t is not None:
        u = x_t.to(g.dtype)
        loss_t, g_t = kind.reduce(ctx.opts, g * u), kind.hvp(sv, u)[0]
    if target_t is not None and kind.target_differentiable:
        loss_t = _add(loss_t, kind.reduce(ctx.opts, kind.target_grad(sv) * target_t))
        g_t = _add(g_t, kind.target_jvp(sv, target_t))
    if g_t is None:  # a linear loss (nll_loss); PyTorch wants a tensor here
        g_t = torch.zeros_like(g)
    return loss_t, g_t


def _store(ctx, kind: Kind, opts, x, target, w1, w2, g, keep_x: bool, *,
           consts_on_ctx: bool) -> tuple:
    """Save what backward and jvp need: G, the input if kept, the constants.

    Returns the saved tensors (for ``save_for_forward``).
    """
    ctx.kind, ctx.opts, ctx.x_dtype = kind, opts, x.dtype
    xk = x if keep_x else None
    if consts_on_ctx:
        # Eager: the (small) constants stay on ctx, so a backward unpacks fewer saved
        # tensors; their versions are checked when second-order terms read them.
        ctx.consts = (target, w1, w2)
        ctx.versions = tuple(None if t is None else t._version for t in ctx.consts)
        saved = (g, xk)
    else:
        ctx.consts = None
        saved = (g, xk, target, w1, w2)
    ctx.save_for_backward(*saved)
    return saved


def _saved(ctx, check: bool) -> Saved:
    saved = ctx.saved_tensors
    if ctx.consts is None:
        return Saved(*saved, ctx.opts)
    if check:
        for t, v in zip(ctx.consts, ctx.versions):
            if t is not None and t._version != v:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: a target or weight of "
                    f"xent.torch.{ctx.kind.name} is at version {t._version}; expected "
                    f"version {v} instead.")
    return Saved(saved[0], saved[1], *ctx.consts, ctx.opts)


# ------------------------------------------------------------------ autograd.Function


class _Flags(NamedTuple):
    """Decided by the caller: tangents are invisible inside a Function's forward."""

    keep_x: bool  # keep a reference to the input (second derivatives, target gradients)
    forward_ad: bool  # a forward-mode tangent is attached: save for jvp


class _Call(NamedTuple):
    """The non-differentiable arguments of one eager call."""

    kind: Kind
    opts: Any
    flags: _Flags | None
    w1: torch.Tensor | None
    w2: torch.Tensor | None


class _Fused(torch.autograd.Function):
    """Eager mode: forward -> (loss, G); see the module docstring.

    Three arguments and the ctx-style forward: ``Function.apply``'s cost grows with the
    argument count, and the setup_context style adds an ``inspect.signature`` per call
    (measured ~100 us), too much for a per-token call.
    """

    @staticmethod
    def forward(ctx, x, target, call):
        loss, g = fused_call(call.kind, x, target, call.w1, call.w2, call.opts)
        ctx.set_materialize_grads(False)
        saved = _store(ctx, call.kind, call.opts, x, target, call.w1, call.w2, g,
                       call.flags.keep_x, consts_on_ctx=True)
        if call.flags.forward_ad:
            ctx.save_for_forward(*saved)
        return loss, g

    @staticmethod
    def backward(ctx, gloss, gg):
        return (*backward_core(ctx, gloss, gg, eager=True), None)

    @staticmethod
    def jvp(ctx, x_t, target_t, _call):
        return jvp_core(ctx, x_t, target_t, False)


class _FusedFunc(torch.autograd.Function):
    """Under torch.func transforms (which need setup_context and a vmap rule)."""

    @staticmethod
    def forward(x, target, w1, w2, kind, opts, flags):
        return fused_call(kind, x, target, w1, w2, opts)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, target, w1, w2, kind, opts, flags = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_forward(*_store(ctx, kind, opts, x, target, w1, w2, output[1],
                                     flags.keep_x, consts_on_ctx=False))

    @staticmethod
    def backward(ctx, gloss, gg):
        return (*backward_core(ctx, gloss, gg, eager=True),) + (None,) * 5

    @staticmethod
    def jvp(ctx, x_t, target_t, w1_t, w2_t, _kind, _opts, _flags):
        return jvp_core(ctx, x_t, target_t, w1_t is not None or w2_t is not None)

    @staticmethod
    def vmap(info, in_dims, x, target, w1, w2, kind, opts, flags):
        return vmap_loop(kind.func_function.apply, info, in_dims, (x, target, w1, w2),
                         (kind, opts, flags))


def vmap_loop(apply, info, in_dims, tensors, extra):
    """A vmap rule that calls `apply` once per batch entry and stacks the outputs."""
    if info.batch_size == 0:
        raise NotImplementedError("xent.torch: vmap over an empty batch is not supported")
    outs = []
    for i in range(info.batch_size):
        args = [t.select(d, i) if (d is not None and t is not None) else t
                for t, d in zip(tensors, in_dims)]
        out = apply(*args, *extra)
        outs.append(out if isinstance(out, tuple) else (out,))
    stacked = tuple(torch.stack(col) for col in zip(*outs))
    dims = (0,) * len(stacked)
    return (stacked, dims) if len(stacked) > 1 else (stacked[0], 0)


# ------------------------------------------------------------------ in-place variant


class _OwnWrites:
    """Version-counter bumps xent itself made on one storage (in-place gradients).

    Two in-place losses on views of one tensor (``logits[:n]``, ``logits[n:]``)
    share one version counter; each one's writes are legitimate for the other.
    """

    __slots__ = ("count", "__weakref__")

    def __init__(self) -> None:
        self.count = 0


_OWN_WRITES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _record_write(t: torch.Tensor, writes: _OwnWrites | None = None,
                  bump: bool = True) -> _OwnWrites:
    if writes is None:
        key = t.untyped_storage().data_ptr()
        writes = _OWN_WRITES.get(key)
        if writes is None:
            writes = _OWN_WRITES[key] = _OwnWrites()
    if bump:
        torch.autograd.graph.increment_version(t)
    writes.count += 1
    return writes


class _FusedInPlace(torch.autograd.Function):
    """forward writes G into the input's storage; backward scales it there."""

    @staticmethod
    def forward(ctx, x, target, call):
        kind, opts = call.kind, call.opts
        loss, g = kind.kernel(x, target, call.w1, call.w2, opts, grad=True, in_place=True)
        ctx.writes = _record_write(x)  # every node that saved x now fails loudly
        ctx.version, ctx.count = x._version, ctx.writes.count
        ctx.g, ctx.kind, ctx.opts, ctx.x_dtype = g.detach(), kind, opts, x.dtype
        return loss

    @staticmethod
    def backward(ctx, gloss):
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"xent.torch.{ctx.kind.name}: double backward (create_graph=True) is not "
                f"available with inplace_backward=True (the input's storage holds the "
                f"gradient); use inplace_backward=False")
        g = ctx.g
        if g._version != ctx.version + (ctx.writes.count - ctx.count):
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: the input of xent.torch.{ctx.kind.name}"
                f"(inplace_backward=True), which holds the gradient, is at version "
                f"{g._version}. Do not modify it between the loss and its backward.")
        before = g._version
        dx = _scaled(ctx.kind, g, gloss, may_reuse=True)
        if g._version != before:
            _record_write(g, ctx.writes, bump=False)
        return dx, None, None


def check_inplace(x: torch.Tensor, name: str) -> None:
    """Refuse in-place gradients into parameters or tensors their producer saved."""
    try:
        x.grad_fn  # noqa: B018 - raises for a multi-output view after a write to its base
    except RuntimeError as exc:
        raise RuntimeError(
            f"inplace_backward=True: {name} is an output of a multi-output view function "
            f"(split, chunk, unbind) whose storage an earlier in-place loss already wrote; "
            f"PyTorch forbids such views after an in-place write. Take the chunks as slices "
            f"instead (logits[i:j] or logits.narrow(0, i, n)).") from exc
    if x.is_leaf and x.requires_grad:
        raise ValueError(
            f"inplace_backward=True would overwrite {name}, a leaf tensor that requires grad "
            f"(e.g. a parameter); use the default inplace_backward=False")
    base = x._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise ValueError(
            f"inplace_backward=True would overwrite {name}, a view of a leaf tensor that "
            f"requires grad; use the default inplace_backward=False")
    fn = x.grad_fn
    saved = getattr(fn, "_saved_result", None) if fn is not None else None
    if isinstance(saved, torch.Tensor):
        raise ValueError(
            f"inplace_backward=True would overwrite {name}, which its producer "
            f"({type(fn).__name__}) saved for its own backward; use the default "
            f"inplace_backward=False")


def _inplace_applies(kind: Kind, x, target) -> bool:
    return (x.dtype in NATIVE and x.is_contiguous() and x.numel() > 0 and has_storage(x)
            and not _target_active(kind, target)
            and not has_tangent(x))


# ------------------------------------------------------------------ custom ops


def _annotation(a) -> str:
    """An option's annotation as written ('int', 'float | None', ...)."""
    return getattr(a, "__forward_arg__", a if isinstance(a, str) else getattr(a, "__name__", a))


def _op_schema(kind: Kind) -> str:
    ann = kind.options.__annotations__
    opts = ", ".join(f"{_OPTION_TYPES[_annotation(ann[f])]} {f}" for f in kind.options._fields)
    weights = "".join(f", Tensor? {w}" for w in kind.weights)
    return f"(Tensor input, Tensor target{weights}, {opts})"


def _op_split(kind: Kind, args):
    x, target = args[0], args[1]
    nw = len(kind.weights)
    ws = list(args[2:2 + nw]) + [None] * (2 - nw)
    return x, target, ws[0], ws[1], kind.options(*args[2 + nw:])


def _op_args(kind: Kind, x, target, w1, w2, opts) -> tuple:
    return (x, target, *(w1, w2)[:len(kind.weights)], *opts)


def _define_ops(kind: Kind) -> None:
    """``xent::<name>`` and ``xent::<name>_and_grad``: schema, kernel, fake, autograd."""
    schema = _op_schema(kind)
    loss_op, fused_op = f"xent::{kind.name}", f"xent::{kind.name}_and_grad"
    torch.library.define(loss_op, f"{schema} -> Tensor")
    torch.library.define(fused_op, f"{schema} -> (Tensor, Tensor)")
    torch.library.impl(loss_op, "cpu")(lambda *a: loss_call(kind, *_op_split(kind, a)))
    torch.library.impl(fused_op, "cpu")(lambda *a: fused_call(kind, *_op_split(kind, a)))

    def fake_loss(*args):
        x, *_, opts = _op_split(kind, args)
        return x.new_empty(kind.loss_shape(x, opts), dtype=compute_dtype(x.dtype))

    def fake_fused(*args):
        x = args[0]
        return fake_loss(*args), x.new_empty(x.shape, dtype=compute_dtype(x.dtype))

    torch.library.register_fake(loss_op, fake_loss)
    torch.library.register_fake(fused_op, fake_fused)
    _register_fused_autograd(kind, fused_op)
    _register_loss_autograd(kind, loss_op)
    kind.loss_op = getattr(torch.ops.xent, kind.name).default
    kind.fused_op = getattr(torch.ops.xent, kind.name + "_and_grad").default


def _no_grads(kind: Kind) -> tuple:
    """None for every op argument after (input, target)."""
    return (None,) * (len(kind.weights) + len(kind.options._fields))


def _register_fused_autograd(kind: Kind, qualname: str) -> None:
    def setup(ctx, inputs, output):
        x, target, w1, w2, opts = _op_split(kind, inputs)
        ctx.mark_non_differentiable(output[1])  # no double backward under torch.compile
        _store(ctx, kind, opts, x, target, w1, w2, output[1], _keeps_x(kind, opts, target),
               consts_on_ctx=False)

    def backward(ctx, gloss, _gg):
        return backward_core(ctx, gloss, None, eager=False) + _no_grads(kind)

    torch.library.register_autograd(qualname, backward, setup_context=setup)


def _register_loss_autograd(kind: Kind, qualname: str) -> None:
    """The loss-only op is differentiable too, for direct callers of ``torch.ops.xent``
    (the adapter calls the fused op when it needs a gradient): its backward runs the
    fused op again."""

    def setup(ctx, inputs, output):
        x, target, w1, w2, opts = _op_split(kind, inputs)
        ctx.opts = opts
        ctx.save_for_backward(x, target, w1, w2)

    def backward(ctx, gloss):
        x, target, w1, w2 = ctx.saved_tensors
        g = kind.fused_op(*_op_args(kind, x, target, w1, w2, ctx.opts))[1]
        go = kind.expand(gloss)
        dx = (g * go).to(x.dtype) if ctx.needs_input_grad[0] else None
        dt = None
        if ctx.needs_input_grad[1]:
            dt = kind.target_grad(Saved(g, x, target, w1, w2, ctx.opts)) * go
        return (dx, dt) + _no_grads(kind)

    torch.library.register_autograd(qualname, backward, setup_context=setup)


def register(kind: Kind, function_name: str) -> Kind:
    """Create the kind's autograd.Functions (named for ``grad_fn``) and custom ops."""
    kind.function = type(function_name, (_Fused,), {"__module__": __name__})
    kind.func_function = type(function_name + "Func", (_FusedFunc,), {"__module__": __name__})
    kind.inplace_function = type(function_name + "InPlace", (_FusedInPlace,),
                                 {"__module__": __name__})
    _define_ops(kind)
    return kind


# ------------------------------------------------------------------ dispatch


def run_loss(kind: Kind, x, target, w1=None, w2=None, *, opts, inplace: bool = False):
    """The loss of `x` (classes last for row kinds): the kernel, through autograd if needed."""
    diff_target = target if kind.target_differentiable else None
    if is_compiling():
        needed = torch.is_grad_enabled() and (
            x.requires_grad or (diff_target is not None and diff_target.requires_grad))
        args = _op_args(kind, x, target, w1, w2, opts)
        return kind.fused_op(*args)[0] if needed else kind.loss_op(*args)
    if not needs_autograd(x, diff_target):
        return loss_call(kind, x, target, w1, w2, opts)  # no gradient work at all
    if inplace and _inplace_applies(kind, x, target):
        check_inplace(x, "input")
        return kind.inplace_function.apply(x, target, _Call(kind, opts, None, w1, w2))
    tangent = has_tangent(x) or (target.dtype.is_floating_point and has_tangent(target))
    flags = _Flags(_keeps_x(kind, opts, target), tangent)
    if functorch_active(x, target):
        return kind.func_function.apply(x, target, w1, w2, kind, opts, flags)[0]
    return kind.function.apply(x, target, _Call(kind, opts, flags, w1, w2))[0]
