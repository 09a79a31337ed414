"""Independent float64 NumPy references for every public xent function (fuzz tests).

Written from /work/shared/API.md (and PyTorch's CPU formulas where the contract defers
to them), without calling xent.  Functions not yet in xent (focal_loss, the binary
losses, kl_div_with_logits, expected_calibration_error, token_scores) have references
here too, so the fuzz tests cover them as soon as they are merged.

Every reference takes the already-validated inputs (so no error handling here) and
returns ``(loss, grad)`` for the losses, where ``loss`` is per-row (before reduction)
and ``grad`` is d(per-row loss)/d(first argument) per row; :func:`reduce_loss` and
:func:`reduce_grad` apply the reduction and ``grad_output``.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------- primitives


def logsumexp(x, axis=-1, keepdims=False):
    """torch.logsumexp semantics: +inf (no NaN) -> +inf, all -inf -> -inf, NaN -> NaN."""
    x = np.asarray(x, dtype=np.float64)
    x = np.moveaxis(x.reshape(1) if x.ndim == 0 else x, axis, -1)
    with np.errstate(all="ignore"):
        if x.shape[-1] == 0:
            r = np.full(x.shape[:-1], -np.inf)
        else:
            m = np.max(np.where(np.isnan(x), -np.inf, x), axis=-1)
            finite_m = np.where(np.isfinite(m), m, 0.0)
            r = finite_m + np.log(np.sum(np.exp(x - finite_m[..., None]), axis=-1))
            r = np.where(m == np.inf, np.inf, r)
            r = np.where(m == -np.inf, -np.inf, r)
            r = np.where(np.isnan(x).any(axis=-1), np.nan, r)
    return r


def log_softmax(x, axis=-1):
    """PyTorch order of operations; a row with +inf, NaN or only -inf is all NaN."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return log_softmax(x.reshape(1), 0).reshape(())
    xm = np.moveaxis(x, axis, -1)
    if xm.shape[-1] == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        m = np.max(np.where(np.isnan(xm), -np.inf, xm), axis=-1, keepdims=True)
        s = xm - m
        r = s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))
        bad = (m == np.inf) | (m == -np.inf) | np.isnan(xm).any(axis=-1, keepdims=True)
        r = np.where(bad, np.nan, r)
    return np.moveaxis(r, -1, axis)


def softmax(x, axis=-1):
    with np.errstate(all="ignore"):
        return np.exp(log_softmax(x, axis))


# ---------------------------------------------------------------------------- reductions


def reduce_loss(rows, reduction, denom):
    """rows: per-row losses (float64); denom: the "mean" denominator."""
    if reduction == "none":
        return rows
    with np.errstate(all="ignore"):
        total = np.sum(rows, dtype=np.float64)
        if reduction == "sum":
            return total
        return np.float64(total) / np.float64(denom)


def grad_scale(reduction, grad_output, denom, lead_shape):
    """Per-row multiplier of the per-row gradients, shape lead_shape."""
    g = np.asarray(grad_output, dtype=np.float64)
    with np.errstate(all="ignore"):
        if reduction == "mean":
            g = g / np.float64(denom)
    return np.broadcast_to(g, lead_shape)


# ---------------------------------------------------------------------------- losses


def _softcap(x, cap):
    if cap is None:
        return x, np.ones_like(x)
    t = np.tanh(x / cap)
    return cap * t, 1.0 - t * t


def cross_entropy(x, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                  z_loss=0.0, softcap=None, sample_weight=None):
    """Returns (per-row loss, per-row grad, mean denominator); PyTorch's formulas.

    Class targets: loss_i = (1-eps) w_t (-logp_t) + eps/C sum_c w_c (-logp_c)
    (the smoothing term only when eps > 0, as PyTorch) + z w_t lse^2, times sample
    weight; "mean" divides by sum_i sw_i w_t over non-ignored rows.
    Probability targets q: loss_i = -sum_c w_c q'_c logp_c, q' = (1-eps) q + eps/C,
    "mean" divides by the number of rows (or the summed sample weights).
    """
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    lead = x.shape[:-1]
    xr = x.reshape(-1, c)
    n = xr.shape[0]
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    sw = np.ones(n) if sample_weight is None else np.asarray(
        sample_weight, dtype=np.float64).reshape(-1)
    eps = float(label_smoothing)
    with np.errstate(all="ignore"):
        xc, dcap = _softcap(xr, softcap)
        lse = logsumexp(xc)
        logp = log_softmax(xc)
        p = np.exp(logp)
        soft = np.asarray(target).dtype.kind == "f"
        loss = np.zeros(n)
        grad = np.zeros((n, c))
        if soft:
            q = np.asarray(target, dtype=np.float64).reshape(-1, c)
            qs = (1.0 - eps) * q + eps / c
            wq = w * qs
            loss = -np.sum(np.where(wq == 0, 0.0, wq * logp), axis=1) + z_loss * lse**2
            grad = np.sum(wq, axis=1, keepdims=True) * p - wq + (2 * z_loss * lse)[:, None] * p
            keep = np.ones(n, dtype=bool)
            wt = np.ones(n)
        else:
            t = np.asarray(target).reshape(-1).astype(np.int64)
            keep = t != ignore_index
            ts = np.where(keep, t, 0)
            wt = np.where(keep, w[ts], 0.0)
            lp_t = logp[np.arange(n), ts]
            loss = (1.0 - eps) * wt * (-lp_t) + z_loss * wt * lse**2
            onehot = np.zeros((n, c))
            onehot[np.arange(n), ts] = 1.0
            grad = (1.0 - eps) * wt[:, None] * (p - onehot) + (2 * z_loss * wt * lse)[:, None] * p
            if eps > 0:
                loss = loss + eps / c * (-np.sum(w * logp, axis=1))
                grad = grad + eps / c * (np.sum(w) * p - w)
            loss = np.where(keep, loss, 0.0)
            grad = np.where(keep[:, None], grad, 0.0)
        loss = loss * sw
        grad = grad * sw[:, None] * dcap
        grad = np.where(keep[:, None], grad, 0.0)
        denom = np.sum(np.where(keep, sw * wt, 0.0))
    return loss.reshape(lead), grad.reshape(x.shape), denom


def nll_loss(lp, target, *, weight=None, ignore_index=-100):
    lp = np.asarray(lp, dtype=np.float64)
    c = lp.shape[-1]
    lr = lp.reshape(-1, c)
    n = lr.shape[0]
    w = np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    keep = t != ignore_index
    ts = np.where(keep, t, 0)
    wt = np.where(keep, w[ts], 0.0)
    with np.errstate(all="ignore"):
        loss = np.where(keep, -wt * lr[np.arange(n), ts], 0.0)
    grad = np.zeros((n, c))
    grad[np.arange(n), ts] = -wt
    return loss.reshape(lp.shape[:-1]), grad.reshape(lp.shape), np.sum(wt)


def perplexity(x, target, *, ignore_index=-100):
    loss, _, denom = cross_entropy(x, target, ignore_index=ignore_index)
    with np.errstate(all="ignore"):
        return np.exp(np.sum(loss) / denom)


def focal_loss(x, target, *, gamma=2.0, alpha=None, ignore_index=-100):
    """-alpha_t (1-p_t)^gamma log p_t; "mean" divides by the non-ignored count."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    xr = x.reshape(-1, c)
    n = xr.shape[0]
    t = np.asarray(target).reshape(-1).astype(np.int64)
    keep = t != ignore_index
    ts = np.where(keep, t, 0)
    if alpha is None:
        a = np.ones(n)
    elif np.ndim(alpha) == 0:
        a = np.full(n, float(alpha))
    else:
        a = np.asarray(alpha, dtype=np.float64)[ts]
    with np.errstate(all="ignore"):
        logp = log_softmax(xr)
        p = np.exp(logp)
        lpt = logp[np.arange(n), ts]
        pt = np.exp(lpt)
        one_m = -np.expm1(lpt)
        mod = one_m**gamma if gamma != 0 else np.ones(n)
        loss = -a * mod * lpt
        # d loss / d p_t * p_t = a * [gamma (1-p)^(gamma-1) p log p - (1-p)^gamma]
        if gamma == 0:
            dterm = np.zeros(n)
        else:
            dterm = np.where(one_m > 0, gamma * one_m ** (gamma - 1) * pt * lpt, 0.0)
        k = a * (dterm - mod)  # grad_j = k * (delta_tj - p_j)
        onehot = np.zeros((n, c))
        onehot[np.arange(n), ts] = 1.0
        grad = k[:, None] * (onehot - p)
    loss = np.where(keep, loss, 0.0)
    grad = np.where(keep[:, None], grad, 0.0)
    return loss.reshape(x.shape[:-1]), grad.reshape(x.shape), np.sum(keep)


def binary_cross_entropy_with_logits(x, y, *, weight=None, pos_weight=None):
    """Elementwise; "mean" divides by the number of elements."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    with np.errstate(all="ignore"):
        lw = 1.0 + (pw - 1.0) * y
        sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0.0)  # softplus(-x)
        loss = w * ((1.0 - y) * x + lw * sp)
        sig_neg = 0.5 * (1.0 - np.tanh(0.5 * x))  # sigmoid(-x)
        grad = w * ((1.0 - y) - lw * sig_neg)
    return np.broadcast_to(loss, x.shape), np.broadcast_to(grad, x.shape), x.size


def sigmoid_focal_loss(x, y, *, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss; "mean" over all elements."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(all="ignore"):
        p = 0.5 * (1.0 + np.tanh(0.5 * x))
        ce, dce, _ = binary_cross_entropy_with_logits(x, y)
        pt = p * y + (1 - p) * (1 - y)
        om = 1.0 - pt
        mod = om**gamma if gamma != 0 else np.ones_like(x)
        dpt = (2 * y - 1) * p * (1 - p)
        if gamma == 0:
            dmod = np.zeros_like(x)
        else:
            dmod = np.where(om > 0, -gamma * om ** (gamma - 1) * dpt, 0.0)
        loss = ce * mod
        grad = dce * mod + ce * dmod
        if alpha >= 0:
            at = alpha * y + (1 - alpha) * (1 - y)
            loss = at * loss
            grad = at * grad
    return loss, grad, x.size


def kl_div_with_logits(s, t, *, temperature=1.0):
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per row; "batchmean" / rows, "mean" / N*C."""
    s = np.asarray(s, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    tt = float(temperature)
    with np.errstate(all="ignore"):
        lp = log_softmax(s / tt)
        lq = log_softmax(t / tt)
        q = np.exp(lq)
        loss = tt * tt * np.sum(np.where(q > 0, q * (lq - lp), 0.0), axis=-1)
        grad = tt * (np.exp(lp) - q)
    return loss, grad, s.size


def binary_cross_entropy(p, y, *, weight=None):
    """F.binary_cross_entropy: log terms clamped at -100; grad as PyTorch's backward."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    with np.errstate(all="ignore"):
        lp = np.maximum(np.log(p), -100.0)
        l1p = np.maximum(np.log1p(-p), -100.0)
        loss = -w * (y * lp + (1 - y) * l1p)
        # PyTorch's backward clamps at EPSILON, a *float* constant 1e-12 (Loss.cpp)
        grad = w * (p - y) / np.maximum((1 - p) * p, float(np.float32(1e-12)))
    return np.broadcast_to(loss, p.shape), np.broadcast_to(grad, p.shape), p.size


# ---------------------------------------------------------------------------- metrics


def ece_confidences(x):
    """(confidence, predicted class) per row, float64 (ties -> lower index)."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    xr = x.reshape(-1, c)
    pr = softmax(xr)
    pred = np.argmax(xr, axis=1)
    return pr[np.arange(xr.shape[0]), pred], pred


def expected_calibration_error(x, target, *, n_bins=15, ignore_index=-100):
    conf, pred = ece_confidences(x)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    keep = t != ignore_index
    conf, pred, t = conf[keep], pred[keep], t[keep]
    if conf.size == 0:
        return np.float64(np.nan)
    acc = (pred == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds (edges[b], edges[b+1]]; a confidence of exactly 0 cannot occur
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    total = 0.0
    for k in range(n_bins):
        m = b == k
        if m.any():
            total += abs(acc[m].mean() - conf[m].mean()) * m.sum()
    return np.float64(total / conf.size)


def token_scores(x, target=None, *, top_k=0, temperature=1.0, ignore_index=-100):
    """Dict of the TokenScores fields (float64), computed on x / temperature."""
    x = np.asarray(x, dtype=np.float64) / float(temperature)
    c = x.shape[-1]
    lead = x.shape[:-1]
    xr = x.reshape(-1, c)
    n = xr.shape[0]
    with np.errstate(all="ignore"):
        lse = logsumexp(xr)
        lp = log_softmax(xr)
        p = np.exp(lp)
        ent = -np.sum(np.where(p > 0, p * lp, 0.0), axis=1)
    out = {"logsumexp": lse.reshape(lead), "entropy": ent.reshape(lead)}
    if target is None:
        out["logprob"] = None
        out["rank"] = None
    else:
        t = np.asarray(target).reshape(-1).astype(np.int64)
        keep = t != ignore_index
        ts = np.where(keep, t, 0)
        out["logprob"] = np.where(keep, lp[np.arange(n), ts], np.nan).reshape(lead)
        xt = xr[np.arange(n), ts]
        rank = 1 + np.sum(xr > xt[:, None], axis=1)
        out["rank"] = np.where(keep, rank, -1).reshape(lead)
    order = np.argsort(-xr, axis=1, kind="stable")[:, :top_k]
    out["top_indices"] = order.reshape(lead + (top_k,))
    out["top_logprobs"] = np.take_along_axis(lp, order, axis=1).reshape(lead + (top_k,))
    return out
