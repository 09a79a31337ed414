/*
 * xent_focal.h -- multi-class softmax focal loss (Lin et al. 2017) over the
 * rows of a contiguous (n_rows, n_cols) array with integer class targets.
 *
 *   loss_i = -alpha_t (1 - p_t)**gamma log p_t,   p_t = softmax(x_i)[t_i]
 *   d loss_i / d x_ij = c_i (p_ij - [j == t_i])
 *   c_i = alpha_t ((1 - p_t)**gamma + gamma p_t (-log p_t) (1 - p_t)**(gamma - 1))
 *
 * The per-row scalars are evaluated in double in log space: log(1 - p_t) is
 * log(-expm1(log p_t)) near p_t = 1 and log1p(-p_t) elsewhere, so both terms
 * stay finite and accurate as p_t -> 1 and for 0 < gamma < 1 (where the naive
 * (1 - p)**(gamma - 1) is inf at p_t = 1 and autograd gives NaN).  At p_t = 1
 * exactly the limit c_i = alpha_t [gamma == 0] is used; at p_t = 0
 * (log p_t = -inf) the limit c_i = alpha_t.  NaN/inf in a row propagate.
 * gamma = 0 with alpha = 1 is exactly softmax cross-entropy.
 *
 * Return: the number of targets outside [0, n_cols) that are not
 * ignore_index; nothing is written if the first scan finds any.  A target moved
 * out of range by another thread after the scan gives its row a NaN loss and a
 * zero gradient and is counted too.
 */
#ifndef XENT_FOCAL_H
#define XENT_FOCAL_H

#include "xent_rowops.h"

/* log(1 - exp(q)) for q <= 0 (Maechler's log1mexp). */
XENT_INLINE double xent_focal_log1mexp(double q)
{
    return q > -0.6931471805599453 ? log(-expm1(q)) : log1p(-exp(q));
}

/* Focal loss and gradient coefficient c (see above) from q = log p_t and l1 = log(1 - p_t). */
XENT_INLINE void xent_focal_coef(double q, double l1, double gamma, double at, double *loss, double *c)
{
    const double w = gamma == 0.0 ? 1.0 : exp(gamma * l1); /* (1 - p_t)**gamma; 0 at p_t = 1 */
    double t2 = 0.0;
    /* gamma p (-q) (1-p)**(gamma-1), all in the exponent; 0 in the limits q -> 0, q -> -inf */
    if (gamma != 0.0 && q < 0.0 && q > -(double)INFINITY)
        t2 = gamma * exp(q + (gamma - 1.0) * l1 + log(-q));
    *loss = -at * w * q;
    *c = at * (w + t2);
}

/* First pass over the targets: number of non-ignored ones in *count, returns bad ones. */
XENT_INLINE int64_t xent_variants_check_targets(const int64_t *t, int64_t n, int64_t n_cols,
                                             int64_t ignore_index, int64_t *count)
{
    int64_t i, bad = 0, cnt = 0;
    for (i = 0; i < n; ++i) {
        const int64_t ti = t[i];
        if (ti == ignore_index) continue;
        if (ti < 0 || ti >= n_cols) ++bad;
        else ++cnt;
    }
    *count = cnt;
    return bad;
}

/*
 * Per-row losses into `loss` (may be NULL; ignored rows get 0) and their sum
 * into *total; gradient rows (times grad_output, divided by the number of
 * non-ignored rows for "mean") into `grad` (may be NULL; may alias x).
 * *count receives the number of non-ignored rows.
 */
int64_t XENT_FN(xent_focal_rows)(xent_focal_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x, *alpha_c = (const XENT_T *)c->alpha_c;
    const XENT_T *grad_rows = (const XENT_T *)c->grad_rows;
    const int64_t *t = c->target, n_rows = c->n_rows, n_cols = c->n_cols;
    XENT_T *loss = (XENT_T *)c->loss, *grad = (XENT_T *)c->grad;
    const int64_t ign = c->opt.ignore_index;
    int64_t cnt, i, lost = 0; /* rows whose target went out of range during the call */
    const int64_t bad = xent_variants_check_targets(t, n_rows, n_cols, ign, &cnt);
    double gs = c->opt.grad_scale;
    int nt;
    c->count = cnt;
    c->total = 0.0;
    if (bad) return bad;
    if (c->opt.reduction == XENT_REDUCE_MEAN) gs /= (double)cnt;
    nt = xent_threads_for(n_rows * n_cols * (grad ? 2 : 1), n_rows, c->n_threads);
    (void)nt; /* unused in a serial build */
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1) reduction(+:lost))
    for (i = 0; i < n_rows; ++i) {
        const int64_t ti = xent_load_target(t + i);
        const XENT_T *xr = x + i * n_cols;
        XENT_T m, xt;
        double s, q, l1, omp, li, coef, at;
        if (ti == ign) {
            if (loss) loss[i] = 0;
            if (grad) memset(grad + i * n_cols, 0, (size_t)n_cols * sizeof(XENT_T));
            continue;
        }
        if (!xent_class_ok(ti, n_cols)) { /* rewritten by another thread since the check */
            if (loss) loss[i] = (XENT_T)NAN;
            if (grad) memset(grad + i * n_cols, 0, (size_t)n_cols * sizeof(XENT_T));
            ++lost;
            continue;
        }
        row_max_sumexp(xr, n_cols, row_prefetch_target(x, i, n_rows, n_cols), &m, &s);
        xt = xr[ti];
        q = (double)(xt - m) - log(s); /* log p_t, PyTorch's log_softmax ordering */
        if (q > -0.6931471805599453 && xt == m) {
            /* p_t > 1/2 (so x_t is the max): s = 1 + e has lost the low bits of
               e = sum_{j != t} exp(x_j - x_t); sum it apart so that 1 - p_t = e / (1 + e)
               keeps full relative accuracy (one extra pass, confident rows only). */
            const double e = row_sumexp(xr, ti, m, NULL, NULL, NULL) +
                             row_sumexp(xr + ti + 1, n_cols - ti - 1, m, NULL, NULL, NULL);
            q = -log1p(e);
            l1 = log(e) + q;
            omp = e / (1.0 + e);
        } else {
            l1 = xent_focal_log1mexp(q);
            omp = -expm1(q);
        }
        at = alpha_c ? (double)alpha_c[ti] : c->opt.alpha;
        xent_focal_coef(q, l1, c->opt.gamma, at, &li, &coef);
        if (loss) loss[i] = (XENT_T)li;
        if (grad) {
            const double ac = coef * gs * (grad_rows ? (double)grad_rows[i] : 1.0);
            XENT_T *g = grad + i * n_cols;
            /* g_j = ac * exp(x_j - m) / s, then g_t = -ac (1 - p_t) (x_t was read above:
               g may alias x) */
            row_axpb(xr, n_cols, XENT_SRC_LOGITS, m, (XENT_T)(ac / s), 0, NULL, g,
                     XENT_STORE_CACHED, NULL, 0);
            g[ti] = (XENT_T)(-ac * omp);
        }
    }
    if (loss) c->total = row_sum_wide(loss, n_rows);
    return lost;
}

#endif /* XENT_FOCAL_H */
