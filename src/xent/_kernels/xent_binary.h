/*
 * xent_binary.h -- elementwise binary losses over a contiguous
 * (n_rows, n_cols) array, in tiles of XENT_BINARY_TILE elements of one row
 * (the parallel work items; their partial sums are added in tile order after
 * the parallel loop, so results do not depend on the thread count).
 *
 *   XENT_BINARY_WITH_LOGITS  binary_cross_entropy_with_logits, PyTorch's formula
 *       loss = (1 - t) x - lw log_sigmoid(x),  lw = (pw - 1) t + 1,
 *       log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|));   grad = lw sigmoid(x) - pw t
 *   XENT_BINARY_PROBS   binary_cross_entropy, PyTorch's CPU formula and backward
 *       loss = (t - 1) max(log1p(-p), -100) - t max(log(p), -100)
 *       grad = (p - t) / max((1 - p) p, EPS), EPS = (float)1e-12 as in PyTorch
 *       (probabilities and targets outside [0, 1] or NaN are counted first and
 *       make the kernel return that count without writing anything)
 *   XENT_BINARY_SIGMOID_FOCAL   torchvision.ops.sigmoid_focal_loss
 *       loss = alpha_t ce m**gamma,  m = 1 - p_t = t (1 - p) + (1 - t) p
 *       grad = alpha_t m**gamma ((1 - t) p - t (1 - p) + gamma ce (1 - 2t) p (1 - p) / m)
 *       (m is formed from sigmoid(x) and sigmoid(-x) separately, so it keeps
 *       full relative accuracy when p_t -> 1, and the gradient stays finite
 *       for 0 < gamma < 1 where torchvision's autograd gives NaN)
 *
 * Every loss is multiplied by `weight` (broadcast by rows: weight_rows == 1
 * repeats one row) and the gradient also by grad_output and, for "mean", by
 * 1 / (n_rows n_cols).
 */
#ifndef XENT_BINARY_H
#define XENT_BINARY_H

#include "xent_rowops.h"

#ifndef XENT_VAR_ONES16_DEFINED
#define XENT_VAR_ONES16_DEFINED
/* 1 in every lane: xv_load_part(xent_var_ones16, k, 0) is the 0/1 mask of the first k lanes. */
static const XENT_T xent_var_ones16[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
#endif

/* Loss and d loss / d x of one vector of elements (before weight and grad_output). */
XENT_INLINE void xent_bin_vec(xent_binary_op op, xv x, xv t, xv pw, int has_pw, XENT_T alpha, XENT_T gamma,
                              xv *loss, xv *grad)
{
    const xv one = xv_set1((XENT_T)1), z = xv_zero();
    if (op == XENT_BINARY_PROBS) {
        const xv lo = xv_set1((XENT_T)-100);
        const xv lp = xv_max(xv_log(x), lo), l1p = xv_max(xv_log1p(xv_sub(z, x)), lo);
        *loss = xv_fnmadd(t, lp, xv_mul(xv_sub(t, one), l1p));
        *grad = xv_div(xv_sub(x, t), xv_max(xv_mul(xv_sub(one, x), x), xv_set1((XENT_T)1e-12f)));
        return;
    }
    {
        const xv e = xv_exp_le0(xv_sub(z, xv_abs(x)));   /* exp(-|x|) in [0, 1] */
        const xv u = xv_add(one, e);                     /* in [1, 2]: no special cases */
        const xv r = xv_div(one, u);
        const xm pos = xv_ge(x, z);
        const xv p = xv_select(pos, r, xv_mul(e, r));    /* sigmoid(x) */
        /* log1p(e) = log(u) + (e - (u - 1)) / u, as xv_log1p but reusing r = 1 / u */
        const xv l1p = xv_fmadd(xv_sub(e, xv_sub(u, one)), r, xv_log(u));
        const xv lsig = xv_sub(xv_min(z, x), l1p);       /* log_sigmoid(x) */
        const xv omt = xv_sub(one, t);
        if (op == XENT_BINARY_WITH_LOGITS) {
            if (has_pw) {
                const xv ptw = xv_mul(pw, t);
                const xv lw = xv_fmadd(xv_sub(pw, one), t, one);
                *loss = xv_fnmadd(lw, lsig, xv_mul(omt, x));
                *grad = xv_sub(xv_mul(xv_add(ptw, omt), p), ptw);
            } else {
                *loss = xv_sub(xv_mul(omt, x), lsig);
                *grad = xv_sub(p, t);
            }
            return;
        }
        {
            const xv q = xv_select(pos, xv_mul(e, r), r); /* sigmoid(-x) = 1 - p */
            const xv ce = xv_sub(xv_mul(omt, x), lsig);
            const xv m = xv_fmadd(t, q, xv_mul(omt, p));
            const xv at = alpha >= 0 ? xv_fmadd(xv_set1(alpha), t, xv_mul(xv_set1(1 - alpha), omt)) : one;
            xv mg, g = xv_fnmadd(t, q, xv_mul(omt, p)); /* p - t */
            if (gamma == 0) mg = one;
            else if (gamma == 1) mg = m;
            else if (gamma == 2) mg = xv_mul(m, m);
            else mg = xv_exp(xv_mul(xv_set1(gamma), xv_log(m)));
            if (gamma != 0) {
                /* p (1 - p) / m <= 1; 0 where m == 0 (then m**gamma == 0 too) */
                const xv rr = xv_select(xv_gt(m, z), xv_div(xv_mul(p, q), m), z);
                g = xv_fmadd(xv_mul(xv_set1(gamma), ce), xv_mul(xv_fnmadd(xv_set1((XENT_T)2), t, one), rr), g);
            }
            *loss = xv_mul(at, xv_mul(ce, mg));
            *grad = xv_mul(at, xv_mul(mg, g));
        }
    }
}

/* Count of probabilities or targets outside [0, 1] or NaN in one tile. */
XENT_INLINE int64_t xent_bin_count_bad(const XENT_T *x, const XENT_T *t, int64_t n)
{
    const xv one = xv_set1((XENT_T)1), z = xv_zero();
    int64_t bad = 0, i = 0;
    for (; i < n; i += XV_N) {
        const int64_t k = n - i;
        const xv a = k >= XV_N ? xv_loadu(x + i) : xv_load_part(x + i, k, 0);
        const xv b = k >= XV_N ? xv_loadu(t + i) : xv_load_part(t + i, k, 0);
        bad += xm_count(xv_not_le(a, one)) + xm_count(xv_gt(z, a));
        bad += xm_count(xv_not_le(b, one)) + xm_count(xv_gt(z, b));
    }
    return bad;
}

/*
 * xent_binary_call: loss (may be NULL) receives per-element losses, the scratch
 * (n_rows * ceil(n_cols / XENT_BINARY_TILE) doubles) the tile partial sums,
 * c->total their sum; grad (may be NULL, may alias x) the gradient.
 * Returns the count of invalid entries (XENT_BINARY_PROBS only), 0 otherwise.
 */
int64_t XENT_FN(xent_binary_loss)(xent_binary_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x, *t = (const XENT_T *)c->t;
    const XENT_T *weight = (const XENT_T *)c->weight, *pos_weight = (const XENT_T *)c->pos_weight;
    const XENT_T *grad_elems = (const XENT_T *)c->grad_elems;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    XENT_T *loss = (XENT_T *)c->loss, *grad = (XENT_T *)c->grad;
    double *tile_sums = (double *)c->scratch;
    const int n_threads = c->n_threads;
    const xent_binary_op op = c->opt.op;
    const int64_t tpr = (n_cols + XENT_BINARY_TILE - 1) / XENT_BINARY_TILE;
    const int64_t n_tiles = n_rows * tpr;
    const int nt = xent_threads_for(n_rows * n_cols * 4, n_tiles, n_threads);
    const XENT_T alpha = (XENT_T)c->opt.alpha, gamma = (XENT_T)c->opt.gamma;
    double gs = c->opt.grad_scale;
    int64_t k;
    c->total = 0.0;
    (void)nt; /* unused in a serial build */
    if (n_tiles == 0) return XENT_OK;
    if (op == XENT_BINARY_PROBS) {
        int64_t bad = 0;
        XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1))
        for (k = 0; k < n_tiles; ++k) {
            const int64_t r = k / tpr, c0 = (k % tpr) * XENT_BINARY_TILE;
            const int64_t len = (c0 + XENT_BINARY_TILE < n_cols) ? XENT_BINARY_TILE : n_cols - c0;
            tile_sums[k] = (double)xent_bin_count_bad(x + r * n_cols + c0, t + r * n_cols + c0, len);
        }
        for (k = 0; k < n_tiles; ++k) bad += (int64_t)tile_sums[k];
        if (bad) return bad;
    }
    if (c->opt.reduction == XENT_REDUCE_MEAN) gs /= (double)n_rows * (double)n_cols;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1))
    for (k = 0; k < n_tiles; ++k) {
        const int64_t r = k / tpr, c0 = (k % tpr) * XENT_BINARY_TILE;
        const int64_t len = (c0 + XENT_BINARY_TILE < n_cols) ? XENT_BINARY_TILE : n_cols - c0;
        const int64_t off = r * n_cols + c0;
        const XENT_T *xw = weight ? weight + (c->weight_rows == 1 ? 0 : r * n_cols) + c0 : NULL;
        const XENT_T *pwr = pos_weight ? pos_weight + c0 : NULL;
        const XENT_T *ge = grad_elems ? grad_elems + off : NULL;
        const xv vgs = xv_set1((XENT_T)gs);
        xv acc = xv_zero();
        int64_t i;
        for (i = 0; i < len; i += XV_N) {
            const int64_t kk = len - i;
            const int full = kk >= XV_N;
            /* padding lanes: x = 0.5, t = 0 are valid for every op; their loss is masked below */
            const xv xx = full ? xv_loadu(x + off + i) : xv_load_part(x + off + i, kk, (XENT_T)0.5);
            const xv tt = full ? xv_loadu(t + off + i) : xv_load_part(t + off + i, kk, 0);
            const xv pw = pwr ? (full ? xv_loadu(pwr + i) : xv_load_part(pwr + i, kk, 1)) : xv_zero();
            xv l, g;
            xent_bin_vec(op, xx, tt, pw, pwr != NULL, alpha, gamma, &l, &g);
            if (xw) {
                const xv w = full ? xv_loadu(xw + i) : xv_load_part(xw + i, kk, 0);
                l = xv_mul(l, w);
                g = xv_mul(g, w);
            }
            if (!full) l = xv_mul(l, xv_load_part(xent_var_ones16, kk, 0));
            acc = xv_add(acc, l);
            if (loss) {
                if (full) xv_storeu(loss + off + i, l);
                else xv_store_part(loss + off + i, l, kk);
            }
            if (grad) {
                g = xv_mul(g, vgs);
                if (ge) g = xv_mul(g, full ? xv_loadu(ge + i) : xv_load_part(ge + i, kk, 0));
                if (full) xv_storeu(grad + off + i, g);
                else xv_store_part(grad + off + i, g, kk);
            }
        }
        tile_sums[k] = xv_hsum(acc);
    }
    {
        double s = 0.0;
        for (k = 0; k < n_tiles; ++k) s += tile_sums[k];
        c->total = s;
    }
    return XENT_OK;
}

#endif /* XENT_BINARY_H */
