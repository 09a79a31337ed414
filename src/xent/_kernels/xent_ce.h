/*
 * xent_ce.h -- softmax cross-entropy: loss, gradient, or both in one pass per row.
 *
 * Design
 * - Phase 0 reads only the targets: counts targets outside [0, C) that are not
 *   ignore_index (the call then returns that count and writes nothing at all),
 *   and sums the "mean" denominator sum_i sample_weight_i * weight[t_i] in fixed
 *   blocks, so the gradient scale is known before any gradient is written.
 * - Per row: m = max, s = sum exp(x - m) (float lanes per chunk, double across
 *   chunks) with the exact 1's of the maxima kept out of the lanes, so that
 *   rest = s - 1 is accurate; lse = m + log1p(rest) and the class-target loss
 *   (m - x_t) + log1p(rest) in double, the target's gradient entry in double from
 *   p_t - 1 = -rest / s (confident rows keep their relative accuracy).
 *   Forward-only and fused calls run the very same statistics code, so their
 *   losses are bitwise equal.
 * - Fused gradient: in place (grad == logits) the exponentials are kept in the row
 *   and rescaled (one exp per element, the row stays in L2); into a separate
 *   buffer they are recomputed and written with streaming stores (no read for
 *   ownership of the destination).
 * - Ignored rows cost the target read and, when a gradient is asked for, a zeroed row.
 * - Per-row losses are written in double and summed after the parallel loop in a
 *   fixed order: results do not depend on the thread count.
 *
 * Loss of a row with class target t (PyTorch's formulas, plus z-loss and softcap):
 *   L = sw * [ (1-eps) w_t (lse - x_t) + eps/C * sum_j w_j (lse - x_j) + z w_t lse^2 ]
 * and with probability targets q (q' = (1-eps) q + eps/C):
 *   L = sw * [ sum_j w_j q'_j (lse - x_j) + z lse^2 ]
 * with x replaced by cap*tanh(x/cap) when softcap is on (the gradient is then
 * multiplied by 1 - tanh^2, the derivative of the cap).
 */
#ifndef XENT_CE_H
#define XENT_CE_H

#include "xent_rowops.h"

typedef XENT_ARGS(xent_ce_args) xent_ce_args_t;

/* Phase 0: bad-target count and the mean denominator (deterministic blocks). */
static int64_t ce_scan_targets(const int64_t *t, int64_t n, int64_t c, const xent_ce_args_t *a,
                               int n_threads, double *denom)
{
    enum { MAX_BLOCKS = 64 };
    double part[MAX_BLOCKS];
    int64_t bsize = n / MAX_BLOCKS + 1, nb, b, bad = 0;
    double d = 0.0;
    int nt;
    if (bsize < 8192) bsize = 8192;
    nb = (n + bsize - 1) / bsize;
    nt = xent_threads_for(n * 4, nb, n_threads);
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1) reduction(+:bad))
    for (b = 0; b < nb; ++b) {
        const int64_t lo = b * bsize, hi = (lo + bsize < n) ? lo + bsize : n;
        int64_t i, nbad = 0;
        double acc = 0.0;
        for (i = lo; i < hi; ++i) {
            const int64_t ti = t[i];
            if (ti == a->ignore_index) continue;
            if ((uint64_t)ti >= (uint64_t)c) { ++nbad; continue; }
            acc += (a->weight ? (double)a->weight[ti] : 1.0) *
                   (a->sample_weight ? (double)a->sample_weight[i] : 1.0);
        }
        part[b] = acc;
        bad += nbad;
    }
    for (b = 0; b < nb; ++b) d += part[b];
    *denom = d;
    return bad;
}

/* Scalar cap of one element, by the same vector code as the row loops. */
XENT_INLINE XENT_T ce_cap1(XENT_T x, XENT_T cap)
{
    XENT_T out;
    xv_store_part(&out, xv_cap(xv_set1(x), cap), 1);
    return out;
}

/*
 * General gradient writer (softcap and/or probability targets):
 *   out_j = (a * exp(L_j - m) + (b + bq * q_j) * v_j) * D_j
 * with v = weight (1 if NULL), q = targets (absent if NULL) and
 * D_j = 1 - (L_j / cap)^2 when cap > 0 (L then holds capped logits), else 1.
 * L may alias out.
 */
static void ce_write_grad_general(const XENT_T *L, int64_t n, XENT_T m, XENT_T a, XENT_T b,
                                  XENT_T bq, const XENT_T *XENT_RESTRICT v,
                                  const XENT_T *XENT_RESTRICT q, XENT_T cap, XENT_T *out)
{
    const xv vm = xv_set1(m), va = xv_set1(a), vb = xv_set1(b), vbq = xv_set1(bq);
    const xv inv = xv_set1(cap > 0 ? (XENT_T)1 / cap : (XENT_T)0), one = xv_set1((XENT_T)1);
    int64_t i;
    for (i = 0; i < n; i += XV_N) {
        const int64_t k = n - i;
        const int full = k >= XV_N;
        xv l = full ? xv_loadu(L + i) : xv_load_part(L + i, k, 0);
        xv coef = vb;
        xv r;
        if (q) coef = xv_fmadd(vbq, full ? xv_loadu(q + i) : xv_load_part(q + i, k, 0), coef);
        if (v) coef = xv_mul(coef, full ? xv_loadu(v + i) : xv_load_part(v + i, k, 0));
        r = xv_fmadd(va, xv_exp(xv_sub(l, vm)), coef);
        if (cap > 0) {
            xv u = xv_mul(l, inv);
            r = xv_mul(r, xv_fnmadd(u, u, one));
        }
        if (full) xv_storeu(out + i, r);
        else xv_store_part(out + i, r, k);
    }
}

/* out_j = cap * tanh(x_j / cap) (out may alias x). */
static void ce_store_capped(const XENT_T *x, int64_t n, XENT_T cap, XENT_T *out)
{
    int64_t i = 0;
    for (; i + XV_N <= n; i += XV_N) xv_storeu(out + i, xv_cap(xv_loadu(x + i), cap));
    if (i < n) xv_store_part(out + i, xv_cap(xv_load_part(x + i, n - i, 0), cap), n - i);
}

/* sum_j v_j q'_j and sum_j v_j q'_j (L_j - m) for probability targets. */
static void ce_soft_stats(const XENT_T *L, const XENT_T *XENT_RESTRICT q, const XENT_T *XENT_RESTRICT v,
                          int64_t n, XENT_T m, XENT_T cap, double eps, double *Q, double *SQ)
{
    const xv vm = xv_set1(m);
    const xv keep = xv_set1((XENT_T)(1.0 - eps)), add = xv_set1((XENT_T)(eps / (double)n));
    double tq = 0.0, tsq = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t c1 = (c0 + XENT_CHUNK < n) ? c0 + XENT_CHUNK : n;
        xv aq = xv_zero(), asq = xv_zero();
        int64_t i;
        for (i = c0; i < c1; i += XV_N) {
            const int64_t k = c1 - i;
            xv qv = xv_fmadd(keep, xv_load_part(q + i, k, 0), add);
            xv d = xv_sub(xv_cap(xv_load_part(L + i, k, 0), cap), vm);
            if (k < XV_N) {
                const xm valid = xv_gt(xv_set1((XENT_T)k), xv_lane_index());
                qv = xv_select(valid, qv, xv_zero());
                d = xv_select(valid, d, xv_zero());
            }
            if (v) qv = xv_mul(qv, xv_load_part(v + i, k, 0));
            aq = xv_add(aq, qv);
            asq = xv_fmadd(qv, d, asq);
        }
        tq += xv_hsum(aq);
        tsq += xv_hsum(asq);
    }
    *Q = tq;
    *SQ = tsq;
}

/*
 * row_sumexp_ex (same arguments and stored exponentials) that keeps the exact 1's
 * of the row's maxima out of the float lanes: returns s = sum exp(x - m) and sets
 * *rest = s - 1 = (number of maxima - 1) + sum of the other exponentials, so that
 * log1p(rest) and p_t - 1 keep their relative accuracy on confident rows, where a
 * float sum holding the 1 would lose everything below ~1e-7.  Exponentials that
 * are not < 1 (the maxima, or NaN) are summed apart, so NaN still propagates.
 */
static double ce_sumexp_split(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e,
                              const XENT_T *XENT_RESTRICT v, double *w_sx, XENT_T cap,
                              double *rest)
{
    const xv vm = xv_set1(m), one = xv_set1((XENT_T)1), zero = xv_zero();
    double r = 0.0, k = 0.0, sx = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t c1 = (c0 + XENT_CHUNK < n) ? c0 + XENT_CHUNK : n;
        xv a0 = xv_zero(), a1 = xv_zero(), k0 = xv_zero(), b0 = xv_zero();
        int64_t i = c0;
        for (; i + 2 * XV_N <= c1; i += 2 * XV_N) {
            xv d0 = xv_sub(xv_cap(xv_loadu(x + i), cap), vm);
            xv d1 = xv_sub(xv_cap(xv_loadu(x + i + XV_N), cap), vm);
            xv e0 = xv_exp(d0), e1 = xv_exp(d1);
            xm l0 = xv_gt(one, e0), l1 = xv_gt(one, e1);
            if (e) { xv_storeu(e + i, e0); xv_storeu(e + i + XV_N, e1); }
            a0 = xv_add(a0, xv_select(l0, e0, zero));
            a1 = xv_add(a1, xv_select(l1, e1, zero));
            k0 = xv_add(k0, xv_add(xv_select(l0, zero, e0), xv_select(l1, zero, e1)));
            if (w_sx) {
                if (v) {
                    b0 = xv_fmadd(xv_loadu(v + i), d0, b0);
                    b0 = xv_fmadd(xv_loadu(v + i + XV_N), d1, b0);
                } else {
                    b0 = xv_add(b0, xv_add(d0, d1));
                }
            }
        }
        for (; i < c1; i += XV_N) {
            const int64_t cnt = c1 - i;
            const xm valid = xv_gt(xv_set1((XENT_T)cnt), xv_lane_index());
            /* lanes past the end: d = -inf for the sums (exp gives 0), 0 for sx */
            xv d = xv_sub(xv_cap(xv_load_part(x + i, cnt, 0), cap), vm);
            xv e0 = xv_exp(xv_select(valid, d, xv_set1(xent_neg_inf())));
            xm l0 = xv_gt(one, e0);
            if (e) xv_store_part(e + i, e0, cnt);
            a0 = xv_add(a0, xv_select(l0, e0, zero));
            k0 = xv_add(k0, xv_select(l0, zero, e0));
            if (w_sx) {
                xv dz = xv_select(valid, d, xv_zero());
                b0 = v ? xv_fmadd(xv_load_part(v + i, cnt, 0), dz, b0) : xv_add(b0, dz);
            }
        }
        r += xv_hsum(xv_add(a0, a1));
        k += xv_hsum(k0);
        if (w_sx) sx += xv_hsum(b0);
    }
    if (w_sx) *w_sx = sx;
    *rest = (k - 1.0) + r;
    return k + r;
}

/*
 * One row.  Returns the row's loss (sample weight included).  `cg` is the
 * gradient factor of the row (grad_output / denominator * sample weight);
 * `g` is NULL for forward only; `t` < 0 with `q` != NULL means probability targets.
 */
static double ce_row(const XENT_T *x, int64_t C, int64_t t, const XENT_T *q, double sw, double cg,
                     double W, const xent_ce_args_t *a, XENT_T *g, int stream)
{
    const XENT_T *w = a->weight;
    const double eps = a->label_smoothing, z = a->z_loss;
    const XENT_T cap = (XENT_T)a->softcap;
    const int smooth = eps != 0.0;
    const double wt = (q == NULL && w) ? (double)w[t] : 1.0;
    const XENT_T *L = x; /* logits as the softmax sees them (capped if cap > 0) */
    XENT_T m, cap_live = cap;
    double s, sx = 0.0, lse, logs, loss, rest;

    if (cap > 0 && g) { /* keep the capped logits in the gradient row */
        ce_store_capped(x, C, cap, g);
        L = g;
        cap_live = 0;
    }
    m = row_max_ex(L, C, cap_live);

    if (q) {
        double Q, SQ;
        s = ce_sumexp_split(L, C, m, NULL, NULL, NULL, cap_live, &rest);
        logs = log1p(rest);
        lse = (double)m + logs;
        ce_soft_stats(L, q, w, C, m, cap_live, eps, &Q, &SQ);
        loss = Q * logs - SQ + z * lse * lse;
        if (g) {
            const double A = cg * (Q + 2.0 * z * lse) / s;
            ce_write_grad_general(L, C, m, (XENT_T)A, (XENT_T)(-cg * eps / (double)C),
                                  (XENT_T)(-cg * (1.0 - eps)), w, q, cap, g);
        }
        return sw * loss;
    }

    {
        const XENT_T xt = cap_live > 0 ? ce_cap1(x[t], cap) : L[t];
        const int keep_exp = g == x && cap == 0; /* in place: store exp(x - m) in the row */
        s = ce_sumexp_split(L, C, m, keep_exp ? g : NULL, w, smooth ? &sx : NULL, cap_live, &rest);
        logs = log1p(rest);
        lse = (double)m + logs;
        loss = (1.0 - eps) * wt * (((double)m - (double)xt) + logs) + z * wt * lse * lse;
        if (smooth) loss += eps / (double)C * (W * logs - sx);
        if (g) {
            const double A = (1.0 - eps) * wt + eps * W / (double)C + 2.0 * z * wt * lse;
            const XENT_T a_ = (XENT_T)(cg * A / s), b_ = (XENT_T)(-cg * eps / (double)C);
            /* the target's entry in double: p_t - 1 = (e_t - s) / s, with e_t - s =
             * -(s - 1) exactly when the target is a maximum */
            const double et = xt == m ? 1.0 : exp((double)xt - (double)m);
            const double dt = xt == m ? -rest : et - s;
            const double gt = cg * ((1.0 - eps) * wt * dt / s + (A - (1.0 - eps) * wt) * et / s -
                                    eps / (double)C * wt);
            if (cap > 0) {
                const XENT_T u = xt / cap;
                ce_write_grad_general(L, C, m, a_, b_, 0, w, NULL, cap, g);
                g[t] = (XENT_T)(gt * (1.0 - (double)u * (double)u));
            } else {
                if (keep_exp) row_axpb(g, C, 0, m, a_, b_, w, g, 0);
                else row_axpb(x, C, 1, m, a_, b_, w, g, stream);
                g[t] = (XENT_T)gt;
            }
        }
    }
    return sw * loss;
}

/*
 * Cross-entropy over rows of (n_rows, n_cols) logits.
 *   target     (n_rows,) class indices, or NULL when q is given
 *   q          (n_rows, n_cols) probability targets, or NULL
 *   loss_rows  (n_rows,) OUT per-row losses (double)
 *   grad       (n_rows, n_cols) OUT gradient, NULL for the loss only; may be x
 *   totals     OUT [sum of losses, mean denominator]
 * Returns the number of class targets outside [0, C) that are not ignore_index;
 * if it is not 0 nothing was written.
 */
int64_t XENT_FN(xent_ce_rows)(const XENT_T *x, const int64_t *target, const XENT_T *q,
                              int64_t n_rows, int64_t n_cols, const xent_ce_args_t *a,
                              double *loss_rows, XENT_T *grad, double *totals, int n_threads)
{
    double denom, W = (double)n_cols, scale;
    int64_t i;
    int nt;
    const int stream = grad != NULL && grad != x;

    if (q == NULL) {
        const int64_t bad = ce_scan_targets(target, n_rows, n_cols, a, n_threads, &denom);
        if (bad) return bad;
    } else {
        denom = a->sample_weight ? row_sum_wide(a->sample_weight, n_rows) : (double)n_rows;
    }
    if (a->weight) {
        W = 0.0;
        for (i = 0; i < n_cols; ++i) W += (double)a->weight[i];
    }
    scale = a->mean ? a->grad_scale / denom : a->grad_scale;

    nt = xent_threads_for(n_rows * n_cols, n_rows, n_threads);
    XENT_PRAGMA_OMP(parallel num_threads(nt) if(nt > 1))
    {
        int64_t r;
        XENT_PRAGMA_OMP(for schedule(static))
        for (r = 0; r < n_rows; ++r) {
            const XENT_T *xr = x + r * n_cols;
            XENT_T *gr = grad ? grad + r * n_cols : NULL;
            const int64_t t = q ? -1 : target[r];
            double sw, cg;
            if (q == NULL && t == a->ignore_index) {
                loss_rows[r] = 0.0;
                if (gr) memset(gr, 0, (size_t)n_cols * sizeof(XENT_T));
                continue;
            }
            sw = a->sample_weight ? (double)a->sample_weight[r] : 1.0;
            cg = scale * sw * (a->grad_rows ? (double)a->grad_rows[r] : 1.0);
            loss_rows[r] = ce_row(xr, n_cols, t, q ? q + r * n_cols : NULL, sw, cg, W, a, gr, stream);
        }
        if (stream) xv_stream_fence();
    }
    totals[0] = xent_sum_doubles(loss_rows, n_rows);
    totals[1] = denom;
    return XENT_OK;
}

/*
 * Negative log-likelihood on log-probabilities (no softmax): the loss of a row
 * is -w_t * logp_t, its gradient -w_t at the target and 0 elsewhere.  Same
 * arguments and return value as xent_ce_rows (q, label smoothing, z-loss and
 * softcap are not used).
 */
int64_t XENT_FN(xent_nll_rows)(const XENT_T *logp, const int64_t *target, int64_t n_rows,
                               int64_t n_cols, const xent_ce_args_t *a, double *loss_rows,
                               XENT_T *grad, double *totals, int n_threads)
{
    double denom, scale;
    int64_t r;
    int nt;
    const int64_t bad = ce_scan_targets(target, n_rows, n_cols, a, n_threads, &denom);
    if (bad) return bad;
    scale = a->mean ? a->grad_scale / denom : a->grad_scale;
    nt = xent_threads_for(grad ? n_rows * n_cols : n_rows, n_rows, n_threads);
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1))
    for (r = 0; r < n_rows; ++r) {
        const int64_t t = target[r];
        XENT_T *gr = grad ? grad + r * n_cols : NULL;
        double wt;
        if (t == a->ignore_index) {
            loss_rows[r] = 0.0;
            if (gr) memset(gr, 0, (size_t)n_cols * sizeof(XENT_T));
            continue;
        }
        wt = a->weight ? (double)a->weight[t] : 1.0;
        loss_rows[r] = -wt * (double)logp[r * n_cols + t];
        if (gr) {
            memset(gr, 0, (size_t)n_cols * sizeof(XENT_T));
            gr[t] = (XENT_T)(-wt * scale * (a->grad_rows ? (double)a->grad_rows[r] : 1.0));
        }
    }
    totals[0] = xent_sum_doubles(loss_rows, n_rows);
    totals[1] = denom;
    return XENT_OK;
}

#endif /* XENT_CE_H */
