/*
 * xent_kl.h -- knowledge-distillation KL divergence with temperature over the
 * rows of two contiguous (n_rows, n_cols) arrays (student s, teacher t):
 *
 *   loss_i = T**2 sum_j pt_j (log pt_j - log ps_j),  pt = softmax(t/T), ps = softmax(s/T)
 *   d loss_i / d s_ij = T (ps_j - pt_j)
 *
 * which is F.kl_div(log_softmax(s/T), softmax(t/T)) * T**2 summed over the row.
 * With u_j = (s_j - max s)/T, v_j = (t_j - max t)/T, S = sum e^u, R = sum e^v:
 *   KL = (sum_j e^{v_j} (v_j - u_j)) / R - (log R - log S)
 * in one fused pass after the two row maxima.  A term whose pt_j is 0 is
 * 0 * log ps_j, as PyTorch's xlogy form xlogy(pt, pt) - pt * log ps: 0 for a
 * finite student logit, NaN for a -inf one.  NaN/inf propagate as in PyTorch.
 */
#ifndef XENT_KL_H
#define XENT_KL_H

#include "xent_rowops.h"

/* 1 in every lane: xv_load_part(xent_var_ones16, k, 0) is the 0/1 mask of the first k lanes. */
#ifndef XENT_VAR_ONES16_DEFINED
#define XENT_VAR_ONES16_DEFINED
static const XENT_T xent_var_ones16[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
#endif

/* Fused pass: *S = sum e^u, *R = sum e^v, return sum e^v (v - u) (0 * u where e^v == 0). */
XENT_INLINE double xent_kl_row_sums(const XENT_T *s, const XENT_T *t, int64_t n, XENT_T ms, XENT_T mt,
                                    XENT_T inv_T, double *S, double *R)
{
    const xv vms = xv_set1(ms), vmt = xv_set1(mt), vi = xv_set1(inv_T), z = xv_zero();
    double ss = 0.0, rr = 0.0, aa = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t c1 = (c0 + XENT_CHUNK < n) ? c0 + XENT_CHUNK : n;
        xv as = z, ar = z, at = z;
        int64_t i = c0;
        for (; i + XV_N <= c1; i += XV_N) {
            const xv u = xv_mul(xv_sub(xv_loadu(s + i), vms), vi);
            const xv v = xv_mul(xv_sub(xv_loadu(t + i), vmt), vi);
            const xv ev = xv_exp_le0(v);
            as = xv_add(as, xv_exp_le0(u));
            ar = xv_add(ar, ev);
            at = xv_add(at, xv_select(xv_eq(ev, z), xv_mul(z, u), xv_mul(ev, xv_sub(v, u))));
        }
        if (i < c1) {
            /* padding lanes load the row maxima (u = v = 0, all finite) and are then zeroed */
            const int64_t k = c1 - i;
            const xv on = xv_load_part(xent_var_ones16, k, 0);
            const xv u = xv_mul(xv_sub(xv_load_part(s + i, k, ms), vms), vi);
            const xv v = xv_mul(xv_sub(xv_load_part(t + i, k, mt), vmt), vi);
            const xv ev = xv_exp_le0(v);
            as = xv_fmadd(xv_exp_le0(u), on, as);
            ar = xv_fmadd(ev, on, ar);
            at = xv_add(at, xv_select(xv_eq(ev, z), xv_mul(z, u), xv_mul(ev, xv_sub(v, u))));
        }
        ss += xv_hsum(as);
        rr += xv_hsum(ar);
        aa += xv_hsum(at);
    }
    *S = ss;
    *R = rr;
    return aa;
}

/* g_j = a_s e^{u_j} - a_t e^{v_j}, both products rounded (exactly 0 when s == t);
   g may alias s or t element for element. */
XENT_INLINE void xent_kl_row_grad(const XENT_T *s, const XENT_T *t, int64_t n, XENT_T ms, XENT_T mt,
                                  XENT_T inv_T, XENT_T a_s, XENT_T a_t, XENT_T *g)
{
    const xv vms = xv_set1(ms), vmt = xv_set1(mt), vi = xv_set1(inv_T);
    const xv vas = xv_set1(a_s), vat = xv_set1(a_t);
    int64_t i = 0;
    for (; i + XV_N <= n; i += XV_N) {
        const xv eu = xv_exp_le0(xv_mul(xv_sub(xv_loadu(s + i), vms), vi));
        const xv ev = xv_exp_le0(xv_mul(xv_sub(xv_loadu(t + i), vmt), vi));
        xv_storeu(g + i, xv_sub(xv_mul(vas, eu), xv_mul(vat, ev)));
    }
    if (i < n) {
        const int64_t k = n - i;
        const xv eu = xv_exp_le0(xv_mul(xv_sub(xv_load_part(s + i, k, ms), vms), vi));
        const xv ev = xv_exp_le0(xv_mul(xv_sub(xv_load_part(t + i, k, mt), vmt), vi));
        xv_store_part(g + i, xv_sub(xv_mul(vas, eu), xv_mul(vat, ev)), k);
    }
}

/*
 * Per-row losses (T**2 KL, may be NULL) and their sum in *total; gradient
 * w.r.t. the student (times grad_output and the reduction's scale: 1/n_rows
 * for "batchmean", 1/(n_rows n_cols) for "mean") into `grad` (may be NULL,
 * may alias s or t).  Always returns XENT_OK.
 */
int64_t XENT_FN(xent_kl_rows)(xent_kl_call *c)
{
    const XENT_T *s = (const XENT_T *)c->s, *t = (const XENT_T *)c->t;
    const XENT_T *grad_rows = (const XENT_T *)c->grad_rows;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    XENT_T *loss = (XENT_T *)c->loss, *grad = (XENT_T *)c->grad;
    const double T = c->opt.temperature;
    const XENT_T inv_T = (XENT_T)(1.0 / T);
    double gs = c->opt.grad_scale * T;
    const int nt = xent_threads_for(n_rows * n_cols * (grad ? 3 : 2), n_rows, c->n_threads);
    int64_t i;
    c->total = 0.0;
    (void)nt; /* unused in a serial build */
    if (c->opt.reduction == XENT_REDUCE_MEAN) gs /= (double)n_rows * (double)n_cols;
    else if (c->opt.reduction == XENT_REDUCE_BATCHMEAN) gs /= (double)n_rows;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1))
    for (i = 0; i < n_rows; ++i) {
        const XENT_T *sr = s + i * n_cols, *tr = t + i * n_cols;
        const XENT_T ms = row_max(sr, n_cols), mt = row_max(tr, n_cols);
        double S, R;
        const double A = xent_kl_row_sums(sr, tr, n_cols, ms, mt, inv_T, &S, &R);
        if (loss) loss[i] = (XENT_T)(T * T * (A / R - (log(R) - log(S))));
        if (grad) {
            const double g = gs * (grad_rows ? (double)grad_rows[i] : 1.0);
            xent_kl_row_grad(sr, tr, n_cols, ms, mt, inv_T, (XENT_T)(g / S), (XENT_T)(g / R),
                             grad + i * n_cols);
        }
    }
    if (loss) c->total = row_sum_wide(loss, n_rows);
    return XENT_OK;
}

#endif /* XENT_KL_H */
