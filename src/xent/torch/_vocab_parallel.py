"""Vocabulary-parallel (tensor-parallel) softmax cross-entropy over ``torch.distributed``.

Design: each rank holds the logits of one contiguous slice of the vocabulary
(``[vocab_start, vocab_start + C_local)``, the Megatron layout of a sharded output
layer).  The loss of row ``i`` with target ``y`` and global vocabulary size ``V``,
with ``z`` the (soft-capped) logits and ``L`` the global log-sum-exp, is

    (1 - eps) w_y (L - z_y) + eps / V * (W L - sum_k w_k z_k) + zl w_y L**2

(``W = sum_k w_k``), which is *linear* in four per-rank statistics: the local
log-sum-exp ``L_r`` (xent's kernel), the target logit when ``y`` falls in the
slice (0 elsewhere), the slice's ``sum_k w_k z_k`` and the slice's bounds.  So
the forward needs a single collective: one ``all_gather`` of those statistics
packed in one float64 tensor.  Every rank then combines the gathered partials
itself, in rank order with NumPy (deterministic for identical input), so the
loss is bitwise identical on every rank -- a float all-reduce would not
guarantee that (its summation order may differ per rank).  The label smoothing
uses the global ``V`` and ``W`` (exactly PyTorch's single-process value).  The
backward needs no collective: the local gradient is the softmax of the local
slice with the global log-sum-exp, minus the target and smoothing terms.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _softmax
from .._cross_entropy import _checked_options
from .._threads import _resolve
from ._common import check_not_differentiable, check_tensor

__all__ = ["vocab_parallel_cross_entropy"]

_OP = "xent.torch.vocab_parallel_cross_entropy"
_HEADER = 2  # vocab_start, C_local


def _world(group):
    """(world size, this rank in `group`); one process without torch.distributed."""
    import torch.distributed as dist

    if group is None and not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


def _gather(packed: torch.Tensor, group, world: int) -> list[np.ndarray]:
    """The one collective of the forward: every rank's packed partials, in rank order."""
    if world == 1:
        return [packed.numpy()]
    import torch.distributed as dist

    parts = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(parts, packed, group=group)
    return [p.numpy() for p in parts]


def _logits(local_logits) -> tuple[torch.Tensor, torch.dtype]:
    check_tensor(local_logits, "local_logits")
    if not local_logits.dtype.is_floating_point or local_logits.is_complex():
        raise TypeError(f"{_OP}: local_logits must be real floating point, "
                        f"got dtype {local_logits.dtype}")
    if local_logits.ndim == 0:
        raise ValueError(f"{_OP}: local_logits must have a class (last) axis")
    dt = local_logits.dtype if local_logits.dtype in (torch.float32, torch.float64) else (
        torch.float32)
    return local_logits.detach().to(dt).contiguous(), dt


def _targets(target, lead) -> np.ndarray:
    t = target.detach().cpu() if isinstance(target, torch.Tensor) else torch.as_tensor(
        np.asarray(target))
    if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{_OP}: target must hold integer class indices, got dtype {t.dtype} "
                        f"(probability targets are not supported)")
    if tuple(t.shape) != tuple(lead):
        raise ValueError(f"{_OP}: target has shape {tuple(t.shape)}, expected "
                         f"local_logits.shape[:-1] = {tuple(lead)}")
    return t.to(torch.int64).reshape(-1).numpy()


def _constant(a, name: str, ndim_shape=None) -> np.ndarray | None:
    """`weight` / `sample_weight` as float64 NumPy (constants: no gradient flows to them)."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        check_not_differentiable(a, _OP, name)
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{_OP}: {name} must be real, got dtype {arr.dtype}")
    if ndim_shape is not None and arr.shape != tuple(ndim_shape):
        raise ValueError(f"{_OP}: {name} has shape {arr.shape}, expected {tuple(ndim_shape)}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _capped(x: torch.Tensor, cap: float) -> torch.Tensor:
    return x if cap == 0.0 else torch.tanh(x / cap) * cap


class _Partials:
    """This rank's statistics of its vocabulary slice, packed for the all-gather."""

    def __init__(self, z: torch.Tensor, t: np.ndarray, start: int, w_local: np.ndarray | None,
                 eps: float, nt: int | None):
        n, c = z.shape
        self.lse = _softmax.logsumexp(z.numpy(), axis=-1, num_threads=nt).astype(np.float64)
        local = t - start
        self.owned = (local >= 0) & (local < c)
        zy = np.zeros(n, dtype=np.float64)
        rows = np.flatnonzero(self.owned)
        zy[rows] = z.numpy()[rows, local[rows]]
        self.zy = zy
        self.wz = None
        if eps > 0.0:
            # in the logits' dtype (no float64 copy of the slice): the sum enters the
            # loss as eps / V * sum, so its float32 rounding stays below 1e-7 of the loss
            self.wz = (torch.sum(z, -1) if w_local is None else
                       torch.mv(z, torch.from_numpy(w_local).to(z.dtype))
                       ).to(torch.float64).numpy()
        self.header = (float(start), float(c))

    def packed(self) -> torch.Tensor:
        cols = [self.lse, self.zy] + ([] if self.wz is None else [self.wz])
        return torch.from_numpy(np.concatenate([np.array(self.header), *cols]))


class _Global:
    """The global statistics, combined in rank order (identical on every rank)."""

    def __init__(self, parts: list[np.ndarray], n: int, with_wz: bool):
        starts = [int(p[0]) for p in parts]
        sizes = [int(p[1]) for p in parts]
        self.vocab = _check_partition(starts, sizes)
        cols = [p[_HEADER:].reshape(-1, n) for p in parts]
        with np.errstate(invalid="ignore", over="ignore"):
            m = cols[0][0].copy()
            for c in cols[1:]:
                m = np.fmax(m, c[0])
            shift = np.where(np.isfinite(m), m, 0.0)
            s = np.zeros(n)
            for c in cols:
                s += np.exp(c[0] - shift)
            with np.errstate(divide="ignore"):
                # a row holding +inf has a NaN loss, as PyTorch's log_softmax makes it
                self.lse = np.where(m == np.inf, np.nan, shift + np.log(s))
            self.zy = np.zeros(n)
            self.wz = np.zeros(n) if with_wz else None
            for c in cols:
                self.zy += c[1]
                if with_wz:
                    self.wz += c[2]


def _check_partition(starts: list[int], sizes: list[int]) -> int:
    """The global vocabulary size, after checking that the slices tile ``[0, V)``."""
    end = 0
    for lo, size in sorted(zip(starts, sizes)):
        if lo != end:
            raise ValueError(f"{_OP}: the ranks' vocabulary slices (vocab_start, C_local) = "
                             f"{list(zip(starts, sizes))} do not tile [0, V) without gaps "
                             f"or overlaps")
        end = lo + size
    if end == 0:
        raise ValueError(f"{_OP}: the global vocabulary is empty (C == 0)")
    return end


def _row_weights(t, keep, w):
    if w is None:
        return keep.astype(np.float64)
    return np.where(keep, w[np.where(keep, t, 0)], 0.0)


def vocab_parallel_cross_entropy(
    local_logits: torch.Tensor,
    target,
    *,
    vocab_start: int,
    group=None,
    weight=None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight=None,
    num_threads: int | None = None,
) -> torch.Tensor:
    r"""Cross-entropy over a vocabulary split across the ranks of a process group.

    Each rank passes the logits of its own contiguous slice of the vocabulary,
    columns ``[vocab_start, vocab_start + C_local)`` of the full ``(..., V)``
    logits (a tensor-parallel output layer), and the same targets; every rank
    gets the loss of the full logits, bitwise identical on all ranks, and the
    gradient of that loss with respect to its own slice.  The value equals
    ``xent.torch.cross_entropy`` / :func:`xent.cross_entropy` on the gathered
    logits for every option, label smoothing included (it uses the global
    ``V``; Megatron-LM's smooths over the local slice).

    Parameters
    ----------
    local_logits : torch.Tensor of shape (..., C_local)
        This rank's logits, classes on the last axis (any leading axes).
        float32 and float64 are computed natively, float16 and bfloat16 in
        float32 (loss and gradient returned in the input's dtype).  The slices
        of all ranks must tile ``[0, V)`` (any sizes, ``C_local = 0`` allowed).
    target : torch.Tensor of int, shape ``local_logits.shape[:-1]``
        Global class indices in ``[0, V)`` or `ignore_index`, the same on every
        rank.
    vocab_start : int
        The global index of this rank's first class.
    group : torch.distributed.ProcessGroup, optional
        The ranks sharing the vocabulary (default: the default group; without
        an initialised process group, a single process holding all of it).
    weight : tensor or array of shape (V,), optional
        Per-class weights over the *global* vocabulary (the same on every rank).
    ignore_index, reduction, label_smoothing, z_loss, softcap, sample_weight
        As in :func:`xent.cross_entropy` (`sample_weight` has shape
        ``local_logits.shape[:-1]``, the same on every rank).
    num_threads : int, optional
        Threads of xent's log-sum-exp kernel on the local slice (None: the
        package default).

    Returns
    -------
    torch.Tensor
        A 0-d tensor for ``"mean"`` / ``"sum"``, shape ``local_logits.shape[:-1]``
        for ``"none"``, in the input's dtype; differentiable with respect to
        `local_logits`.

    Raises
    ------
    TypeError
        If `local_logits` is not floating point, `target` not integer, or
        `weight` / `sample_weight` not real.
    ValueError
        For a `target` / `sample_weight` of the wrong shape, an option out of
        range, slices that do not tile ``[0, V)``, or a `weight` of length other
        than ``V``.
    IndexError
        If a target is outside ``[0, V)`` and not `ignore_index`.
    RuntimeError
        If `weight` or `sample_weight` requires grad.

    Notes
    -----
    Collectives: exactly one in the forward (an ``all_gather`` of
    ``2 + 2N`` float64 values per rank, ``2 + 3N`` with label smoothing, for
    ``N`` rows) and none in the backward.  Errors found after the gather
    (bad slices, targets, weight length) are raised on every rank; errors in
    the arguments themselves are raised before it, on the rank that has them
    (the others then wait in the collective, as with any mismatched call).
    Probability (soft) targets are not supported.

    Examples
    --------
    >>> import torch
    >>> import xent.torch
    >>> logits = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    >>> target = torch.tensor([1, 7, 3, -100])
    >>> loss = xent.torch.vocab_parallel_cross_entropy(logits, target, vocab_start=0,
    ...                                                label_smoothing=0.1)
    >>> ref = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    >>> bool(torch.allclose(loss, ref))
    True
    """
    x, dt = _logits(local_logits)
    lead, c = tuple(x.shape[:-1]), x.shape[-1]
    red, ign, eps, zl, cap = _checked_options(reduction, ignore_index, label_smoothing, z_loss,
                                              softcap)
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, (int, np.integer)):
        raise TypeError(f"{_OP}: vocab_start must be an int, got {type(vocab_start).__name__}")
    if vocab_start < 0:
        raise ValueError(f"{_OP}: vocab_start must be >= 0, got {vocab_start}")
    t = _targets(target, lead)
    w = _constant(weight, "weight")
    if w is not None and w.ndim != 1:
        raise ValueError(f"{_OP}: weight must have shape (V,), got {w.shape}")
    sw = _constant(sample_weight, "sample_weight", lead)
    sw = None if sw is None else sw.reshape(-1)
    nt = _resolve(num_threads) if num_threads is not None else None
    world, _ = _world(group)

    z2 = _capped(x.reshape(-1, c), cap)
    n = z2.shape[0]
    keep = t != ign
    w_local = None
    if w is not None:  # a short weight is reported after the gather, by every rank
        w_local = w[vocab_start:vocab_start + c]
        w_local = w_local if w_local.shape[0] == c else np.zeros(c)
    mine = _Partials(z2, t, int(vocab_start), w_local, eps, nt)
    glob = _Global(_gather(mine.packed(), group, world), n, eps > 0.0)
    v = glob.vocab
    if w is not None and w.shape[0] != v:
        raise ValueError(f"{_OP}: weight has shape {w.shape}, expected (V,) = ({v},)")
    bad = keep & ((t < 0) | (t >= v))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IndexError(f"{_OP}: target {int(t[i])} at flat position {i} is out of bounds "
                         f"for {v} classes")
    wy = _row_weights(t, keep, w)
    total_w = float(v) if w is None else float(np.sum(w))
    with np.errstate(all="ignore"):
        rows = (1.0 - eps) * wy * (glob.lse - glob.zy)
        if eps > 0.0:
            rows = rows + (eps / v) * (total_w * glob.lse - glob.wz)
        if zl > 0.0:
            rows = rows + zl * wy * glob.lse * glob.lse
        if sw is not None:
            rows = sw * rows
        rows = np.where(keep, rows, 0.0)
        denom = float(np.sum(np.where(keep, wy if sw is None else sw * wy, 0.0)))
        if red == "none":
            loss = torch.from_numpy(rows.reshape(lead))
        elif red == "sum":
            loss = torch.tensor(np.sum(rows), dtype=torch.float64)
        else:
            loss = torch.tensor(np.sum(rows) / denom, dtype=torch.float64)
    loss = loss.to(local_logits.dtype)
    if not (torch.is_grad_enabled() and local_logits.requires_grad):
        return loss
    ctx = _Saved(z2, t, keep, mine.owned, int(vocab_start), glob.lse, mine.lse, nt, wy,
                 w_local, sw, eps, zl, cap, v, total_w, red, denom, lead, dt)
    return _Function.apply(local_logits, loss, ctx)


class _Saved:
    """What the backward needs: the global statistics and per-row coefficients."""

    def __init__(self, z, t, keep, owned, start, lse, local_lse, nt, wy, w, sw, eps, zl, cap,
                 v, total_w, red, denom, lead, dt):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def _column(self, a) -> torch.Tensor:
        """Per-row float64 values as an (N, 1) tensor of the computation dtype."""
        return torch.from_numpy(np.asarray(a)).to(self.dt)[:, None]

    def grad(self, grad_output: torch.Tensor) -> torch.Tensor:
        n, c = self.z.shape
        go = grad_output.detach().to(torch.float64).reshape(-1).numpy()
        with np.errstate(all="ignore"):
            scale = np.array(np.broadcast_to(go / self.denom if self.red == "mean" else go, (n,)))
            if self.sw is not None:
                scale = scale * self.sw
            coef = (1.0 - self.eps) * self.wy + (self.eps / self.v) * self.total_w
            if self.zl > 0.0:
                coef = coef + 2.0 * self.zl * self.wy * self.lse
            col = self._column
            # softmax of the slice with the global log-sum-exp L: xent's softmax of the
            # slice (its own log-sum-exp L_r) times exp(L_r - L), folded into the row
            # factor; a slice row of only -inf (L_r = -inf) has probability 0
            g = torch.from_numpy(_softmax.softmax(self.z.numpy(), num_threads=self.nt))
            empty = np.flatnonzero(self.local_lse == -np.inf)
            if empty.size:
                g[torch.from_numpy(empty)] = 0.0
            g.mul_(col(np.exp(self.local_lse - self.lse) * coef * scale))
            rows = np.flatnonzero(self.owned & self.keep)
            cols = torch.from_numpy(self.t[rows] - self.start)
            hit = (1.0 - self.eps) * self.wy[rows] * scale[rows]
            g[torch.from_numpy(rows), cols] -= torch.from_numpy(hit).to(self.dt)
            if self.eps > 0.0:
                b = col(scale * (self.eps / self.v))
                if self.w is None:
                    g.sub_(b)
                else:
                    g.addcmul_(b, torch.from_numpy(self.w).to(self.dt)[None, :], value=-1.0)
            if self.cap != 0.0:  # d(cap tanh(x / cap)) / dx = 1 - (z / cap)**2
                d = torch.div(self.z, self.cap)
                d.mul_(d).neg_().add_(1.0)
                g.mul_(d)
            ignored = np.flatnonzero(~self.keep)
            if ignored.size:  # exactly zero, whatever the logits hold
                g[torch.from_numpy(ignored)] = 0.0
        return g.reshape(self.lead + (c,))


class _Function(torch.autograd.Function):
    """The loss, computed outside, attached to `local_logits` with its gradient rule."""

    @staticmethod
    def forward(ctx, local_logits, loss, saved):
        ctx.saved = saved
        ctx.in_dtype = local_logits.dtype
        # saved for its version counter: the backward reads the logits' memory, so
        # modifying them in place before it raises PyTorch's error, not a wrong gradient
        ctx.save_for_backward(local_logits)
        return loss.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        ctx.saved_tensors  # noqa: B018 - raises if the logits were modified in place
        return ctx.saved.grad(grad_output).to(ctx.in_dtype), None, None
