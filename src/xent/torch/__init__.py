"""PyTorch adapter: xent's kernels as differentiable drop-ins for PyTorch's losses.

Optional: requires PyTorch >= 2.4 (``pip install "xent[torch]"``). ``import xent``
never imports torch; ``import xent.torch`` does.

Drop-ins, with PyTorch's signatures, layouts, values, gradients and exception
classes: :func:`cross_entropy` / :class:`CrossEntropyLoss`, :func:`nll_loss` /
:class:`NLLLoss`, :func:`binary_cross_entropy` / :class:`BCELoss`,
:func:`binary_cross_entropy_with_logits` / :class:`BCEWithLogitsLoss`,
:func:`log_softmax`, :func:`softmax`, :func:`logsumexp` and torchvision's
:func:`sigmoid_focal_loss`; plus :func:`focal_loss` / :class:`FocalLoss` and
:func:`kl_div_with_logits` (xent's own), and :func:`linear_cross_entropy` /
:class:`LinearCrossEntropyLoss` (a linear layer's cross-entropy without its
logits; an ``autograd.Function``, outside the custom-op notes below), and
:func:`vocab_parallel_cross_entropy` (a vocabulary split over the ranks of a
``torch.distributed`` group; also an ``autograd.Function``).  CPU
tensors only (others raise NotImplementedError, as an operator without a kernel
for their device).

Autograd
--------
* When a gradient is needed, the forward pass computes the loss *and* its
  gradient in one fused pass and keeps only that gradient; backward scales it
  in place (no second array of the logits' size) and hands it to autograd
  unless the graph is kept (``retain_graph=True``, ``create_graph=True``), in
  which case it returns a new tensor.  Without a gradient (``torch.no_grad()``,
  inputs that do not require grad) only the loss is computed.
* Double backward, ``torch.autograd.functional.hvp`` / ``hessian``, gradient
  penalties, forward-mode AD (``torch.autograd.forward_ad``, ``torch.func.jvp``),
  ``torch.func.grad`` / ``vjp`` / ``vmap`` (one kernel call per batch entry)
  work and match PyTorch.  Second derivatives of ``cross_entropy`` (without
  ``softcap``) and ``nll_loss`` come from the saved gradient alone; the other
  losses keep a reference to their input for them (as PyTorch's own do).
* Targets: class probabilities (``cross_entropy``) and the binary losses'
  targets are differentiable, as in PyTorch; weights, ``pos_weight``,
  ``alpha``, torchvision's ``targets`` and the teacher's logits are constants
  (one that requires grad raises PyTorch's RuntimeError).
* ``torch.compile(..., fullgraph=True)`` and ``torch.export``: inside a traced
  region every function calls the custom ops ``torch.ops.xent.*`` (registered
  with ``torch.library``, with fake implementations and autograd formulas), so
  there is no graph break.  There, the in-place option is ignored and double
  backward is unavailable (as for PyTorch's compiled graphs).

Layouts are PyTorch's: the classification losses take ``(N, C)``,
``(N, C, d1, ...)`` (classes on dim 1) or ``(C,)`` inputs, the binary losses
any shape (elementwise), and :func:`kl_div_with_logits` keeps xent's
``(..., C)`` layout.  Contiguous float32/float64 inputs are read without a
copy; other layouts and dtypes are copied once into a contiguous buffer in
which the gradient is then written (float16 and bfloat16 are computed in
float32; results and gradients are returned in the input's dtype, the
gradient scaled by ``grad_output`` before the final rounding).

In-place backward (``inplace_backward=True``)
---------------------------------------------
Opt-in memory saving for the largest tensor of a language model: the gradient
is written into the logits' own storage instead of a new buffer.
Guarantees:

* it applies only in eager mode, when a gradient is computed, no target is
  differentiated, no forward-mode tangent is attached, and the logits need
  neither a dtype nor a layout change (contiguous float32/float64 ``(N, C)`` or
  ``(C,)`` for the classification losses, any contiguous shape for the
  elementwise losses and :func:`kl_div_with_logits`); otherwise the private
  copy (if one is made) is reused and the logits are left untouched;
* after the call, **the logits' values are destroyed** (they hold the
  gradient for ``grad_output = 1``, scaled in place by backward); read them
  before calling the loss. If the call raises (e.g. a target out of range),
  the logits are untouched;
* a leaf tensor that requires grad (a parameter), or a view of one, is never
  overwritten: ValueError; nor are logits saved by their own producer for its
  backward (e.g. the output of ``tanh``, ``sigmoid``, ``exp``, ``softmax``);
* the logits' version counter is bumped, so any *other* autograd node that
  saved them raises PyTorch's "modified by an inplace operation" RuntimeError
  at backward instead of computing a wrong gradient; so does modifying the
  logits in place between the forward and the backward of the loss.  Several
  in-place losses on views of one tensor (``logits[:n]``, ``logits[n:]``, the
  chunked-loss pattern) are fine;
* double backward (``create_graph=True``) through an in-place loss raises.

What cannot be detected: other code *reading* the logits' values after the
call, and memory shared outside autograd (e.g. a NumPy array from
``tensor.numpy()``).
"""

from __future__ import annotations

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'xent.torch requires PyTorch; install it with pip install "xent[torch]" '
        "(or a CPU build of torch >= 2.4)"
    ) from exc

if not hasattr(torch.library, "register_autograd"):  # pragma: no cover - old PyTorch
    raise ImportError(f"xent.torch requires torch >= 2.4 (torch.library custom ops); "
                      f"found torch {torch.__version__}")

from ._binary import (  # noqa: E402
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    sigmoid_focal_loss,
)
from ._ce import cross_entropy, focal_loss, nll_loss  # noqa: E402
from ._kl import kl_div_with_logits  # noqa: E402
from ._linear import LinearCrossEntropyLoss, linear_cross_entropy  # noqa: E402
from ._modules import (  # noqa: E402
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    FocalLoss,
    NLLLoss,
)
from ._softmax import log_softmax, logsumexp, softmax  # noqa: E402
from ._vocab_parallel import vocab_parallel_cross_entropy  # noqa: E402

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LinearCrossEntropyLoss",
    "NLLLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "focal_loss",
    "kl_div_with_logits",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "sigmoid_focal_loss",
    "softmax",
    "vocab_parallel_cross_entropy",
]
