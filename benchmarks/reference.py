"""Independent NumPy oracles of every public xent function (float64 results): the
project's one reference, used by the tests and by the benchmark's correctness check.

Written from API.md and PyTorch's documented formulas, never from xent's code, and
validated against PyTorch in ``tests/test_reference.py``.  Computed in float64 (fast
enough for 262,144 classes and 16 MiB arrays), in forms that keep the relative
accuracy of small results: the log-normaliser is ``log1p`` of the sum without the row
maximum's exact 1, ``1 - p`` at the target is ``-expm1(log p)``, sigmoids are never
``1 - sigmoid``, and the softcap's derivative is ``1 / cosh**2``.  Only NumPy is
needed.

API: each function has the name, the positional arguments, the options and the
defaults of the xent function it checks, without ``out`` and ``num_threads``.  Inputs
must be valid (the references raise only ``IndexError`` for an out-of-range class
target and ``ValueError`` for an unknown reduction); float16 input is computed from its
float32 value, as xent does.

- ``logsumexp``, ``softmax``, ``log_softmax``;
- for each ``NAME`` in :data:`LOSSES`: ``NAME``, ``NAME_grad`` (the gradient with
  respect to the first argument times ``grad_output``) and ``NAME_and_grad`` (which
  also takes ``grad_output``, keyword-only);
- ``perplexity``, ``expected_calibration_error``, ``token_scores`` (returns
  :class:`TokenScores`, the fields of ``xent.TokenScores``);
- ``rows(NAME, *args, **options)``: the unreduced pieces of a loss, a :class:`Rows`
  (per-output losses, the gradient of each one, the "mean" denominators) for checks
  that need the scale of the summands, or the gradient of a sample of rows.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

F64 = np.float64
#: The default ``ignore_index`` of the class-target losses (PyTorch's).
IGNORE_INDEX = -100


def _f64(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    return x.astype(F64)


# ---------------------------------------------------------------------------- primitives


def _shifted(z: np.ndarray):
    """``(m, d, log_s)`` over the last axis: the max, ``d = z - m`` (IEEE: NaN for
    ``inf - inf``) and ``log(sum(exp(d)))`` as ``log1p`` of the sum without the
    maximum's own exact 1 (kept in the sum when the max is not finite)."""
    m = np.max(z, axis=-1, keepdims=True)  # NaN if the row holds NaN
    d = z - m
    e = np.exp(d)
    top = np.argmax(z, axis=-1)[..., None]
    np.put_along_axis(e, top, np.where(np.isfinite(m), 0, np.take_along_axis(e, top, -1)), -1)
    return m, d, np.log1p(np.sum(e, axis=-1, keepdims=True))


def _lse_last(z: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis (torch: +inf row -> +inf, all -inf -> -inf, NaN -> NaN)."""
    if z.shape[-1] == 0:
        return np.full(z.shape[:-1], -np.inf, dtype=F64)
    with np.errstate(all="ignore"):
        m, _, log_s = _shifted(z)
        return np.where(np.isfinite(m), m + log_s, m)[..., 0]


def _log_softmax_last(z: np.ndarray) -> np.ndarray:
    """``(z - max) - log(sum)``: a row with +inf or NaN, or of only -inf, is all NaN
    (IEEE on ``z - max``, as torch)."""
    if z.shape[-1] == 0:
        return z.copy()
    with np.errstate(all="ignore"):
        _, d, log_s = _shifted(z)
        return d - log_s


def _along_last(fn, x, axis):
    z = _f64(x)
    if z.ndim == 0:
        return fn(z.reshape(1)).reshape(())
    return np.moveaxis(fn(np.moveaxis(z, axis, -1)), -1, axis)


def logsumexp(x, axis=-1, keepdims=False) -> np.ndarray:
    """torch.logsumexp semantics; an empty axis gives -inf, a 0-d input itself."""
    z = _f64(x)
    if z.ndim == 0:
        return z.astype(np.float64)
    out = _lse_last(np.moveaxis(z, axis, -1))
    if keepdims:
        out = np.expand_dims(out, axis)
    return out.astype(np.float64)


def log_softmax(x, axis=-1) -> np.ndarray:
    return _along_last(_log_softmax_last, x, axis).astype(np.float64)


def softmax(x, axis=-1) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.exp(_along_last(_log_softmax_last, x, axis)).astype(np.float64)


# ---------------------------------------------------------------------------- losses


class Rows(NamedTuple):
    """The unreduced pieces of a loss (float64).

    loss:  the ``reduction="none"`` result;
    grad:  d loss[i] / d input, shape of the first argument (for the row losses, row i
           of ``grad`` is the gradient of ``loss[i]``; for the elementwise losses,
           element by element);
    denom: the divisor of each averaging reduction, e.g. ``{"mean": ...}``;
    keep:  the rows whose gradient may be nonzero (ignored targets: exactly zero),
           or None.
    """

    loss: np.ndarray
    grad: np.ndarray
    denom: dict
    keep: Optional[np.ndarray]  # noqa: UP045 - NamedTuple on Python 3.9


def _class_targets(target, n, c, ignore_index):
    t = np.asarray(target).astype(np.int64).reshape(n)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= c))
    if bad.any():
        raise IndexError(f"target {t[bad][0]} out of range for {c} classes")
    return np.where(keep, t, 0), keep


def _one_minus_p(logp, onehot):
    """``onehot - p`` with the target's ``1 - p`` as ``-expm1(log p)`` (no cancellation)."""
    return np.where(onehot, -np.expm1(logp), -np.exp(logp))


def _cross_entropy_rows(logits, target, *, weight=None, ignore_index=-100,
                        label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None):
    """API.md "Softmax cross-entropy", per row (PyTorch's formulas).

    Class target y: ``(1-eps) w_y (-logp_y) + eps/C sum_c w_c (-logp_c)`` (the smoothing
    term only when eps > 0, as PyTorch) ``+ z w_y lse**2``; probabilities q:
    ``-sum_c w_c ((1-eps) q_c + eps/C) logp_c + z lse**2``; then times sample_weight.
    Logits are first capped to ``s tanh(x/s)`` (derivative ``1/cosh(x/s)**2``).  "mean"
    divides by ``sum(sample_weight * w_y)`` over non-ignored rows (probabilities: the
    number of rows, or ``sum(sample_weight)``).
    """
    x = _f64(logits)
    if x.ndim == 0:
        raise ValueError("logits must have a class axis")
    c = x.shape[-1]
    lead = x.shape[:-1]
    x = x.reshape(-1, c)
    n = x.shape[0]
    t = np.asarray(target)
    soft = t.dtype.kind == "f"
    eps = F64(label_smoothing)
    w = np.ones(c, dtype=F64) if weight is None else _f64(weight).reshape(c)
    sw = np.ones(n, dtype=F64) if sample_weight is None else _f64(sample_weight).reshape(n)
    with np.errstate(all="ignore"):
        if softcap is None:
            z, dz = x, F64(1)
        else:
            s = F64(softcap)
            z, dz = s * np.tanh(x / s), 1 / np.cosh(x / s) ** 2
        lse = _lse_last(z)
        logp = _log_softmax_last(z)
        p = np.exp(logp)
        if soft:
            q = _f64(t).reshape(n, c) * (1 - eps) + eps / c
            keep = np.ones(n, dtype=bool)
            w_row = np.ones(n, dtype=F64)
            row = -np.sum(w * q * logp, axis=1)
            g = np.sum(w * q, axis=1, keepdims=True) * p - w * q
        else:
            safe, keep = _class_targets(t, n, c, ignore_index)
            w_row = np.where(keep, w[safe], F64(0))
            onehot = np.arange(c) == safe[:, None]
            row = (1 - eps) * w_row * -logp[np.arange(n), safe]
            g = -(1 - eps) * w_row[:, None] * _one_minus_p(logp, onehot)
            if eps:  # as torch: no smoothing term when eps == 0 (0 * inf for -inf logits)
                row = row + (eps / c) * -np.sum(w * logp, axis=1)
                g = g + (eps / c) * (np.sum(w) * p - w)
        if z_loss:
            row = row + F64(z_loss) * w_row * lse * lse
            g = g + (2 * F64(z_loss) * w_row * lse)[:, None] * p
        row = np.where(keep, sw * row, F64(0))
        g = np.where(keep[:, None], sw[:, None] * g * dz, F64(0))
        denom = F64(n) if soft and sample_weight is None else np.sum(
            np.where(keep, sw * w_row, F64(0)))
    return Rows(row.reshape(lead), g.reshape(lead + (c,)), {"mean": denom},
                None if soft else keep.reshape(lead))


def _nll_loss_rows(log_probs, target, *, weight=None, ignore_index=-100):
    """F.nll_loss: ``-w_y lp_y`` per row; "mean" divides by the summed ``w_y``."""
    lp = _f64(log_probs)
    c = lp.shape[-1]
    lr = lp.reshape(-1, c)
    n = lr.shape[0]
    w = np.ones(c, dtype=F64) if weight is None else _f64(weight).reshape(c)
    safe, keep = _class_targets(target, n, c, ignore_index)
    w_row = np.where(keep, w[safe], F64(0))
    with np.errstate(all="ignore"):
        loss = np.where(keep, -w_row * lr[np.arange(n), safe], F64(0))
    grad = np.zeros((n, c), dtype=F64)
    grad[np.arange(n), safe] = -w_row
    return Rows(loss.reshape(lp.shape[:-1]), grad.reshape(lp.shape), {"mean": np.sum(w_row)},
                keep.reshape(lp.shape[:-1]))


def _focal_loss_rows(logits, target, *, gamma=2.0, alpha=None, ignore_index=-100):
    """``-alpha_y (1-p_y)**gamma log p_y`` (Lin et al.); "mean" over non-ignored rows.

    Gradient ``alpha_y [gamma (1-p)**(gamma-1) p log p - (1-p)**gamma] (onehot - p)``,
    with the bracket's first term at its limit 0 where ``p_y`` is 0 or 1 (PyTorch's
    autograd gives NaN there).
    """
    x = _f64(logits)
    c = x.shape[-1]
    n = x.size // c if c else 0
    safe, keep = _class_targets(target, n, c, ignore_index)
    if alpha is None:
        a = np.ones(n, dtype=F64)
    elif np.ndim(alpha) == 0:
        a = np.full(n, F64(alpha))
    else:
        a = _f64(alpha)[safe]
    gamma = F64(gamma)
    with np.errstate(all="ignore"):
        logp = _log_softmax_last(x.reshape(n, c))
        lpt = logp[np.arange(n), safe]
        pt = np.exp(lpt)
        one_m = -np.expm1(lpt)
        mod = one_m**gamma if gamma else np.ones(n, dtype=F64)
        inner = (pt > 0) & (one_m > 0)
        dterm = np.where(inner, gamma * one_m ** (gamma - 1) * pt * lpt, F64(0))
        k = a * (dterm - mod)
        grad = k[:, None] * _one_minus_p(logp, np.arange(c) == safe[:, None])
        grad = np.where(keep[:, None], grad, F64(0))
        loss = np.where(keep, -a * mod * lpt, F64(0))
    return Rows(loss.reshape(x.shape[:-1]), grad.reshape(x.shape),
                {"mean": F64(np.sum(keep))}, keep.reshape(x.shape[:-1]))


def _sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)), each without cancellation."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        big = 1 / (1 + e)
        small = e / (1 + e)
        pos = x >= 0
        return np.where(pos, big, small), np.where(pos, small, big)


def _binary_cross_entropy_with_logits_rows(logits, target, *, weight=None, pos_weight=None):
    """F.binary_cross_entropy_with_logits, elementwise; "mean" over all elements."""
    x = _f64(logits)
    y = _f64(target)
    pw = F64(1) if pos_weight is None else _f64(pos_weight)
    w = F64(1) if weight is None else _f64(weight)
    with np.errstate(all="ignore"):
        lw = 1 + (pw - 1) * y
        softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # -log sigmoid(x)
        loss = w * ((1 - y) * x + lw * softplus_neg)
        grad = w * ((1 - y) - lw * _sigmoid_pair(x)[1])
    return Rows(np.broadcast_to(loss, x.shape), np.broadcast_to(grad, x.shape),
                {"mean": F64(x.size)}, None)


def _binary_cross_entropy_rows(probs, target, *, weight=None):
    """F.binary_cross_entropy: log terms clamped at -100; its backward divides by
    ``max((1-p) p, EPSILON)``, EPSILON the float constant 1e-12 (PyTorch's Loss.cpp)."""
    p = _f64(probs)
    y = _f64(target)
    w = F64(1) if weight is None else _f64(weight)
    with np.errstate(all="ignore"):
        loss = -w * (y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
        grad = w * (p - y) / np.maximum((1 - p) * p, F64(float(np.float32(1e-12))))
    return Rows(np.broadcast_to(loss, p.shape), np.broadcast_to(grad, p.shape),
                {"mean": F64(p.size)}, None)


def _sigmoid_focal_loss_rows(logits, target, *, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss: ``alpha_t (1-p_t)**gamma BCE``, with
    ``1 - p_t = y sigmoid(-x) + (1-y) sigmoid(x)`` (no cancellation); "mean" over all
    elements; ``alpha < 0`` disables the alpha term."""
    x = _f64(logits)
    y = _f64(target)
    gamma = F64(gamma)
    with np.errstate(all="ignore"):
        p, p_neg = _sigmoid_pair(x)
        ce = (1 - y) * x + np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
        dce = (1 - y) - p_neg
        om = y * p_neg + (1 - y) * p
        mod = om**gamma if gamma else np.ones_like(x)
        dpt = (2 * y - 1) * p * p_neg
        dmod = np.where(om > 0, -gamma * om ** (gamma - 1) * dpt, F64(0)) if gamma else F64(0)
        loss = ce * mod
        grad = dce * mod + ce * dmod
        if alpha >= 0:
            at = F64(alpha) * y + (1 - F64(alpha)) * (1 - y)
            loss, grad = at * loss, at * grad
    return Rows(loss, grad, {"mean": F64(x.size)}, None)


def _kl_div_with_logits_rows(student_logits, teacher_logits, *, temperature=1.0):
    """``T**2 KL(softmax(t/T) || softmax(s/T))`` per row, PyTorch's pointwise
    ``xlogy(q, q) - q log p`` (0 where q == 0, NaN for 0 * -inf); "batchmean" divides
    by the number of rows, "mean" by the number of elements."""
    s = _f64(student_logits)
    t = _f64(teacher_logits)
    tt = F64(temperature)
    with np.errstate(all="ignore"):
        lp = _log_softmax_last(s / tt)
        lq = _log_softmax_last(t / tt)
        q = np.exp(lq)
        loss = tt * tt * np.sum(np.where(q == 0, F64(0), q * lq) - q * lp, axis=-1)
        grad = tt * (np.exp(lp) - q)
    c = s.shape[-1]
    return Rows(loss, grad, {"batchmean": F64(s.size // c if c else 0), "mean": F64(s.size)},
                None)


def _forms(rows_fn: Callable, default_reduction: str = "mean", per_row: bool = True):
    """The three public forms of a loss from its Rows function."""

    def reduce(r: Rows, reduction: str):
        if reduction == "none":
            return r.loss.astype(np.float64)
        total = np.sum(r.loss)
        if reduction == "sum":
            return np.float64(total)
        if reduction not in r.denom:
            raise ValueError(f"unknown reduction {reduction!r}")
        with np.errstate(all="ignore"):
            return np.float64(total / r.denom[reduction])  # 0 / 0: NaN, a mean over nothing

    def scale_grad(r: Rows, reduction: str, grad_output):
        go = _f64(grad_output)
        with np.errstate(all="ignore"):
            if reduction in r.denom:
                go = go / r.denom[reduction]
            elif reduction not in ("none", "sum"):
                raise ValueError(f"unknown reduction {reduction!r}")
            if reduction == "none" and go.ndim:
                go = go.reshape(r.loss.shape)
            g = r.grad * (go[..., None] if per_row and go.ndim else go)
        if r.keep is not None:
            g = np.where(r.keep[..., None], g, F64(0))  # exactly zero, whatever 1/denom is
        return g.astype(np.float64)

    def loss(x, target, *, reduction=default_reduction, **options):
        return reduce(rows_fn(x, target, **options), reduction)

    def grad(x, target, grad_output=1.0, *, reduction=default_reduction, **options):
        return scale_grad(rows_fn(x, target, **options), reduction, grad_output)

    def and_grad(x, target, *, reduction=default_reduction, grad_output=1.0, **options):
        r = rows_fn(x, target, **options)
        return reduce(r, reduction), scale_grad(r, reduction, grad_output)

    name = rows_fn.__name__[1:-len("_rows")]
    for f, suffix in ((loss, ""), (grad, "_grad"), (and_grad, "_and_grad")):
        f.__name__ = f.__qualname__ = name + suffix
        f.__doc__ = f"Reference of xent.{name}{suffix}: {rows_fn.__doc__.splitlines()[0]}"
    return loss, grad, and_grad


cross_entropy, cross_entropy_grad, cross_entropy_and_grad = _forms(_cross_entropy_rows)
nll_loss, nll_loss_grad, nll_loss_and_grad = _forms(_nll_loss_rows)
focal_loss, focal_loss_grad, focal_loss_and_grad = _forms(_focal_loss_rows)
(binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_grad,
 binary_cross_entropy_with_logits_and_grad) = _forms(
    _binary_cross_entropy_with_logits_rows, per_row=False)
binary_cross_entropy, binary_cross_entropy_grad, binary_cross_entropy_and_grad = _forms(
    _binary_cross_entropy_rows, per_row=False)
sigmoid_focal_loss, sigmoid_focal_loss_grad, sigmoid_focal_loss_and_grad = _forms(
    _sigmoid_focal_loss_rows, default_reduction="none", per_row=False)
kl_div_with_logits, kl_div_with_logits_grad, kl_div_with_logits_and_grad = _forms(
    _kl_div_with_logits_rows, default_reduction="batchmean")

_ROWS = {f.__name__[1:-len("_rows")]: f for f in (
    _cross_entropy_rows, _nll_loss_rows, _focal_loss_rows,
    _binary_cross_entropy_with_logits_rows, _binary_cross_entropy_rows,
    _sigmoid_focal_loss_rows, _kl_div_with_logits_rows)}
#: The loss families; each has NAME, NAME_grad and NAME_and_grad here and in xent.
LOSSES = tuple(_ROWS)


def rows(name: str, *args, **options) -> Rows:
    """The unreduced pieces (:class:`Rows`) of loss `name` ("cross_entropy", ...)."""
    return _ROWS[name](*args, **options)


# ---------------------------------------------------------------------------- metrics


def perplexity(logits, target, *, ignore_index=-100) -> np.float64:
    """``exp(cross_entropy(..., reduction="mean"))``, NaN over zero targets."""
    r = _cross_entropy_rows(logits, target, ignore_index=ignore_index)
    with np.errstate(all="ignore"):
        return np.float64(np.exp(np.sum(r.loss) / r.denom["mean"]))


def expected_calibration_error(logits, target, *, n_bins=15, ignore_index=-100) -> np.float64:
    """Top-1 ECE over ``n_bins`` equal bins ``(lo, hi]`` of the confidence max(softmax)
    (ties for the top class: the lower index), weighted by bin size, over the
    non-ignored rows; NaN when there are none or a confidence is NaN."""
    x = _f64(logits)
    c = x.shape[-1]
    xr = x.reshape(-1, c)
    safe, keep = _class_targets(target, xr.shape[0], c, ignore_index)
    with np.errstate(all="ignore"):
        conf = np.exp(np.max(_log_softmax_last(xr), axis=1))[keep].astype(np.float64)
    pred = np.argmax(xr, axis=1)[keep]
    if conf.size == 0 or np.isnan(conf).any():
        return np.float64(np.nan)
    acc = (pred == safe[keep]).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = (conf > lo) & (conf <= hi)
        if inb.any():
            total += inb.sum() * abs(acc[inb].mean() - conf[inb].mean())
    return np.float64(total / conf.size)


class TokenScores(NamedTuple):
    """The fields of ``xent.TokenScores``, in its order (float64 / int64)."""

    logsumexp: np.ndarray
    entropy: np.ndarray
    logprob: Optional[np.ndarray]  # noqa: UP045 - NamedTuple on Python 3.9
    rank: Optional[np.ndarray]  # noqa: UP045
    top_logprobs: np.ndarray
    top_indices: np.ndarray


def top_k_order(s: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest along the last axis: descending, NaN first, ties by the
    lower index."""
    c = s.shape[-1]
    nan = np.isnan(s)
    idx = np.broadcast_to(np.arange(c), s.shape)
    neg = np.where(nan, 0, -s)  # no arithmetic on NaN / inf beyond negation
    return np.lexsort((idx, neg, ~nan), axis=-1)[..., :k].astype(np.int64)


def token_scores(logits, target=None, *, top_k=0, temperature=1.0,
                 ignore_index=-100) -> TokenScores:
    """Every field on ``s = logits / temperature``, the division rounded to the
    computation dtype (float16 -> float32) as xent evaluates it.  Entropy counts
    ``0 log 0`` as 0; ignored targets get logprob NaN and rank -1."""
    x = np.asarray(logits)
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    s = x if temperature == 1.0 else x / x.dtype.type(temperature)
    c = s.shape[-1]
    lead = s.shape[:-1]
    sr = _f64(s).reshape(-1, c)
    with np.errstate(all="ignore"):
        lse = _lse_last(sr)
        lp = _log_softmax_last(sr)
        p = np.exp(lp)
        ent = -np.sum(np.where(p == 0, F64(0), p * lp), axis=1)
    logprob = rank = None
    if target is not None:
        safe, keep = _class_targets(target, sr.shape[0], c, ignore_index)
        rows_ = np.arange(sr.shape[0])
        logprob = np.where(keep, lp[rows_, safe], np.nan).astype(np.float64).reshape(lead)
        higher = np.sum(sr > sr[rows_, safe][:, None], axis=1)
        rank = np.where(keep, 1 + higher, -1).astype(np.int64).reshape(lead)
    order = top_k_order(sr, top_k)
    return TokenScores(lse.astype(np.float64).reshape(lead), ent.astype(np.float64).reshape(lead),
                       logprob, rank,
                       np.take_along_axis(lp, order, axis=1).astype(np.float64).reshape(
                           lead + (top_k,)), order.reshape(lead + (top_k,)))
