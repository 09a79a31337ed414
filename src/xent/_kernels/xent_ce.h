/*
 * xent_ce.h -- softmax cross-entropy (xent_ce_rows) and NLL (xent_nll_rows):
 * loss, gradient, or both in one pass per row.
 *
 * Strategy: which path of xent_ce_rows serves which call
 *
 *   call                                         path                   precision of a row
 *   -------------------------------------------  ---------------------  -----------------------------
 *   C <= XENT_SMALL_C (32), class targets,       ce_small_block: XV_N   the input's type in vector
 *   no softcap, a SIMD path                      rows at once, lanes =  lanes (float32 for float32)
 *                                                rows, columns in regs
 *   fewer rows than threads, C > 32, class       ce_rows_split: each    as ce_row, same bits
 *   targets, no softcap                          row split over the
 *                                                team by chunks
 *   separate gradient > XENT_STREAM_MIN_BYTES,   ce_rows_streamed:      as ce_row, same bits
 *   class targets, no softcap (scratch given)    pipelined, streaming
 *                                                stores
 *   everything else: loss only, in place, small  ce_row, one row per    exponentials summed in the
 *   separate gradients, probability targets,     iteration              input's type per chunk of
 *   softcap, the scalar path                                            XENT_CHUNK, in double across
 *                                                                       chunks; loss in double
 *
 * Design
 * - Phase 0 reads only the targets: counts targets outside [0, C) that are not
 *   ignore_index (the call then returns that count and writes nothing at all),
 *   and sums the "mean" denominator sum_i sample_weight_i * weight[t_i] in fixed
 *   blocks, so the gradient scale is known before any gradient is written.  The
 *   row loops check every target again where they use it (xent_class_ok): another
 *   thread may rewrite the targets during the call.
 * - Per row: m = max, s = sum exp(x - m) with the exact 1's of the maxima kept out
 *   of the lanes, so that rest = s - 1 is accurate; lse = m + log1p(rest) and the
 *   class-target loss (m - x_t) + log1p(rest), the target's gradient entry from
 *   p_t - 1 = -rest / s (confident rows keep their relative accuracy).
 *   Forward-only and fused calls run the very same statistics code, so their
 *   losses are bitwise equal.
 * - Fused gradient: in place (grad == logits), or into a separate buffer of at
 *   most XENT_STREAM_MIN_BYTES (xent_stream_output), the exponentials are kept in
 *   the gradient row and rescaled (one exp per element, the row stays in L2); into
 *   a larger separate buffer they are cached in scratch and written with streaming
 *   stores (no read for ownership of the destination).  Both give the same bits.
 * - Ignored rows cost the target read and, when a gradient is asked for, a zeroed row.
 * - Per-row losses are written in double and summed after the parallel loop in a
 *   fixed order: results do not depend on the thread count.
 *
 * Loss of a row with class target t (PyTorch's formulas, plus z-loss and softcap):
 *   L = sw * [ (1-eps) w_t (lse - x_t) + eps/C * sum_j w_j (lse - x_j) + z w_t lse^2 ]
 * and with probability targets q (q' = (1-eps) q + eps/C):
 *   L = sw * [ sum_j w_j q'_j (lse - x_j) + z lse^2 ]
 * with x replaced by cap*tanh(x/cap) when softcap is on (the gradient is then
 * multiplied by 1 - tanh^2, the derivative of the cap).  The z-loss terms are
 * skipped when z == 0 (lse^2 may overflow, and 0 * inf is NaN).
 */
#ifndef XENT_CE_H
#define XENT_CE_H

#include "xent_rowops.h"

/* A call's options and optional arrays, typed for this element type. */
typedef struct {
    const XENT_T *weight, *sample_weight, *grad_rows;
    double grad_scale;
    int64_t ignore_index;
    double label_smoothing, z_loss, softcap;
    int mean;
    XENT_T *scratch;
} xent_ce_args_t;

static xent_ce_args_t ce_args_of(const xent_ce_call *c)
{
    xent_ce_args_t a;
    a.weight = (const XENT_T *)c->weight;
    a.sample_weight = (const XENT_T *)c->sample_weight;
    a.grad_rows = (const XENT_T *)c->grad_rows;
    a.grad_scale = c->opt.grad_scale;
    a.ignore_index = c->opt.ignore_index;
    a.label_smoothing = c->opt.label_smoothing;
    a.z_loss = c->opt.z_loss;
    a.softcap = c->opt.softcap;
    a.mean = c->opt.reduction == XENT_REDUCE_MEAN;
    a.scratch = (XENT_T *)c->scratch;
    return a;
}

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
    /* one thread reads ~1 G targets/s: a team (and its wake-up) pays only for very long batches */
    nt = xent_threads_for(n / 16, nb, n_threads);
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1) reduction(+:bad))
    for (b = 0; b < nb; ++b) {
        const int64_t lo = b * bsize, hi = (lo + bsize < n) ? lo + bsize : n;
        int64_t i, nbad = 0;
        double acc = 0.0;
        if (!a->weight && !a->sample_weight) { /* branch-free: the compiler vectorises it */
            const int64_t ig = a->ignore_index;
            int64_t nvalid = 0;
            for (i = lo; i < hi; ++i) {
                const int64_t ti = t[i];
                const int64_t in_range = (uint64_t)ti < (uint64_t)c, kept = ti != ig;
                nvalid += in_range & kept;
                nbad += (1 - in_range) & kept;
            }
            acc = (double)nvalid;
        } else {
            for (i = lo; i < hi; ++i) {
                const int64_t ti = t[i];
                if (ti == a->ignore_index) continue;
                if ((uint64_t)ti >= (uint64_t)c) { ++nbad; continue; }
                acc += (a->weight ? (double)a->weight[ti] : 1.0) *
                       (a->sample_weight ? (double)a->sample_weight[i] : 1.0);
            }
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
 * with v = weight (1 if NULL), q = targets (absent if NULL).  With cap > 0, `x`
 * holds the RAW logits: L_j = cap * tanh(x_j / cap) and D_j = sech(x_j / cap)**2
 * are computed here from them; else L = x and D = 1.  x may alias out.
 */
static void ce_write_grad_general(const XENT_T *x, int64_t n, XENT_T m, XENT_T a, XENT_T b,
                                  XENT_T bq, const XENT_T *XENT_RESTRICT v,
                                  const XENT_T *XENT_RESTRICT q, XENT_T cap, XENT_T *out)
{
    const xv vm = xv_set1(m), va = xv_set1(a), vb = xv_set1(b), vbq = xv_set1(bq);
    const XENT_T inv = cap > 0 ? (XENT_T)1 / cap : (XENT_T)0;
    int64_t i;
    for (i = 0; i < n; i += XV_N) {
        const int64_t k = n - i;
        const int full = k >= XV_N;
        xv l = full ? xv_loadu(x + i) : xv_load_part(x + i, k, 0);
        xv coef = vb, d = xv_zero();
        xv r;
        if (cap > 0) l = xv_softcap(l, cap, inv, &d);
        if (q) coef = xv_fmadd(vbq, full ? xv_loadu(q + i) : xv_load_part(q + i, k, 0), coef);
        if (v) coef = xv_mul(coef, full ? xv_loadu(v + i) : xv_load_part(v + i, k, 0));
        r = xv_fmadd(va, xv_exp_le0(xv_sub(l, vm)), coef);
        if (cap > 0) r = xv_mul(r, d);
        if (full) xv_storeu(out + i, r);
        else xv_store_part(out + i, r, k);
    }
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
 * Loss of a class-target row and its gradient: out_j = a*e_j + b*v_j for j != t and
 * out_t = gt, the target's entry formed in double (p_t - 1 = -rest/s when the
 * target is a maximum, so confident rows keep their relative accuracy).
 */
typedef struct {
    double loss, gt;
    XENT_T a, b;
} ce_coefs_t;

XENT_INLINE ce_coefs_t ce_class_coefs(XENT_T m, double s, double rest, double sx, XENT_T xt,
                                      double wt, double W, int64_t C, double cg,
                                      const xent_ce_args_t *a)
{
    const double eps = a->label_smoothing, z = a->z_loss;
    const double logs = log1p(rest), lse = (double)m + logs;
    /* the z-loss terms only when z != 0: lse**2 may overflow, and 0 * inf is NaN */
    const double A = (1.0 - eps) * wt + eps * W / (double)C + (z != 0.0 ? 2.0 * z * wt * lse : 0.0);
    const double et = xt == m ? 1.0 : exp((double)xt - (double)m);
    const double dt = xt == m ? -rest : et - s;
    ce_coefs_t k;
    k.loss = (1.0 - eps) * wt * (((double)m - (double)xt) + logs);
    if (z != 0.0) k.loss += z * wt * lse * lse;
    if (eps != 0.0) k.loss += eps / (double)C * (W * logs - sx);
    k.a = (XENT_T)(cg * A / s);
    k.b = (XENT_T)(-cg * eps / (double)C);
    k.gt = cg * ((1.0 - eps) * wt * dt / s + (A - (1.0 - eps) * wt) * et / s - eps / (double)C * wt);
    return k;
}

/*
 * row_sumexp_ex (same arguments and stored exponentials) that keeps the exact 1's
 * of the row's maxima out of the float lanes: returns s = sum exp(x - m) and sets
 * *rest = s - 1 = (number of maxima - 1) + sum of the other exponentials, so that
 * log1p(rest) and p_t - 1 keep their relative accuracy on confident rows, where a
 * float sum holding the 1 would lose everything below ~1e-7.  Exponentials that
 * are not < 1 (the maxima, or NaN) are summed apart, so NaN still propagates.
 * Chunk sums are added in chunk order (ce_rows_split relies on it).  `wr` as in
 * row_sumexp_ex.  `cm` (or NULL): the chunk maxima of row_max_chunks; a chunk
 * below m by XENT_ONES_MARGIN has no 1 to set apart and is summed plainly (the
 * same bits: its split sums are (sum, 0)).
 */
static double ce_sumexp_split(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e,
                              const XENT_T *XENT_RESTRICT v, double *w_sx, XENT_T cap,
                              const XENT_T *prefetch, int prefetch_whole, double *rest,
                              row_writer *wr, XENT_T *cm /* read only; non-const for gcc's -Wmaybe-uninitialized */)
{
    /* default options: loops specialised on e (the common fused and loss-only rows) */
    const int plain_opts = !v && !w_sx && cap == 0 && !wr;
    double r = 0.0, k = 0.0, sx = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t len = (c0 + XENT_CHUNK < n) ? XENT_CHUNK : n - c0;
        const XENT_T *pf = prefetch_whole ? (prefetch ? prefetch + c0 : NULL) : row_prefetch_chunk(prefetch, c0);
        const int ones = !cm || !(cm[c0 / XENT_CHUNK] - m < -XENT_ONES_MARGIN);
        double kc = 0.0, sxc = 0.0, rc;
        /* one chunk per call: the same per-chunk sums ce_rows_split combines */
        if (plain_opts && !ones)
            rc = e ? row_sumexp_ex(x + c0, len, m, e + c0, NULL, NULL, 0, pf, NULL, NULL)
                   : row_sumexp_ex(x + c0, len, m, NULL, NULL, NULL, 0, pf, NULL, NULL);
        else if (plain_opts)
            rc = e ? row_sumexp_ex(x + c0, len, m, e + c0, NULL, NULL, 0, pf, &kc, NULL)
                   : row_sumexp_ex(x + c0, len, m, NULL, NULL, NULL, 0, pf, &kc, NULL);
        else
            rc = row_sumexp_ex(x + c0, len, m, e ? e + c0 : NULL, v ? v + c0 : NULL, w_sx ? &sxc : NULL, cap,
                               pf, ones ? &kc : NULL, wr);
        r += rc;
        k += kc;
        sx += sxc;
    }
    if (w_sx) *w_sx = sx;
    *rest = (k - 1.0) + r;
    return k + r;
}

/*
 * A row whose class target is out of range although phase 0 found none (another
 * thread rewrote the targets during the call): NaN loss, zero gradient, counted
 * by the caller so the call still reports bad targets.  Never an index.
 */
XENT_INLINE void ce_row_lost_target(double *loss_row, XENT_T *g, int64_t C)
{
    *loss_row = (double)NAN;
    if (g) memset(g, 0, (size_t)C * sizeof(XENT_T));
}

/* Gradient factor of row r (grad_output / denominator * sample weight). */
XENT_INLINE double ce_row_factor(const xent_ce_args_t *a, int64_t r, double scale, double *sw)
{
    *sw = a->sample_weight ? (double)a->sample_weight[r] : 1.0;
    return scale * *sw * (a->grad_rows ? (double)a->grad_rows[r] : 1.0);
}

/*
 * One row.  Returns the row's loss (sample weight included).  `cg` is the
 * gradient factor of the row (grad_output / denominator * sample weight);
 * `g` is NULL for forward only; `t` < 0 with `q` != NULL means probability targets.
 */
static double ce_row(const XENT_T *x, int64_t C, int64_t t, const XENT_T *q, double sw, double cg,
                     double W, const xent_ce_args_t *a, XENT_T *g, int stream, const XENT_T *pf)
{
    const XENT_T *w = a->weight;
    const double eps = a->label_smoothing, z = a->z_loss;
    const XENT_T cap = (XENT_T)a->softcap;
    const int smooth = eps != 0.0;
    const double wt = (q == NULL && w) ? (double)w[t] : 1.0;
    /* With a softcap the capped logits are recomputed from x in every pass (never
       stored): the gradient needs sech^2 of the raw logits, which in place would
       otherwise be gone. */
    const XENT_T *L = x;
    const XENT_T cap_live = cap;
    const XENT_T raw_t = q ? 0 : x[t]; /* read before an in-place pass overwrites it */
    XENT_T m, cmax[XENT_MAX_CHUNK_MAXIMA];
    XENT_T *const cm = row_chunk_maxima(cmax, C); /* the chunk maxima, if the row has room */
    double s, sx = 0.0, lse, logs, loss, rest;

    m = row_max_chunks(L, C, cap_live, cm);

    if (q) {
        double Q, SQ;
        s = ce_sumexp_split(L, C, m, NULL, NULL, NULL, cap_live, pf, 0, &rest, NULL, cm);
        logs = log1p(rest);
        lse = (double)m + logs;
        ce_soft_stats(L, q, w, C, m, cap_live, eps, &Q, &SQ);
        loss = Q * logs - SQ;
        if (z != 0.0) loss += z * lse * lse; /* skipped at 0: lse**2 may overflow */
        if (g) {
            const double A = cg * (Q + (z != 0.0 ? 2.0 * z * lse : 0.0)) / s;
            ce_write_grad_general(L, C, m, (XENT_T)A, (XENT_T)(-cg * eps / (double)C),
                                  (XENT_T)(-cg * (1.0 - eps)), w, q, cap, g);
        }
        return sw * loss;
    }

    {
        const XENT_T xt = cap_live > 0 ? ce_cap1(x[t], cap) : L[t];
        /* store exp(x - m) in g (in place, or a small separate gradient) */
        const int keep_exp = g != NULL && !stream && cap == 0;
        ce_coefs_t k;
        /* Without a gradient this is the row's last pass: prefetch all of the next row
           (this row's lines are evicted as they are consumed).  With one, the row
           is read again, so only the first XENT_PREFETCH_MAX_ROW_BYTES of the next
           row come now and the rest during the gradient pass. */
        s = ce_sumexp_split(L, C, m, keep_exp ? g : NULL, w, smooth ? &sx : NULL, cap_live, pf, g == NULL,
                            &rest, NULL, cm);
        k = ce_class_coefs(m, s, rest, sx, xt, wt, W, C, cg, a);
        loss = k.loss;
        if (g) {
            if (cap > 0) {
                const double ch = cosh((double)raw_t / (double)cap);
                ce_write_grad_general(x, C, m, k.a, k.b, 0, w, NULL, cap, g);
                g[t] = (XENT_T)(k.gt / (ch * ch));
            } else {
                /* the part of the next row that pass 2 could not prefetch (see above) */
                const int64_t pf_skip = XENT_PREFETCH_MAX_ROW_BYTES / (int64_t)sizeof(XENT_T);
                const XENT_T *pf3 = (pf && C > pf_skip) ? pf + pf_skip : NULL;
                const int64_t pf3_n = pf3 ? C - pf_skip : 0;
                if (keep_exp)
                    row_axpb(g, C, XENT_SRC_EXP, m, k.a, k.b, w, g, XENT_STORE_CACHED, pf3, pf3_n);
                else
                    row_axpb(x, C, XENT_SRC_LOGITS, m, k.a, k.b, w, g,
                             stream ? XENT_STORE_STREAM : XENT_STORE_CACHED, pf3, pf3_n);
                g[t] = (XENT_T)k.gt;
            }
        }
    }
    return sw * loss;
}

/*
 * Class-target rows [lo, hi) without softcap into a separate gradient written
 * with streaming stores, software-pipelined like softmax_rows_streamed: while
 * row r is summed from cache (its exponentials kept in `e2`, two rows), the
 * gradient of the previous row is written out and row r + 1 is prefetched.
 * Same values and bits as ce_row.
 */
static void ce_rows_streamed(const XENT_T *x, const int64_t *target, int64_t lo, int64_t hi, int64_t C,
                             const xent_ce_args_t *a, double W, double scale, double *loss_rows,
                             XENT_T *grad, XENT_T *e2, int64_t *lost)
{
    const XENT_T *w = a->weight;
    const int smooth = a->label_smoothing != 0.0;
    XENT_T cmax[XENT_MAX_CHUNK_MAXIMA];
    XENT_T *const cm = row_chunk_maxima(cmax, C);
    row_writer wr;
    XENT_T *pending_g = NULL; /* row whose gradient wr is writing; its target entry last */
    int64_t pending_t = 0, r;
    double pending_gt = 0.0;
    int cur = 0;
    for (r = lo; r < hi; ++r) {
        const XENT_T *xr = x + r * C;
        XENT_T *e = e2 + cur * C;
        const int64_t t = xent_load_target(target + r);
        double sw, cg, s, rest, sx = 0.0;
        XENT_T m;
        ce_coefs_t k;
        if (t == a->ignore_index) {
            loss_rows[r] = 0.0;
            memset(grad + r * C, 0, (size_t)C * sizeof(XENT_T));
            continue;
        }
        if (!xent_class_ok(t, C)) {
            ce_row_lost_target(loss_rows + r, grad + r * C, C);
            ++*lost;
            continue;
        }
        cg = ce_row_factor(a, r, scale, &sw);
        m = row_max_chunks(xr, C, 0, cm);
        s = ce_sumexp_split(xr, C, m, e, w, smooth ? &sx : NULL, 0, r + 1 < hi ? xr + C : NULL, 0, &rest,
                            pending_g ? &wr : NULL, cm);
        if (pending_g) {
            row_writer_finish(&wr);
            pending_g[pending_t] = (XENT_T)pending_gt;
        }
        k = ce_class_coefs(m, s, rest, sx, xr[t], w ? (double)w[t] : 1.0, W, C, cg, a);
        loss_rows[r] = sw * k.loss;
        row_writer_start(&wr, e, 0, m, k.a, k.b, w, grad + r * C, C);
        pending_g = grad + r * C;
        pending_t = t;
        pending_gt = k.gt;
        cur ^= 1;
    }
    if (pending_g) {
        row_writer_finish(&wr);
        pending_g[pending_t] = (XENT_T)pending_gt;
    }
}

/*
 * Few classes (n_cols <= XENT_SMALL_C), class targets, no softcap: nr <= XV_N
 * rows at once, one per lane, same formulas as ce_row.  Targets were validated
 * in phase 0.  Inlined so that full blocks (nr == XV_N) keep their tiles in registers.
 */
XENT_INLINE void ce_small_block(const XENT_T *x, const int64_t *target, int64_t r0, int64_t nr,
                                int64_t C, const xent_ce_args_t *a, double W, double scale,
                                double *loss_rows, XENT_T *grad)
{
    xv cols[XENT_SMALL_C];
    XENT_T lb[XV_N];
    const XENT_T *w = a->weight;
    const double eps = a->label_smoothing, z = a->z_loss;
    const int smooth = eps != 0.0;
    const xv one = xv_set1((XENT_T)1);
    xv m, r = xv_zero(), kmax = xv_zero(), sx = xv_zero(), dt = xv_zero(), et = xv_zero(), jv = xv_zero();
    xv tv, wt, keep_f, lse, logs, loss, s, rest, sw, inv_s;
    xm keep;
    int64_t j, k;
    tv = xv_load_classes(target + r0, nr, a->ignore_index); /* ignored and padding rows: -1 */
    keep = xv_ge(tv, xv_zero());
    keep_f = xv_select(keep, one, xv_zero());
    wt = w ? xv_zero() : keep_f; /* with class weights: w[t] picked up in the column loop */
    sw = a->sample_weight ? xv_load_part(a->sample_weight + r0, nr, 1) : one;
    m = rows_block_load(x + r0 * C, C, nr, cols);
    for (j = 0; j < C; ++j) {
        const xv d = xv_sub(cols[j], m);
        const xv e = xv_exp_le0(d);
        const xm below = xv_gt(one, e); /* the maxima's 1's are summed apart */
        const xm is_t = xv_eq(tv, jv);
        cols[j] = e;
        r = xv_add_where(below, r, e);
        kmax = xv_add_where(xm_not(below), kmax, e);
        dt = xv_select(is_t, d, dt);
        et = xv_select(is_t, e, et);
        if (w) {
            const xv wj = xv_set1(w[j]);
            wt = xv_select(is_t, wj, wt);
            if (smooth) sx = xv_fmadd(wj, d, sx);
        } else if (smooth) {
            sx = xv_add(sx, d);
        }
        jv = xv_add(jv, one);
    }
    s = xv_add(kmax, r);
    rest = xv_add(xv_sub(kmax, one), r);
    logs = xv_log1p(rest);
    lse = xv_add(m, logs);
    /* (1-eps) w_t (log1p(rest) - (x_t - m)) + z w_t lse^2 [+ eps/C (W log s - sx)] */
    loss = xv_mul(xv_mul(xv_set1((XENT_T)(1.0 - eps)), wt), xv_sub(logs, dt));
    if (z != 0.0) /* skipped at 0: lse**2 overflows float32 for |lse| > 1.8e19, and 0 * inf is NaN */
        loss = xv_fmadd(xv_mul(xv_set1((XENT_T)z), wt), xv_mul(lse, lse), loss);
    if (smooth)
        loss = xv_fmadd(xv_set1((XENT_T)(eps / (double)C)), xv_fnmadd(one, sx, xv_mul(xv_set1((XENT_T)W), logs)),
                        loss);
    xv_storeu(lb, xv_select(keep, xv_mul(loss, sw), xv_zero()));
    for (k = 0; k < nr; ++k) loss_rows[r0 + k] = (double)lb[k];
    if (!grad) return;
    {
        const xv gr = a->grad_rows ? xv_load_part(a->grad_rows + r0, nr, 1) : one;
        const xv c = xv_mul(xv_mul(xv_set1((XENT_T)scale), sw), xv_mul(gr, keep_f));
        const xv hw = xv_mul(xv_set1((XENT_T)(1.0 - eps)), wt);
        /* A = hw + Ae; Ae (smoothing and z-loss part) is kept apart: A - hw cancels in float32 */
        const xv Ae0 = xv_set1((XENT_T)(eps * W / (double)C));
        const xv Ae = z != 0.0 ? xv_fmadd(xv_set1((XENT_T)(2.0 * z)), xv_mul(wt, lse), Ae0) : Ae0;
        const xv bv = xv_mul(c, xv_set1((XENT_T)(-eps / (double)C)));
        /* the target's entry: p_t - 1 = -rest / s when the target is a maximum */
        const xv dtt = xv_select(xv_eq(dt, xv_zero()), xv_sub(xv_zero(), rest), xv_sub(et, s));
        xv av, gt;
        inv_s = xv_div(one, s);
        av = xv_mul(xv_mul(c, xv_add(hw, Ae)), inv_s);
        gt = xv_mul(xv_fmadd(hw, dtt, xv_mul(Ae, et)), inv_s);
        gt = xv_mul(c, xv_fnmadd(xv_set1((XENT_T)(eps / (double)C)), wt, gt));
        jv = xv_zero();
        for (j = 0; j < C; ++j) {
            xv o = xv_fmadd(av, cols[j], w ? xv_mul(bv, xv_set1(w[j])) : bv);
            o = xv_select(xv_eq(tv, jv), gt, o);
            cols[j] = xv_select(keep, o, xv_zero());
            jv = xv_add(jv, one);
        }
        rows_block_store(grad + r0 * C, C, nr, cols);
    }
}

/* Full blocks [b0, b1) of XV_N rows each, with their prefetches (nb blocks in all). */
XENT_INLINE void ce_small_blocks(const XENT_T *x, const int64_t *target, int64_t b0, int64_t b1, int64_t nb,
                                 int64_t C, const xent_ce_args_t *a, double W, double scale,
                                 double *loss_rows, XENT_T *grad)
{
    int64_t b;
    for (b = b0; b < b1; ++b) {
        rows_block_prefetch(x, b, nb, C);
        ce_small_block(x, target, b * XV_N, XV_N, C, a, W, scale, loss_rows, grad);
    }
}

/*
 * The same with C known at compile time for every C up to one tile (XV_N): the
 * column loops unroll and the block's columns stay in registers instead of a
 * stack array (about 15% faster at C = 10 in float32 with AVX-512).
 */
static void ce_small_blocks_any(const XENT_T *x, const int64_t *target, int64_t b0, int64_t b1, int64_t nb,
                                int64_t C, const xent_ce_args_t *a, double W, double scale,
                                double *loss_rows, XENT_T *grad)
{
    switch (C) {
#define XENT_SMALL_CASE(K)                                                             \
    case K:                                                                            \
        if (K <= XV_N) {                                                               \
            ce_small_blocks(x, target, b0, b1, nb, K, a, W, scale, loss_rows, grad);   \
            return;                                                                    \
        }                                                                              \
        break;
    XENT_SMALL_CASE(2) XENT_SMALL_CASE(3) XENT_SMALL_CASE(4) XENT_SMALL_CASE(5)
    XENT_SMALL_CASE(6) XENT_SMALL_CASE(7) XENT_SMALL_CASE(8) XENT_SMALL_CASE(9)
    XENT_SMALL_CASE(10) XENT_SMALL_CASE(11) XENT_SMALL_CASE(12) XENT_SMALL_CASE(13)
    XENT_SMALL_CASE(14) XENT_SMALL_CASE(15) XENT_SMALL_CASE(16)
#undef XENT_SMALL_CASE
    default:
        break;
    }
    ce_small_blocks(x, target, b0, b1, nb, C, a, W, scale, loss_rows, grad);
}

/*
 * Fewer rows than threads: each row is split over the team on XENT_CHUNK
 * boundaries.  The chunk sums are combined in chunk order, exactly as the serial
 * row_sumexp does, so the results are bitwise those of ce_row.  `target` is a
 * private snapshot (ce_snapshot_targets): the threads of the team branch on it
 * around barriers, so they must all read the same values.
 */
#define XENT_SPLIT_MAX_CHUNKS 1024
#define XENT_SPLIT_MAX_THREADS 256

static void ce_rows_split(const XENT_T *x, const int64_t *target, int64_t n_rows, int64_t C,
                          const xent_ce_args_t *a, double W, double scale, double *loss_rows,
                          XENT_T *grad, int nt)
{
    const int64_t nch = (C + XENT_CHUNK - 1) / XENT_CHUNK;
    const int smooth = a->label_smoothing != 0.0;
    const int stream = rows_stream_output(x, grad, n_rows, C);
    double cr[XENT_SPLIT_MAX_CHUNKS], ck[XENT_SPLIT_MAX_CHUNKS], csx[XENT_SPLIT_MAX_CHUNKS];
    XENT_T pm[XENT_SPLIT_MAX_THREADS];
    /* One team for all rows (a region per row would wake the team per row).  Two
       barriers per row suffice: pm is read before the second barrier of a row and
       rewritten after it; cr/ck/csx are read before the first barrier of the next
       row and rewritten after it. */
    XENT_PRAGMA_OMP(parallel num_threads(nt))
    {
        const int k = xent_thread_id(), team = xent_team_size();
        int64_t clo, chi, lo, hi, ch, r;
        xent_block_range(nch, team, k, &clo, &chi);
        lo = clo * XENT_CHUNK;
        hi = chi * XENT_CHUNK < C ? chi * XENT_CHUNK : C;
        for (r = 0; r < n_rows; ++r) {
            const XENT_T *xr = x + r * C;
            XENT_T *gr = grad ? grad + r * C : NULL;
            const int64_t t = target[r]; /* a private snapshot: every thread sees the same value */
            double sw;
            const double cg = ce_row_factor(a, r, scale, &sw);
            XENT_T m, xt;
            double rs = 0.0, ks = 0.0, sx = 0.0, wt;
            ce_coefs_t kc;
            int j;
            /* the same branch in every thread: no barrier skipped unevenly */
            if (t == a->ignore_index || !xent_class_ok(t, C)) {
                if (k == 0) loss_rows[r] = t == a->ignore_index ? 0.0 : (double)NAN;
                if (gr && hi > lo) memset(gr + lo, 0, (size_t)(hi - lo) * sizeof(XENT_T));
                continue;
            }
            wt = a->weight ? (double)a->weight[t] : 1.0;
            xt = xr[t];
            pm[k] = hi > lo ? row_max(xr + lo, hi - lo) : xent_neg_inf();
            XENT_PRAGMA_OMP(barrier) /* also: every thread has read x_t before it is overwritten */
            m = pm[0];
            for (j = 1; j < team; ++j) m = xv_hmax(xv_max(xv_set1(m), xv_set1(pm[j])));
            for (ch = clo; ch < chi; ++ch) {
                const int64_t c0 = ch * XENT_CHUNK, len = (c0 + XENT_CHUNK < C) ? XENT_CHUNK : C - c0;
                csx[ch] = 0.0;
                cr[ch] = row_sumexp_ex(xr + c0, len, m, (gr && !stream) ? gr + c0 : NULL,
                                       a->weight ? a->weight + c0 : NULL, smooth ? &csx[ch] : NULL,
                                       0, NULL, &ck[ch], NULL);
            }
            XENT_PRAGMA_OMP(barrier)
            for (ch = 0; ch < nch; ++ch) { /* chunk order, as ce_sumexp_split */
                rs += cr[ch];
                ks += ck[ch];
                sx += csx[ch];
            }
            kc = ce_class_coefs(m, ks + rs, (ks - 1.0) + rs, sx, xt, wt, W, C, cg, a);
            if (k == 0) loss_rows[r] = sw * kc.loss;
            if (gr && hi > lo) {
                const XENT_T *v = a->weight ? a->weight + lo : NULL;
                if (!stream) row_axpb(gr + lo, hi - lo, XENT_SRC_EXP, m, kc.a, kc.b, v, gr + lo,
                                       XENT_STORE_CACHED, NULL, 0);
                else row_axpb(xr + lo, hi - lo, XENT_SRC_LOGITS, m, kc.a, kc.b, v, gr + lo,
                              XENT_STORE_STREAM, NULL, 0);
                if (t >= lo && t < hi) gr[t] = (XENT_T)kc.gt;
            }
        }
        if (stream) xv_stream_fence();
    }
}

/*
 * Cross-entropy over the rows of (n_rows, n_cols) logits (xent_ce_call): the
 * per-row losses (double), their sum and the mean's denominator, and the
 * gradient unless c->grad is NULL.
 * Returns the number of class targets outside [0, C) that are not ignore_index;
 * if phase 0 finds any, nothing is written.  A target that another thread moves
 * out of range after phase 0 gives its row a NaN loss and a zero gradient and is
 * counted too (the other rows are computed as usual).
 */
int64_t XENT_FN(xent_ce_rows)(xent_ce_call *c)
{
    const xent_ce_args_t args = ce_args_of(c), *a = &args;
    const XENT_T *x = (const XENT_T *)c->x, *q = (const XENT_T *)c->q;
    const int64_t *target = c->target;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    const int n_threads = c->n_threads;
    double *loss_rows = c->loss_rows;
    XENT_T *grad = (XENT_T *)c->grad;
    double denom, W = (double)n_cols, scale;
    int64_t i, lost = 0; /* rows whose target went out of range during the call */
    int nt;
    const int stream = rows_stream_output(x, grad, n_rows, n_cols);

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

    if (n_rows < n_threads && n_rows <= XENT_SPLIT_MAX_THREADS && q == NULL && a->softcap == 0 &&
        n_cols > XENT_SMALL_C) {
        const int64_t nch = (n_cols + XENT_CHUNK - 1) / XENT_CHUNK;
        nt = xent_threads_for(n_rows * n_cols, nch, n_threads);
        if (nt > 1 && nch <= XENT_SPLIT_MAX_CHUNKS && nt <= XENT_SPLIT_MAX_THREADS) {
            int64_t snap[XENT_SPLIT_MAX_THREADS];
            for (i = 0; i < n_rows; ++i) {
                snap[i] = xent_load_target(target + i);
                lost += snap[i] != a->ignore_index && !xent_class_ok(snap[i], n_cols);
            }
            ce_rows_split(x, snap, n_rows, n_cols, a, W, scale, loss_rows, grad, nt);
            c->total = xent_sum_doubles(loss_rows, n_rows);
            c->denom = denom;
            return lost;
        }
    }
    nt = xent_threads_for(n_rows * n_cols, n_rows, n_threads);
    if (XV_N > 1 && q == NULL && a->softcap == 0 && n_cols <= XENT_SMALL_C) {
        /* Fixed groups of blocks, handed out as threads become free; each group also
           sums its losses (in a fixed order: the total does not depend on the team). */
        enum { MAX_GROUPS = 1024 };
        const int64_t nb = (n_rows + XV_N - 1) / XV_N;
        double gsum[MAX_GROUPS];
        int64_t gsz = 64, ng;
        while ((nb + gsz - 1) / gsz > MAX_GROUPS) gsz *= 2;
        ng = (nb + gsz - 1) / gsz;
        XENT_PRAGMA_OMP(parallel for schedule(dynamic, 1) num_threads(nt) if(nt > 1))
        for (i = 0; i < ng; ++i) {
            const int64_t b1 = (i + 1) * gsz < nb ? (i + 1) * gsz : nb;
            const int64_t lo = i * gsz * XV_N, hi = b1 * XV_N < n_rows ? b1 * XV_N : n_rows;
            const int64_t b_full = b1 * XV_N <= n_rows ? b1 : b1 - 1; /* the last block may be partial */
            ce_small_blocks_any(x, target, i * gsz, b_full, nb, n_cols, a, W, scale, loss_rows, grad);
            if (b_full < b1)
                ce_small_block(x, target, b_full * XV_N, n_rows - b_full * XV_N, n_cols, a, W, scale, loss_rows, grad);
            gsum[i] = xent_sum_doubles(loss_rows + lo, hi - lo);
        }
        c->total = xent_sum_doubles(gsum, ng);
        c->denom = denom;
        return XENT_OK;
    }
    if (stream && a->scratch && q == NULL && a->softcap == 0) {
        XENT_PRAGMA_OMP(parallel num_threads(nt) if(nt > 1) reduction(+:lost))
        {
            int64_t lo, hi;
            xent_block_range(n_rows, xent_team_size(), xent_thread_id(), &lo, &hi);
            ce_rows_streamed(x, target, lo, hi, n_cols, a, W, scale, loss_rows, grad,
                             a->scratch + 2 * xent_thread_id() * n_cols, &lost);
            xv_stream_fence();
        }
        c->total = xent_sum_doubles(loss_rows, n_rows);
        c->denom = denom;
        return lost;
    }
    XENT_PRAGMA_OMP(parallel num_threads(nt) if(nt > 1) reduction(+:lost))
    {
        int64_t r;
        XENT_PRAGMA_OMP(for schedule(static))
        for (r = 0; r < n_rows; ++r) {
            const XENT_T *xr = x + r * n_cols;
            XENT_T *gr = grad ? grad + r * n_cols : NULL;
            const int64_t t = q ? -1 : xent_load_target(target + r);
            double sw, cg;
            if (q == NULL && t == a->ignore_index) {
                loss_rows[r] = 0.0;
                if (gr) memset(gr, 0, (size_t)n_cols * sizeof(XENT_T));
                continue;
            }
            if (q == NULL && !xent_class_ok(t, n_cols)) {
                ce_row_lost_target(loss_rows + r, gr, n_cols);
                ++lost;
                continue;
            }
            cg = ce_row_factor(a, r, scale, &sw);
            loss_rows[r] = ce_row(xr, n_cols, t, q ? q + r * n_cols : NULL, sw, cg, W, a, gr, stream,
                                  row_prefetch_target(x, r, n_rows, n_cols));
        }
        if (stream) xv_stream_fence();
    }
    c->total = xent_sum_doubles(loss_rows, n_rows);
    c->denom = denom;
    return lost;
}

/*
 * Negative log-likelihood on log-probabilities (no softmax): the loss of a row
 * is -w_t * logp_t, its gradient -w_t at the target and 0 elsewhere.  Same
 * arguments and return value as xent_ce_rows (q, label smoothing, z-loss and
 * softcap are not used).
 */
int64_t XENT_FN(xent_nll_rows)(xent_ce_call *c)
{
    const xent_ce_args_t args = ce_args_of(c), *a = &args;
    const XENT_T *logp = (const XENT_T *)c->x;
    const int64_t *target = c->target;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    const int n_threads = c->n_threads;
    double *loss_rows = c->loss_rows;
    XENT_T *grad = (XENT_T *)c->grad;
    double denom, scale;
    int64_t r, lost = 0;
    int nt;
    const int64_t bad = ce_scan_targets(target, n_rows, n_cols, a, n_threads, &denom);
    if (bad) return bad;
    scale = a->mean ? a->grad_scale / denom : a->grad_scale;
    nt = xent_threads_for(grad ? n_rows * n_cols : n_rows, n_rows, n_threads);
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1) reduction(+:lost))
    for (r = 0; r < n_rows; ++r) {
        const int64_t t = xent_load_target(target + r);
        XENT_T *gr = grad ? grad + r * n_cols : NULL;
        double wt;
        if (t == a->ignore_index) {
            loss_rows[r] = 0.0;
            if (gr) memset(gr, 0, (size_t)n_cols * sizeof(XENT_T));
            continue;
        }
        if (!xent_class_ok(t, n_cols)) {
            ce_row_lost_target(loss_rows + r, gr, n_cols);
            ++lost;
            continue;
        }
        wt = a->weight ? (double)a->weight[t] : 1.0;
        loss_rows[r] = -wt * (double)logp[r * n_cols + t];
        if (gr) {
            memset(gr, 0, (size_t)n_cols * sizeof(XENT_T));
            gr[t] = (XENT_T)(-wt * scale * (a->grad_rows ? (double)a->grad_rows[r] : 1.0));
        }
    }
    c->total = xent_sum_doubles(loss_rows, n_rows);
    c->denom = denom;
    return lost;
}

#endif /* XENT_CE_H */
