"""Checks, conversions and PyTorch-style errors shared by the adapter's functions."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.autograd import forward_ad

#: dtypes the kernels compute natively; float16/bfloat16 are computed in float32
NATIVE = (torch.float32, torch.float64)

_SCALAR_NAMES = {
    torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
    torch.bfloat16: "BFloat16", torch.int64: "Long", torch.int32: "Int", torch.int16: "Short",
    torch.int8: "Char", torch.uint8: "Byte", torch.bool: "Bool",
    torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}


def scalar_name(dtype: torch.dtype) -> str:
    """PyTorch's name of a dtype in error messages ('Float', 'Long', ...)."""
    return _SCALAR_NAMES.get(dtype, str(dtype))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in for inputs of `dtype`."""
    return dtype if dtype in NATIVE else torch.float32


def check_tensor(t, name: str) -> torch.Tensor:
    """A dense CPU tensor (NotImplementedError for other devices, as an op without a kernel)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise NotImplementedError(
            f"xent.torch runs on CPU tensors only; {name} is on device '{t.device}'. "
            f"Move it with .cpu() or use PyTorch's own function on that device."
        )
    if t.layout != torch.strided:
        raise NotImplementedError(f"xent.torch: {name} must be a dense (strided) tensor, "
                                  f"got layout {t.layout}")
    return t


def check_floating(t: torch.Tensor, op: str) -> None:
    """NotImplementedError for a non-floating input, as PyTorch's kernels raise."""
    if not t.dtype.is_floating_point:
        raise NotImplementedError(
            f'"{op}" not implemented for \'{scalar_name(t.dtype)}\' (xent.torch computes '
            f"float16, bfloat16, float32 and float64 inputs)"
        )


def check_not_differentiable(t, op: str, arg: str) -> None:
    """PyTorch's RuntimeError for a constant argument that requires grad."""
    if isinstance(t, torch.Tensor) and t.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            f"The function '{op}' is not differentiable with respect to argument '{arg}'. "
            f"This input cannot have requires_grad True."
        )


def reduction_arg(size_average, reduce, reduction: str) -> str:
    """The reduction string, mapping PyTorch's deprecated arguments as it does."""
    if size_average is not None or reduce is not None:
        reduce = True if reduce is None else reduce
        size_average = True if size_average is None else size_average
        reduction = ("mean" if size_average else "sum") if reduce else "none"
        warnings.warn(f"size_average and reduce args will be deprecated, please use "
                      f"reduction='{reduction}' instead.", UserWarning, stacklevel=3)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def has_storage(t: torch.Tensor) -> bool:
    """False for the wrapper tensors of torch.func transforms (grad, vjp, jvp, vmap)."""
    try:
        t.untyped_storage()
    except (NotImplementedError, RuntimeError):
        return False
    return True


def is_compiling() -> bool:
    """True while torch.compile / torch.export traces the call."""
    return torch.compiler.is_compiling()


def has_tangent(t: torch.Tensor) -> bool:
    return forward_ad.unpack_dual(t).tangent is not None


def needs_autograd(*tensors) -> bool:
    """True if a call on these floating tensors must go through autograd.

    Any of them requires grad (with grad mode on), carries a forward-mode
    tangent, or is a torch.func transform's wrapper.
    """
    grad_on = torch.is_grad_enabled()
    for t in tensors:
        if t is None or not t.dtype.is_floating_point:
            continue
        if (grad_on and t.requires_grad) or has_tangent(t) or not has_storage(t):
            return True
    return False


def as_compute(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """`x` as a C-contiguous float32/float64 tensor, and whether that is a new buffer."""
    if x.dtype in NATIVE and x.is_contiguous() and not x.is_neg():
        return x, False
    buf = torch.empty(x.shape, dtype=compute_dtype(x.dtype))
    buf.copy_(x)
    return buf, True


def to_numpy(t):
    """A NumPy view of a constant tensor argument (float32 copy for bfloat16), or None."""
    if t is None:
        return None
    if t.requires_grad:
        t = t.detach()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16
        t = t.to(torch.float32)
    if t.is_neg():
        t = t.resolve_neg()
    return t.numpy()


def loss_tensor(loss, dtype: torch.dtype) -> torch.Tensor:
    """A NumPy loss (scalar or array) as a tensor of `dtype`."""
    t = torch.from_numpy(loss if type(loss) is np.ndarray else np.asarray(loss))
    return t if t.dtype == dtype else t.to(dtype)


def normalize_dim(dim: int, ndim: int) -> int:
    """`dim` in ``[0, ndim)`` (a 0-d tensor has one dim), with PyTorch's IndexError."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n


#: Whether a torch.func transform is active (no public API; None: assume one may be).
_TRANSFORMS_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", None)

def transforms_active() -> bool:
    """True if a torch.func transform is active (or PyTorch cannot tell)."""
    return _TRANSFORMS_ACTIVE is None or bool(_TRANSFORMS_ACTIVE())


#: dtypes a plain call hands to the kernels as they are
PLAIN_DTYPES = (torch.float32, torch.float64)


def plain_call(*tensors) -> bool:
    """True if a call on these tensors needs nothing but the kernel.

    Each is a plain (not a subclass) contiguous dense CPU tensor that autograd does
    not track; no forward-AD level, torch.func transform or compiler trace is
    active.  A serving call passes these checks in about a microsecond, where the
    general path's checks would cost more than the kernel on a small input.
    """
    if (forward_ad._current_level >= 0 or transforms_active()
            or torch.compiler.is_compiling()):
        return False
    grad_on = torch.is_grad_enabled()
    for t in tensors:
        if (type(t) is not torch.Tensor or (grad_on and t.requires_grad) or not t.is_cpu
                or t.layout is not torch.strided or not t.is_contiguous() or t.is_neg()):
            return False
    return True
