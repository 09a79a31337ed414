"""log_softmax, softmax and logsumexp with PyTorch's signatures, computed by xent.

Forward passes run xent's kernels.  First-order backward passes: log_softmax's
``v - softmax * sum(v)`` is xent's cross-entropy gradient with the output as
logits and ``v`` as (unnormalised) probability targets, ``grad_output = -1``;
logsumexp's ``v * softmax(x)`` uses xent's softmax kernel; softmax's
``y * (v - sum(y * v))`` needs the input's softmax Jacobian, which no xent
kernel computes from the output alone, so it is PyTorch's formula on the saved
output (as PyTorch computes it).  With ``create_graph=True`` (or under
torch.func) every backward is PyTorch's formula on the saved tensors, so
higher-order derivatives compose through this node.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

import xent
from xent._docs import fill_doc

from ._common import (
    PLAIN_DTYPES,
    as_compute,
    check_floating,
    check_tensor,
    compute_dtype,
    has_storage,
    has_tangent,
    is_compiling,
    needs_autograd,
    normalize_dim,
    plain_call,
)
from ._engine import functorch_active, vmap_loop

# --------------------------------------------------------------------------- kernels


def _rowwise(fn, x: torch.Tensor, dim: int, num_threads) -> torch.Tensor:
    """``xent.<fn>(x, axis=dim)`` into a new tensor of the compute dtype."""
    xc, _ = as_compute(x)
    out = torch.empty_like(xc)
    getattr(xent, fn)(xc.detach().numpy(), dim, out=out.numpy(), num_threads=num_threads)
    return out


def _lse_last(x: torch.Tensor, num_threads) -> torch.Tensor:
    xc, _ = as_compute(x)
    out = torch.empty(xc.shape[:-1], dtype=xc.dtype)
    xent.logsumexp(xc.detach().numpy(), -1, out=out.numpy(), num_threads=num_threads)
    return out


def _log_softmax_backward_kernel(y, v, dim: int, num_threads) -> torch.Tensor:
    """``v - exp(y) * v.sum(dim)`` by xent's cross-entropy gradient (classes last)."""
    y2 = y.detach().movedim(dim, -1).contiguous()
    v2 = v.detach().movedim(dim, -1).to(y2.dtype).resolve_neg().contiguous()
    out = torch.empty_like(y2)
    if y2.numel():
        xent.cross_entropy_grad(y2.numpy(), v2.numpy(), -1.0, reduction="none",
                                out=out.numpy(), num_threads=num_threads)
    return out.movedim(-1, dim)


def _fast_backward(grad: torch.Tensor) -> bool:
    """True if the backward may run a kernel (no graph to build, a plain tensor)."""
    return not torch.is_grad_enabled() and has_storage(grad)


# --------------------------------------------------------------------------- Functions


class _LogSoftmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(x, dim, num_threads):
        return _rowwise("log_softmax", x, dim, num_threads)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim, ctx.num_threads, ctx.x_dtype = inputs[1], inputs[2], inputs[0].dtype
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, gy, fast=None):
        (y,) = ctx.saved_tensors
        if _fast_backward(gy) if fast is None else fast:
            dx = _log_softmax_backward_kernel(y, gy, ctx.dim, ctx.num_threads)
        else:
            dx = gy - torch.exp(y) * gy.sum(ctx.dim, keepdim=True)
        return dx.to(ctx.x_dtype), None, None

    @staticmethod
    def jvp(ctx, x_t, _dim, _nt):
        (y,) = ctx.saved_tensors
        x_t = x_t.to(y.dtype)
        return x_t - (torch.exp(y) * x_t).sum(ctx.dim, keepdim=True)

    @staticmethod
    def vmap(info, in_dims, x, dim, num_threads):
        x = x.movedim(in_dims[0], 0)
        return vmap_loop(_LogSoftmaxFunction.apply, info, (0,), (x,), (dim, num_threads))


class _SoftmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(x, dim, num_threads):
        return _rowwise("softmax", x, dim, num_threads)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim, ctx.x_dtype = inputs[1], inputs[0].dtype
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, gy, fast=None):
        (y,) = ctx.saved_tensors
        dx = y * (gy - (y * gy).sum(ctx.dim, keepdim=True))
        return dx.to(ctx.x_dtype), None, None

    @staticmethod
    def jvp(ctx, x_t, _dim, _nt):
        (y,) = ctx.saved_tensors
        x_t = x_t.to(y.dtype)
        return y * (x_t - (y * x_t).sum(ctx.dim, keepdim=True))

    @staticmethod
    def vmap(info, in_dims, x, dim, num_threads):
        x = x.movedim(in_dims[0], 0)
        return vmap_loop(_SoftmaxFunction.apply, info, (0,), (x,), (dim, num_threads))


class _LogSumExpFunction(torch.autograd.Function):
    """logsumexp over the last dim of a (..., K) tensor."""

    @staticmethod
    def forward(x, num_threads):
        return _lse_last(x, num_threads)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.num_threads, ctx.x_dtype = inputs[1], inputs[0].dtype
        ctx.save_for_backward(inputs[0], output)
        ctx.save_for_forward(inputs[0], output)

    @staticmethod
    def backward(ctx, gl, fast=None):
        x, lse = ctx.saved_tensors
        if (_fast_backward(gl) if fast is None else fast) and x.shape[-1]:
            p = _rowwise("softmax", x, -1, ctx.num_threads)
            dx = p.mul_(gl.unsqueeze(-1))
        else:
            dx = gl.unsqueeze(-1) * torch.exp(x.to(lse.dtype) - lse.unsqueeze(-1))
        return dx.to(ctx.x_dtype), None

    @staticmethod
    def jvp(ctx, x_t, _nt):
        x, lse = ctx.saved_tensors
        return (torch.exp(x.to(lse.dtype) - lse.unsqueeze(-1)) * x_t.to(lse.dtype)).sum(-1)

    @staticmethod
    def vmap(info, in_dims, x, num_threads):
        x = x.movedim(in_dims[0], 0)
        return vmap_loop(_LogSumExpFunction.apply, info, (0,), (x,), (num_threads,))


# --------------------------------------------------------------------------- custom ops

torch.library.define("xent::log_softmax", "(Tensor input, int dim, int? num_threads) -> Tensor")
torch.library.define("xent::softmax", "(Tensor input, int dim, int? num_threads) -> Tensor")
torch.library.define("xent::logsumexp", "(Tensor input, int? num_threads) -> Tensor")
torch.library.impl("xent::log_softmax", "cpu")(_LogSoftmaxFunction.forward)
torch.library.impl("xent::softmax", "cpu")(_SoftmaxFunction.forward)
torch.library.impl("xent::logsumexp", "cpu")(_LogSumExpFunction.forward)


def _fake_rowwise(x, dim, num_threads):
    return x.new_empty(x.shape, dtype=compute_dtype(x.dtype))


def _fake_lse(x, num_threads):
    return x.new_empty(x.shape[:-1], dtype=compute_dtype(x.dtype))


torch.library.register_fake("xent::log_softmax", _fake_rowwise)
torch.library.register_fake("xent::softmax", _fake_rowwise)
torch.library.register_fake("xent::logsumexp", _fake_lse)


def _register_autograd(name: str, fn: type) -> None:
    def backward(ctx, grad):
        return fn.backward(ctx, grad, False)  # PyTorch's formulas while tracing

    torch.library.register_autograd(f"xent::{name}", backward,
                                    setup_context=fn.setup_context)


_register_autograd("log_softmax", _LogSoftmaxFunction)
_register_autograd("softmax", _SoftmaxFunction)
_register_autograd("logsumexp", _LogSumExpFunction)


def _eager_twin(fn: type) -> type:
    """`fn` with a ctx-style forward, for plain eager calls (``Function.apply`` costs an
    ``inspect.signature`` per call for setup_context-style Functions)."""

    def forward(ctx, *inputs):
        out = fn.forward(*inputs)
        fn.setup_context(ctx, inputs, out)
        return out

    return type(fn.__name__ + "Eager", (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(fn.backward),
                 "__module__": __name__})


_EAGER = {fn: _eager_twin(fn) for fn in (_LogSoftmaxFunction, _SoftmaxFunction,
                                         _LogSumExpFunction)}


def _run(fn: type, op, x: torch.Tensor, *args) -> torch.Tensor:
    if is_compiling():
        return op(x, *args)
    if not needs_autograd(x):
        return fn.forward(x, *args)
    if functorch_active(x) or has_tangent(x):
        return fn.apply(x, *args)  # torch.func transforms and forward AD
    return _EAGER[fn].apply(x, *args)


# --------------------------------------------------------------------------- functions


# Parameters to Raises of softmax and log_softmax.
_SOFTMAX_SECTIONS = """\
Parameters
----------
input : Tensor
    Floating input (float16/bfloat16 are computed in float32 and returned in
    their own dtype).
dim : int
    The dimension to normalise.  ``None`` picks PyTorch's legacy default
    with its deprecation warning.
_stacklevel : int, optional
    As in PyTorch (for that warning).
dtype : torch.dtype, optional
    Cast the input to this dtype first, as PyTorch does.
num_threads : int, optional
    OpenMP threads for xent.

Returns
-------
Tensor
    The input's shape and dtype (or `dtype`).

Raises
------
IndexError
    `dim` out of range.
NotImplementedError
    A non-floating input (and `dtype`), a tensor not on the CPU."""


def _plain_lastdim(input, dim) -> bool:
    """A :func:`plain_call` float32/float64 input of at least one dim, over its last dim."""
    return (type(dim) is int and plain_call(input) and input.dtype in PLAIN_DTYPES
            and (dim == -1 or dim == input.dim() - 1) and input.dim() > 0)


def _softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  f"to include dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def _prepare(input, dim, dtype, op: str, name: str, stacklevel: int):
    check_tensor(input, "input")
    if dtype is not None:
        input = input.to(dtype)
    check_floating(input, op)
    if dim is None:
        dim = _softmax_dim(name, input.dim(), stacklevel + 1)
    return input, normalize_dim(dim, input.dim())


def _normalized(fn: type, op, input: torch.Tensor, d: int, num_threads) -> torch.Tensor:
    x = input.reshape(1) if input.dim() == 0 else input
    y = _run(fn, op, x, d, num_threads)
    y = y.reshape(()) if input.dim() == 0 else y
    return y if y.dtype == input.dtype else y.to(input.dtype)


def log_softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: torch.dtype | None = None, *,
                num_threads: int | None = None) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.log_softmax`` (and ``torch.log_softmax``).

    ``x - logsumexp(x, dim)``, max-shifted and stable, computed by
    ``xent.log_softmax``; its gradient by xent's cross-entropy kernel.
    Differentiable to any order; forward-mode AD, torch.func and
    ``torch.compile`` (as the custom op ``xent::log_softmax``) are supported.

    {sections}

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> torch.allclose(xt.log_softmax(x, dim=1), torch.log_softmax(x, dim=1))
    True
    """
    if dtype is None and _plain_lastdim(input, dim):
        return torch.from_numpy(xent.log_softmax(input.numpy(), num_threads=num_threads))
    input, d = _prepare(input, dim, dtype, "log_softmax_lastdim_kernel_impl", "log_softmax",
                        _stacklevel)
    return _normalized(_LogSoftmaxFunction, torch.ops.xent.log_softmax.default, input, d,
                       num_threads)


def softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: torch.dtype | None = None, *,
            num_threads: int | None = None) -> torch.Tensor:
    r"""Drop-in for ``torch.nn.functional.softmax`` (and ``torch.softmax``).

    Computed by ``xent.softmax``; the backward pass is PyTorch's formula on the
    saved output (see the module notes).  Differentiable to any order;
    forward-mode AD, torch.func and ``torch.compile`` are supported.

    {sections}

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    >>> xt.softmax(x, dim=-1, dtype=torch.float32).dtype
    torch.float32
    >>> torch.allclose(xt.softmax(x, dim=1), torch.softmax(x, dim=1))
    True
    """
    if dtype is None and _plain_lastdim(input, dim):
        return torch.from_numpy(xent.softmax(input.numpy(), num_threads=num_threads))
    input, d = _prepare(input, dim, dtype, "softmax_lastdim_kernel_impl", "softmax",
                        _stacklevel)
    return _normalized(_SoftmaxFunction, torch.ops.xent.softmax.default, input, d, num_threads)


def _reduced_dims(dim, ndim: int) -> list[int]:
    dims = [dim] if isinstance(dim, int) else list(dim)
    out = [normalize_dim(d, ndim) for d in dims]
    for d in out:
        if out.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
    if not out and ndim > 0:
        raise RuntimeError("logsumexp: dim=() (an empty list of dims) is not supported, as "
                           "in PyTorch")
    return sorted(out)


def logsumexp(input: torch.Tensor, dim, keepdim: bool = False, *,
              out: torch.Tensor | None = None,
              num_threads: int | None = None) -> torch.Tensor:
    r"""Drop-in for ``torch.logsumexp`` on CPU tensors.

    ``log(sum(exp(x), dim))``, max-shifted and stable, computed by
    ``xent.logsumexp``; the gradient ``grad * softmax(x)`` by xent's softmax
    kernel.  A slice of all ``-inf`` gives ``-inf``, one holding ``+inf`` (and
    no NaN) gives ``+inf``, an empty one ``-inf``.  Differentiable to any order.

    Parameters
    ----------
    input : Tensor
        Integer and bool inputs are computed in the default floating dtype, as
        PyTorch does; float16/bfloat16 in float32 (returned in their dtype).
    dim : int or tuple of int
        The dimension(s) to reduce.
    keepdim : bool, optional
        Keep the reduced dimensions with size 1.
    out : Tensor, optional
        Receives the result (not differentiable, as in PyTorch).
    num_threads : int, optional
        OpenMP threads for xent.

    Returns
    -------
    Tensor
        `input` without the reduced dims (size 1 with `keepdim`).

    Raises
    ------
    IndexError
        A `dim` out of range.
    RuntimeError
        A repeated `dim`; `out=` when the result requires grad.
    NotImplementedError
        Complex inputs, tensors not on the CPU.

    Examples
    --------
    >>> import torch
    >>> import xent.torch as xt
    >>> x = torch.tensor([[0.0, 1.0], [1000.0, 1000.0]], dtype=torch.float64)
    >>> xt.logsumexp(x, 1)
    tensor([   1.3133, 1000.6931], dtype=torch.float64)
    >>> xt.logsumexp(x, (0, 1), keepdim=True).shape
    torch.Size([1, 1])
    """
    if out is None and not keepdim and _plain_lastdim(input, dim):
        return torch.from_numpy(np.asarray(xent.logsumexp(input.numpy(), num_threads=num_threads)))
    check_tensor(input, "input")
    if input.dtype.is_complex:
        raise NotImplementedError("xent.torch.logsumexp: complex inputs are not supported")
    if not input.dtype.is_floating_point:
        input = input.to(torch.get_default_dtype())
    dims = _reduced_dims(dim, input.dim())
    x = input.reshape(1) if input.dim() == 0 else input
    dims = dims or [0]
    kept = [d for d in range(x.dim()) if d not in dims]
    k = 1
    for d in dims:
        k *= x.shape[d]
    x2 = x.permute(*kept, *dims).reshape(*[x.shape[d] for d in kept], k)
    y = _run(_LogSumExpFunction, torch.ops.xent.logsumexp.default, x2, num_threads)
    if keepdim and input.dim() > 0:
        y = y.reshape([1 if d in dims else x.shape[d] for d in range(x.dim())])
    elif input.dim() == 0:
        y = y.reshape(())
    y = y if y.dtype == input.dtype else y.to(input.dtype)
    return y if out is None else _into(out, y)


def _into(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("logsumexp(): functions with out=... arguments don't support "
                           "automatic differentiation, but one of the arguments requires grad.")
    out.resize_(y.shape)
    return out.copy_(y)


fill_doc(log_softmax, softmax, sections=_SOFTMAX_SECTIONS)
