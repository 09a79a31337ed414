/*
 * xent_scores.h -- token_scores: per-row logsumexp, entropy, target log-prob,
 * target rank and top-k of softmax(x / T), reading each row once from memory.
 * Included once per kernel translation unit (see xent_instantiate.h).
 *
 * Design.  A row is processed in chunks of XENT_CHUNK elements:
 *   pass A (from memory): s = x / T (stored in a stack chunk buffer when
 *     T != 1, so the division is done once), chunk maximum, the rank count
 *     #{s_j > s_t} in float lanes (exact: <= XENT_CHUNK per lane), and the
 *     top-k filter: a vector whose lanes are all <= the current k-th best
 *     (the root of a min-heap held in the caller's output row) is skipped;
 *     otherwise its lanes are offered to the heap one by one.  The scan is in
 *     index order, so an element equal to the k-th best always loses the tie
 *     (lower index wins) and the strict filter is exact.
 *   pass B (from L1): S = E + Q, with E the (exact) number of elements equal
 *     to the running maximum m and Q = sum of e_j = exp(s_j - m) over the
 *     others, and W = sum e_j (s_j - m); when a later chunk raises m they are
 *     rescaled in double: Q' = r S, E' = 0, W' = r (W + (m - m') S), r = exp(m - m').
 * Then lse = m + log S, entropy = log S - W / S (two non-negative terms, no
 * cancellation), logprob_t = (s_t - m) - log S, all in double, rounded once;
 * log S = log1p(Q) when E = 1, so a confident token's logprob (near 0) keeps
 * its relative precision.
 * Lanes with s_j = -inf have e_j = 0 and (s_j - m) clamped to a finite value,
 * so they add exactly 0 to W (0 log 0 = 0).  float32 lane sums are per chunk
 * and the chunk sums are in double (the xent_rowops.h policy).
 *
 * Top-k order: larger value first, NaN above everything (as torch.topk), ties
 * by the lower index.  The heap starts full of "empty" slots (-inf, INT64_MAX);
 * -inf elements never pass the filter, so a row with fewer than k elements
 * above -inf gets its remaining slots filled by a rare second scan taking the
 * -inf elements in index order.  The final heap is sorted in place, best first.
 *
 * Non-finite rows (as torch): if the row maximum is +inf, or the row is all
 * -inf, or holds NaN, logsumexp follows torch.logsumexp (+inf / -inf / NaN),
 * and entropy, logprob and top_logprobs are NaN.  rank is always the IEEE
 * count 1 + #{s_j > s_t} (a NaN target has rank 1).
 *
 * Per-row results depend only on the row (never on the thread count).
 * Returns the number of targets outside [0, n_cols) that are not ignore_index
 * (their logprob is NaN and rank -1; nothing out of bounds is read).
 */
#ifndef XENT_SCORES_H
#define XENT_SCORES_H

#include "xent_rowops.h"

#define XS_EMPTY INT64_MAX /* index of an empty top-k slot */

/*
 * Top-k heap.  While a row is scanned the k value slots hold order-preserving
 * integer keys instead of values (stored with memcpy): key(v) compares as v
 * does, with -0 == +0 and every NaN above +inf, so a comparison is two integer
 * compares and child selection is branch-free.  The root is the lowest ranked.
 */
#if XENT_F32
typedef uint32_t xs_uk;
#define XS_SIGN ((xs_uk)1 << 31)
#else
typedef uint64_t xs_uk;
#define XS_SIGN ((xs_uk)1 << 63)
#endif

XENT_INLINE xs_uk xs_key(XENT_T v)
{
    const XENT_T z = v + (XENT_T)0; /* -0 -> +0 */
    xs_uk b;
    memcpy(&b, &z, sizeof b);
    b = (b & XS_SIGN) ? ~b : (b | XS_SIGN);
    return (v != v) ? ~(xs_uk)0 : b;
}

XENT_INLINE XENT_T xs_unkey(xs_uk k)
{
    const xs_uk b = (k & XS_SIGN) ? (k & ~XS_SIGN) : ~k;
    XENT_T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

XENT_INLINE xs_uk xs_kget(const XENT_T *hv, int64_t j)
{
    xs_uk k;
    memcpy(&k, hv + j, sizeof k);
    return k;
}

XENT_INLINE void xs_kset(XENT_T *hv, int64_t j, xs_uk k) { memcpy(hv + j, &k, sizeof k); }

/* True if (ka, ia) ranks above (kb, ib): larger key, then lower index. */
XENT_INLINE int xs_better(xs_uk ka, int64_t ia, xs_uk kb, int64_t ib)
{
    return (ka > kb) | ((ka == kb) & (ia < ib));
}

/* Put (kv, id) at `pos` and restore the min-heap below it (heap of k slots). */
static void xs_sift(XENT_T *hv, int64_t *hi, int64_t k, int64_t pos, xs_uk kv, int64_t id)
{
    for (;;) {
        int64_t c = 2 * pos + 1;
        xs_uk kc;
        if (c >= k) break;
        kc = xs_kget(hv, c);
        if (c + 1 < k) {
            const xs_uk kd = xs_kget(hv, c + 1);
            const int d = xs_better(kc, hi[c], kd, hi[c + 1]); /* c + 1 is the lower child */
            c += d;
            kc = d ? kd : kc;
        }
        if (!xs_better(kv, id, kc, hi[c])) break;
        xs_kset(hv, pos, kc);
        hi[pos] = hi[c];
        pos = c;
    }
    xs_kset(hv, pos, kv);
    hi[pos] = id;
}

XENT_INLINE int xs_ctz32(uint32_t b)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctz(b);
#else
    int n = 0;
    while (!(b & 1u)) {
        b >>= 1;
        ++n;
    }
    return n;
#endif
}

/*
 * Offer the elements s[l] for the set bits l of `bits` (index base + l, all
 * above the indices in the heap) to the heap, in index order: an element
 * enters if it is above the root or NaN (an equal one loses on its index).
 * -inf elements never enter here; xs_fill_neginf gives them the empty slots.
 */
static void xs_offer(const XENT_T *s, uint32_t bits, int64_t base, XENT_T *hv, int64_t *hi, int64_t k)
{
    XENT_T th = xs_unkey(xs_kget(hv, 0));
    while (bits) {
        const int l = xs_ctz32(bits);
        const XENT_T v = s[l];
        bits &= bits - 1u;
        if (!(v > th) && v == v) continue;
        if (v != v && th != th) continue; /* both NaN: the lower index (in the heap) wins */
        xs_sift(hv, hi, k, 0, xs_key(v), base + l);
        th = xs_unkey(xs_kget(hv, 0));
    }
}

/* Rare path: fill the remaining empty slots with the row's -inf elements, in index order. */
static void xs_fill_neginf(const XENT_T *x, int64_t n, XENT_T T, int scaled, XENT_T *hv, int64_t *hi,
                           int64_t k)
{
    const xs_uk kinf = xs_key(xent_neg_inf());
    int64_t j;
    for (j = 0; j < n && hi[0] == XS_EMPTY; ++j) {
        const XENT_T s = scaled ? x[j] / T : x[j];
        if (s == xent_neg_inf()) xs_sift(hv, hi, k, 0, kinf, j);
    }
}

/* Sort the heap in place, best first (heapsort: the lowest ranked goes last). */
static void xs_heap_sort(XENT_T *hv, int64_t *hi, int64_t k)
{
    int64_t e;
    for (e = k - 1; e > 0; --e) {
        const xs_uk kl = xs_kget(hv, e);
        const int64_t il = hi[e];
        xs_kset(hv, e, xs_kget(hv, 0));
        hi[e] = hi[0];
        xs_sift(hv, hi, e, 0, kl, il);
    }
}

/*
 * Pass B over one cache-resident chunk s[0..n) with running maximum m:
 * *Q += sum of exp(s - m) over elements below m, *E += the number of elements
 * equal to m (exact; each contributes exp(0) = 1), and *W += sum exp(s - m) (s - m),
 * with -inf lanes adding exactly 0 to W.  Keeping the ones out of Q keeps
 * log S = log1p(Q) accurate to relative precision for confident rows (S near 1).
 * `has_max` (a literal at each call) is 0 for a chunk whose maximum is below m:
 * it has no element equal to m, and the comparisons are skipped (same sums).
 * `prefetch` (or NULL): n elements to bring into L2 alongside.
 */
#define XS_HAS_MAX_FLAG 1
XENT_INLINE void xs_sumexp_ent(const XENT_T *XENT_RESTRICT s, int64_t n, XENT_T m, double *Q, double *E,
                               double *W, const int has_max, const XENT_T *prefetch)
{
    const xv vm = xv_set1(m), lo = xv_set1((XENT_T)XENT_EXP_LO), one = xv_set1((XENT_T)1), zero = xv_zero();
    xv a0 = zero, a1 = zero, b0 = zero, b1 = zero, c0 = zero;
    int64_t i = 0;
    for (; i + 2 * XV_N <= n; i += 2 * XV_N) {
        const xv s0 = xv_loadu(s + i), s1 = xv_loadu(s + i + XV_N);
        if (prefetch) { /* what is read next, while this is compute-bound in L1 */
            int off;
            for (off = 0; off < (int)(2 * XV_N * sizeof(XENT_T)); off += 64)
                XENT_PREFETCH_L2((const char *)(prefetch + i) + off);
        }
        const xv d0 = xv_sub(s0, vm), d1 = xv_sub(s1, vm);
        const xv e0 = xv_exp_le0(d0), e1 = xv_exp_le0(d1);
        if (has_max) {
            const xm q0 = xv_eq(s0, vm), q1 = xv_eq(s1, vm);
            a0 = xv_add(a0, xv_select(q0, zero, e0));
            a1 = xv_add(a1, xv_select(q1, zero, e1));
            c0 = xv_add(c0, xv_add(xv_select(q0, one, zero), xv_select(q1, one, zero)));
        } else {
            a0 = xv_add(a0, e0);
            a1 = xv_add(a1, e1);
        }
        /* exp(d) == exp(max(d, EXP_LO)) (xv_exp clamps), and d = -inf becomes finite */
        b0 = xv_fmadd(e0, xv_max(d0, lo), b0);
        b1 = xv_fmadd(e1, xv_max(d1, lo), b1);
    }
    for (; i < n; i += XV_N) {
        const xv s0 = xv_load_part(s + i, n - i, xent_neg_inf());
        const xv d0 = xv_sub(s0, vm);
        const xv e0 = xv_exp_le0(d0);
        if (has_max) {
            const xm q0 = xv_eq(s0, vm);
            a0 = xv_add(a0, xv_select(q0, zero, e0));
            c0 = xv_add(c0, xv_select(q0, one, zero));
        } else {
            a0 = xv_add(a0, e0);
        }
        b0 = xv_fmadd(e0, xv_max(d0, lo), b0);
    }
    *Q += xv_hsum(xv_add(a0, a1));
    *E += xv_hsum(c0);
    *W += xv_hsum(xv_add(b0, b1));
}

/* Per-row results of one row. */
typedef struct {
    XENT_T lse, ent, lp;
    int64_t rank;
} XENT_CAT2(xs_row_out, XENT_SFX);
#define XS_OUT XENT_CAT2(xs_row_out, XENT_SFX)

/*
 * One row x[0..n) (n >= 1); `next` (or NULL) is prefetched while its last chunk
 * is exponentiated (row_prefetch_target).  `t` is a valid target index or -1; the flags are
 * compile-time constants at every call site (the compiler specialises the loop).
 * hv/hi: k slots of the caller's top-k output rows, used as the heap.
 * sbuf: XENT_CHUNK elements of stack scratch for the scaled chunk (when T != 1).
 */
XENT_INLINE XS_OUT xs_row(const XENT_T *XENT_RESTRICT x, int64_t n, const XENT_T *next, XENT_T T, int64_t t,
                          XENT_T *hv, int64_t *hi, int64_t k, XENT_T *XENT_RESTRICT sbuf, const int scaled,
                          const int do_rank, const int do_topk)
{
    XS_OUT r;
    const xv vT = xv_set1(T), one = xv_set1((XENT_T)1), zero = xv_zero();
    const XENT_T st = t >= 0 ? (scaled ? x[t] / T : x[t]) : (XENT_T)0;
    const xv vst = xv_set1(st);
    XENT_T m = xent_neg_inf();
    double Q = 0.0, E = 0.0, W = 0.0; /* S = E + Q (see xs_sumexp_ent) */
    int64_t cnt = 0, c0, j;
    xv thr = xv_set1(xent_neg_inf());

    if (do_topk) {
        const xs_uk kinf = xs_key(xent_neg_inf());
        for (j = 0; j < k; ++j) {
            xs_kset(hv, j, kinf);
            hi[j] = XS_EMPTY;
        }
    }
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t len = (c0 + XENT_CHUNK < n) ? XENT_CHUNK : n - c0;
        const XENT_T *xc = x + c0;
        const XENT_T *src = scaled ? sbuf : xc;
        XENT_T cm;
        if (!scaled && !do_rank && !do_topk) {
            cm = row_max(xc, len);
        } else {
            xv mx0 = xv_set1(xent_neg_inf()), mx1 = mx0, cv0 = zero, cv1 = zero;
            int64_t i = 0;
            for (; i + 2 * XV_N <= len; i += 2 * XV_N) {
                xv v0 = xv_loadu(xc + i), v1 = xv_loadu(xc + i + XV_N);
                if (scaled) {
                    v0 = xv_div(v0, vT);
                    v1 = xv_div(v1, vT);
                    xv_storeu(sbuf + i, v0);
                    xv_storeu(sbuf + i + XV_N, v1);
                }
                mx0 = xv_max(mx0, v0);
                mx1 = xv_max(mx1, v1);
                if (do_rank) {
                    cv0 = xv_add(cv0, xv_select(xv_gt(v0, vst), one, zero));
                    cv1 = xv_add(cv1, xv_select(xv_gt(v1, vst), one, zero));
                }
                if (do_topk) {
                    const uint32_t b = xm_bits(xv_not_le(v0, thr)) | (xm_bits(xv_not_le(v1, thr)) << XV_N);
                    if (XENT_UNLIKELY(b != 0)) {
                        xs_offer(src + i, b, c0 + i, hv, hi, k);
                        thr = xv_set1(xs_unkey(xs_kget(hv, 0)));
                    }
                }
            }
            for (; i < len; i += XV_N) {
                const int64_t nv = (len - i < XV_N) ? len - i : XV_N;
                xv v0 = xv_load_part(xc + i, nv, xent_neg_inf());
                if (scaled) {
                    v0 = xv_div(v0, vT);
                    xv_store_part(sbuf + i, v0, nv);
                }
                mx0 = xv_max(mx0, v0);
                if (do_rank) cv0 = xv_add(cv0, xv_select(xv_gt(v0, vst), one, zero));
                if (do_topk) {
                    const uint32_t b = xm_bits(xv_not_le(v0, thr)) & ((1u << nv) - 1u); /* nv <= 16 */
                    if (XENT_UNLIKELY(b != 0)) {
                        xs_offer(src + i, b, c0 + i, hv, hi, k);
                        thr = xv_set1(xs_unkey(xs_kget(hv, 0)));
                    }
                }
            }
            cm = xv_hmax(xv_max(mx0, mx1));
            if (do_rank) cnt += (int64_t)xv_hsum(xv_add(cv0, cv1));
        }
        if (cm > m) {
            if (E != 0.0) { /* the old maxima now fall below m */
                const double dm = (double)m - (double)cm, f = exp(dm), S = E + Q;
                W = f * (W + dm * S);
                Q = f * S;
                E = 0.0;
            }
            m = cm;
        }
        /* all -inf so far (S = W = 0 stay exact) or +inf (rare path below) */
        if (XENT_LIKELY(isfinite(m))) {
            const XENT_T *pf = c0 + len < n ? xc + len : next;
            if (cm < m) xs_sumexp_ent(src, len, m, &Q, &E, &W, 0, pf);
            else xs_sumexp_ent(src, len, m, &Q, &E, &W, 1, pf);
        }
    }
    if (do_topk && hi[0] == XS_EMPTY) xs_fill_neginf(x, n, T, scaled, hv, hi, k);
    if (do_topk) xs_heap_sort(hv, hi, k);
    r.rank = do_rank ? 1 + cnt : -1;
    if (XENT_LIKELY(isfinite(m))) {
        const double S = E + Q, logS = (E == 1.0) ? log1p(Q) : log(S), dm = (double)m;
        r.lse = (XENT_T)(dm + logS);
        r.ent = (XENT_T)(logS - W / S);
        r.lp = (XENT_T)(((double)st - dm) - logS);
        if (do_topk)
            for (j = 0; j < k; ++j) hv[j] = (XENT_T)(((double)xs_unkey(xs_kget(hv, j)) - dm) - logS);
    } else {
        /* torch: logsumexp is NaN with a NaN, else the max (+inf, or -inf for all -inf) */
        r.lse = row_has_nan(x, n) ? (XENT_T)NAN : m;
        r.ent = (XENT_T)NAN;
        r.lp = (XENT_T)NAN;
        if (do_topk)
            for (j = 0; j < k; ++j) hv[j] = (XENT_T)NAN;
    }
    return r;
}

/*
 * token_scores over the rows of a contiguous (n_rows, n_cols) array, n_cols >= 1
 * (xent_scores_call): target (n_rows int64, or NULL) with opt.ignore_index;
 * opt.temperature > 0; outputs lse, entropy (n_rows), logprob and rank (n_rows,
 * both or neither, only with a target), top_logprobs / top_indices
 * (n_rows x opt.top_k, 0 <= top_k <= n_cols; NULL when top_k == 0).
 * Returns the number of out-of-range targets (not ignore_index).
 */
int64_t XENT_FN(xent_token_scores_rows)(xent_scores_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    const int nt = xent_threads_for(n_rows * n_cols, n_rows, c->n_threads);
    const XENT_T T = (XENT_T)c->opt.temperature;
    const int scaled = T != (XENT_T)1;
    const int64_t k = (c->top_logprobs && c->top_indices) ? c->opt.top_k : 0;
    const int64_t *tgt = c->target;
    const int64_t ign = c->opt.ignore_index;
    XENT_T *lse = (XENT_T *)c->lse, *entropy = (XENT_T *)c->entropy, *logprob = (XENT_T *)c->logprob;
    XENT_T *top_logprobs = (XENT_T *)c->top_logprobs;
    int64_t bad = 0, i;
    (void)nt; /* unused in a serial build */
    if (n_cols <= 0) return XENT_OK;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1) reduction(+:bad))
    for (i = 0; i < n_rows; ++i) {
        const XENT_T *xr = x + i * n_cols, *next = row_prefetch_target(x, i, n_rows, n_cols);
        XENT_T *hv = k ? top_logprobs + i * k : NULL;
        int64_t *hi = k ? c->top_indices + i * k : NULL;
        int64_t t = -1;
        XENT_T sbuf[XENT_CHUNK]; /* 8 or 16 KiB of stack: the chunk of x / T */
        XS_OUT r;
        if (tgt) {
            const int64_t ti = xent_load_target(tgt + i);
            if (ti != ign) {
                if (xent_class_ok(ti, n_cols)) t = ti;
                else ++bad;
            }
        }
        switch ((scaled ? 4 : 0) | (t >= 0 ? 2 : 0) | (k > 0 ? 1 : 0)) {
        case 0: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 0, 0, 0); break;
        case 1: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 0, 0, 1); break;
        case 2: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 0, 1, 0); break;
        case 3: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 0, 1, 1); break;
        case 4: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 1, 0, 0); break;
        case 5: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 1, 0, 1); break;
        case 6: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 1, 1, 0); break;
        default: r = xs_row(xr, n_cols, next, T, t, hv, hi, k, sbuf, 1, 1, 1); break;
        }
        lse[i] = r.lse;
        entropy[i] = r.ent;
        if (tgt && logprob && c->rank) {
            logprob[i] = t >= 0 ? r.lp : (XENT_T)NAN;
            c->rank[i] = r.rank;
        }
    }
    return bad;
}

#undef XS_OUT

#endif /* XENT_SCORES_H */
