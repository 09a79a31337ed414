/*
 * xent_rowops.h -- the row building blocks every kernel family composes.
 *
 * A "row" is n contiguous elements.  Each block is one vectorised loop with a
 * masked tail.  Sums of float32 values are accumulated in float lanes over a
 * chunk of XENT_CHUNK elements and the chunk sums in double, so the error of a
 * 262,144-class sum stays near that of a short float sum (policy documented in
 * the Python docstrings).  Nothing here allocates or branches on data except
 * for NaN/inf bookkeeping.
 */
#ifndef XENT_ROWOPS_H
#define XENT_ROWOPS_H

#include "xent_math.h"

#define XENT_CHUNK 2048 /* elements per float-lane partial sum; 8 KiB of float32 fits L1 */

XENT_INLINE XENT_T xent_neg_inf(void) { return -(XENT_T)INFINITY; }

/*
 * Optional logit transform applied as elements are loaded: cap > 0 replaces x
 * by cap * tanh(x / cap) (logit soft-capping).  Call sites pass a literal 0 when
 * they never cap, and the branch disappears after inlining.
 */
XENT_INLINE xv xv_cap(xv v, XENT_T cap)
{
    xv dy;
    return cap > 0 ? xv_softcap(v, cap, (XENT_T)1 / cap, &dy) : v;
}

/* Largest (transformed) element; a NaN may or may not win, callers see NaN in the sums. */
XENT_INLINE XENT_T row_max_ex(const XENT_T *XENT_RESTRICT x, int64_t n, XENT_T cap)
{
    xv m0 = xv_set1(xent_neg_inf()), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 4 * XV_N <= n; i += 4 * XV_N) {
        m0 = xv_max(m0, xv_cap(xv_loadu(x + i), cap));
        m1 = xv_max(m1, xv_cap(xv_loadu(x + i + XV_N), cap));
        m2 = xv_max(m2, xv_cap(xv_loadu(x + i + 2 * XV_N), cap));
        m3 = xv_max(m3, xv_cap(xv_loadu(x + i + 3 * XV_N), cap));
    }
    for (; i + XV_N <= n; i += XV_N) m0 = xv_max(m0, xv_cap(xv_loadu(x + i), cap));
    if (i < n) {
        const xm valid = xv_gt(xv_set1((XENT_T)(n - i)), xv_lane_index());
        m1 = xv_max(m1, xv_select(valid, xv_cap(xv_load_part(x + i, n - i, 0), cap),
                                  xv_set1(xent_neg_inf())));
    }
    return xv_hmax(xv_max(xv_max(m0, m1), xv_max(m2, m3)));
}

XENT_INLINE XENT_T row_max(const XENT_T *XENT_RESTRICT x, int64_t n) { return row_max_ex(x, n, 0); }

/* Rows of at most this many XENT_CHUNK chunks get their chunk maxima (row_max_chunks). */
#define XENT_MAX_CHUNK_MAXIMA 256

/*
 * The row's (transformed) maximum, taken over its XENT_CHUNK chunks; the chunk
 * maxima are also stored in cm[] unless cm is NULL (room for every chunk:
 * row_chunk_maxima gives such a cm).  A chunk whose maximum is below the row's
 * by a margin holds no exponential that rounds to 1, so its sum needs no split
 * (ce_sumexp_split).  Equal to row_max_ex for rows without NaN, up to the sign
 * of a zero maximum.
 */
XENT_INLINE XENT_T row_max_chunks(const XENT_T *XENT_RESTRICT x, int64_t n, XENT_T cap, XENT_T *cm)
{
    xv m = xv_set1(xent_neg_inf());
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t len = (c0 + XENT_CHUNK < n) ? XENT_CHUNK : n - c0;
        /* a literal 0 when not capping: the capped loop's registers would spill */
        const XENT_T c = cap > 0 ? row_max_ex(x + c0, len, cap) : row_max_ex(x + c0, len, 0);
        if (cm) cm[c0 / XENT_CHUNK] = c;
        m = xv_max(m, xv_set1(c));
    }
    return xv_hmax(m);
}

/* `buf` (XENT_MAX_CHUNK_MAXIMA elements) if a row of n has room there, else NULL. */
XENT_INLINE XENT_T *row_chunk_maxima(XENT_T *buf, int64_t n)
{
    return (n + XENT_CHUNK - 1) / XENT_CHUNK <= XENT_MAX_CHUNK_MAXIMA ? buf : NULL;
}

/* No exponential exp(d) with d < -XENT_ONES_MARGIN rounds to 1 (d > -2**-25 for float32). */
#define XENT_ONES_MARGIN ((XENT_T)0x1p-20)

/* True if the row holds a NaN (rare-path helper). */
XENT_INLINE int row_has_nan(const XENT_T *XENT_RESTRICT x, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; ++i)
        if (x[i] != x[i]) return 1;
    return 0;
}

/*
 * Elements to write with ordinary stores before `out` is aligned for streaming
 * stores (at most n), or -1 if it never will be (not even element-aligned).
 */
XENT_INLINE int64_t row_stream_head(const XENT_T *out, int64_t n)
{
    const uintptr_t addr = (uintptr_t)out;
    int64_t head;
    if (addr % sizeof(XENT_T)) return -1;
    head = (int64_t)(((sizeof(xv) - addr % sizeof(xv)) % sizeof(xv)) / sizeof(XENT_T));
    return head > n ? n : head;
}

/*
 * An output row written a few vectors at a time while another row is summed
 * (row_sumexp_ex), so that memory sees the next row's reads and this row's
 * streaming writes together, as in a copy.  Values as row_sub2 (`is_log`:
 * (src_j - m) - b) or row_axpb (a * src_j + b * v_j, v NULL for 1), same bits.
 */
typedef struct {
    const XENT_T *src, *v;
    XENT_T *out;
    xv m, a, b;
    int is_log, stream;
    int64_t pos, n;
} row_writer;

XENT_INLINE xv row_writer_value(const row_writer *w, xv s, int64_t i, int64_t k)
{
    if (w->is_log) return xv_sub(xv_sub(s, w->m), w->b);
    if (w->v) return xv_fmadd(w->b, k < XV_N ? xv_load_part(w->v + i, k, 0) : xv_loadu(w->v + i), xv_mul(w->a, s));
    return xv_fmadd(w->a, s, w->b);
}

/* Starts a row of n: writes the elements before the first vector-aligned one. */
XENT_INLINE void row_writer_start(row_writer *w, const XENT_T *src, int is_log, XENT_T m, XENT_T a,
                                  XENT_T b, const XENT_T *v, XENT_T *out, int64_t n)
{
    const int64_t head = row_stream_head(out, n);
    w->src = src;
    w->v = v;
    w->out = out;
    w->m = xv_set1(m);
    w->a = xv_set1(a);
    w->b = xv_set1(b);
    w->is_log = is_log;
    w->stream = head >= 0;
    w->n = n;
    w->pos = head > 0 ? head : 0;
    if (head > 0) xv_store_part(out, row_writer_value(w, xv_load_part(src, head, 0), 0, head), head);
}

/* Writes the next two vectors, if the row has them. */
XENT_INLINE void row_writer_step(row_writer *w)
{
    const int64_t i = w->pos;
    if (i + 2 * XV_N > w->n) return;
    if (w->stream) {
        xv_stream(w->out + i, row_writer_value(w, xv_loadu(w->src + i), i, XV_N));
        xv_stream(w->out + i + XV_N, row_writer_value(w, xv_loadu(w->src + i + XV_N), i + XV_N, XV_N));
    } else {
        xv_storeu(w->out + i, row_writer_value(w, xv_loadu(w->src + i), i, XV_N));
        xv_storeu(w->out + i + XV_N, row_writer_value(w, xv_loadu(w->src + i + XV_N), i + XV_N, XV_N));
    }
    w->pos = i + 2 * XV_N;
}

/* Writes the rest of the row. */
XENT_INLINE void row_writer_finish(row_writer *w)
{
    int64_t i;
    while (w->pos + 2 * XV_N <= w->n) row_writer_step(w);
    for (i = w->pos; i + XV_N <= w->n; i += XV_N)
        xv_storeu(w->out + i, row_writer_value(w, xv_loadu(w->src + i), i, XV_N));
    if (i < w->n) {
        const int64_t k = w->n - i;
        xv_store_part(w->out + i, row_writer_value(w, xv_load_part(w->src + i, k, 0), i, k), k);
    }
    w->pos = w->n;
}

/*
 * Sum of exp(x - m) over the row; if `e` is not NULL also stores exp(x - m)
 * there (e may alias x).  If `w_sx` is not NULL, *w_sx receives
 * sum_j v_j * (x_j - m) with v = `v` (or 1 when v is NULL).  `cap` > 0 soft-caps
 * the logits as they are loaded; `prefetch` (may be NULL) is walked alongside x.
 * If `kmax` is not NULL, the exponentials that are not < 1 (the maxima's exact
 * 1's, or NaN) are summed apart into *kmax and the return value is the sum of
 * the others, so that s - 1 stays accurate on confident rows (xent_ce.h).
 * If `wr` is not NULL, that row is written alongside (the caller finishes it).
 */
XENT_INLINE double row_sumexp_ex(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e,
                                 const XENT_T *XENT_RESTRICT v, double *w_sx, XENT_T cap,
                                 const XENT_T *prefetch, double *kmax, row_writer *wr)
{
    const xv vm = xv_set1(m), one = xv_set1((XENT_T)1);
    double s = 0.0, sx = 0.0, kt = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t c1 = (c0 + XENT_CHUNK < n) ? c0 + XENT_CHUNK : n;
        xv a0 = xv_zero(), a1 = xv_zero(), b0 = xv_zero(), k0 = xv_zero();
        int64_t i = c0;
        for (; i + 2 * XV_N <= c1; i += 2 * XV_N) {
            if (prefetch && i * (int64_t)sizeof(XENT_T) < XENT_PREFETCH_MAX_ROW_BYTES) {
                /* the next row (or chunk), while this one is compute-bound in L2 */
                const char *pf = (const char *)(prefetch + i);
                int off;
                for (off = 0; off < (int)(2 * XV_N * sizeof(XENT_T)); off += 64) XENT_PREFETCH_L2(pf + off);
            }
            if (wr) row_writer_step(wr);
            xv d0 = xv_sub(xv_cap(xv_loadu(x + i), cap), vm);
            xv d1 = xv_sub(xv_cap(xv_loadu(x + i + XV_N), cap), vm);
            xv e0 = xv_exp_le0(d0), e1 = xv_exp_le0(d1);
            if (e) { xv_storeu(e + i, e0); xv_storeu(e + i + XV_N, e1); }
            if (kmax) {
                const xm l0 = xv_gt(one, e0), l1 = xv_gt(one, e1);
                a0 = xv_add_where(l0, a0, e0);
                a1 = xv_add_where(l1, a1, e1);
                k0 = xv_add_unless(l0, k0, e0);
                k0 = xv_add_unless(l1, k0, e1);
            } else {
                a0 = xv_add(a0, e0);
                a1 = xv_add(a1, e1);
            }
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
            const int64_t k = c1 - i;
            const xm valid = xv_gt(xv_set1((XENT_T)k), xv_lane_index());
            /* lanes past the end: d = -inf for the sum (exp gives 0), 0 for sx */
            xv d = xv_sub(xv_cap(xv_load_part(x + i, k, 0), cap), vm);
            xv e0 = xv_exp_le0(xv_select(valid, d, xv_set1(xent_neg_inf())));
            if (e) xv_store_part(e + i, e0, k);
            if (kmax) {
                const xm l0 = xv_gt(one, e0);
                a0 = xv_add_where(l0, a0, e0);
                k0 = xv_add_unless(l0, k0, e0);
            } else {
                a0 = xv_add(a0, e0);
            }
            if (w_sx) {
                xv dz = xv_select(valid, d, xv_zero());
                b0 = v ? xv_fmadd(xv_load_part(v + i, k, 0), dz, b0) : xv_add(b0, dz);
            }
        }
        s += xv_hsum(xv_add(a0, a1));
        if (kmax) kt += xv_hsum(k0);
        if (w_sx) sx += xv_hsum(b0);
    }
    if (kmax) *kmax = kt;
    if (w_sx) *w_sx = sx;
    return s;
}

XENT_INLINE double row_sumexp(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e,
                              const XENT_T *XENT_RESTRICT v, double *w_sx)
{
    return row_sumexp_ex(x, n, m, e, v, w_sx, 0, NULL, NULL, NULL);
}

/*
 * One pass over memory: running max and sum of exp(x - max), chunk by chunk
 * (the chunk is re-read from L1 for the exponentials).  `next` (may be NULL) is
 * the row to be read after this one: its start is prefetched while the last
 * chunk is exponentiated, so that rows of a few chunks do not wait for memory.
 */
XENT_INLINE void row_max_sumexp(const XENT_T *XENT_RESTRICT x, int64_t n, const XENT_T *next,
                                XENT_T *m_out, double *s_out)
{
    XENT_T m = xent_neg_inf();
    double s = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t len = (c0 + XENT_CHUNK < n) ? XENT_CHUNK : n - c0;
        const XENT_T cm = row_max(x + c0, len);
        if (cm > m) {
            if (s != 0.0) s *= (double)xent_exp1(m - cm);
            m = cm;
        }
        if (m == xent_neg_inf()) {
            /* all -inf so far: they add 0 (exp(-inf - -inf) would be NaN), a NaN poisons */
            if (row_has_nan(x + c0, len)) s = (double)NAN;
            continue;
        }
        /* prefetch the next chunk (or row) while this one is exponentiated from L1 */
        s += row_sumexp_ex(x + c0, len, m, NULL, NULL, NULL, 0, c0 + len < n ? x + c0 + len : next, NULL, NULL);
    }
    *m_out = m;
    *s_out = s;
}

/* out = a * e (e may alias out). */
XENT_INLINE void row_scale(const XENT_T *e, int64_t n, XENT_T a, XENT_T *out)
{
    const xv va = xv_set1(a);
    int64_t i = 0;
    for (; i + XV_N <= n; i += XV_N) xv_storeu(out + i, xv_mul(xv_loadu(e + i), va));
    if (i < n) xv_store_part(out + i, xv_mul(xv_load_part(e + i, n - i, 0), va), n - i);
}

/* Whether a separate output is written with streaming stores (xent_stream_output). */
XENT_INLINE int rows_stream_output(const XENT_T *x, const XENT_T *out, int64_t n_rows, int64_t n_cols)
{
    return xent_stream_output(x, out, n_rows, n_cols, sizeof(XENT_T));
}

/* out = (x - m) - c, PyTorch's log_softmax ordering (x may alias out). */
XENT_INLINE void row_sub2(const XENT_T *x, int64_t n, XENT_T m, XENT_T c, XENT_T *out)
{
    const xv vm = xv_set1(m), vc = xv_set1(c);
    int64_t i = 0;
    for (; i + XV_N <= n; i += XV_N) xv_storeu(out + i, xv_sub(xv_sub(xv_loadu(x + i), vm), vc));
    if (i < n) xv_store_part(out + i, xv_sub(xv_sub(xv_load_part(x + i, n - i, 0), vm), vc), n - i);
}

/* Prefetch into L2 the cache lines of one vector at p (a vector is at most 64 bytes). */
XENT_INLINE void row_prefetch_vector(const XENT_T *p)
{
    if (((uintptr_t)p & 63) < sizeof(xv)) XENT_PREFETCH_L2(p); /* once per line */
}

/*
 * Gradient row writer: out_j = a * src_j + b * v_j, where src_j is e_j (already
 * exponentiated, XENT_SRC_EXP) or exp(x_j - m) (XENT_SRC_LOGITS), v is NULL
 * (treated as 1, and b may be 0).  XENT_STORE_STREAM asks for non-temporal stores.
 */
XENT_INLINE void row_axpb(const XENT_T *src, int64_t n, xent_row_src src_kind, XENT_T m, XENT_T a,
                          XENT_T b, const XENT_T *XENT_RESTRICT v, XENT_T *out, xent_row_store store,
                          const XENT_T *pf, int64_t pf_n)
{
    const int from_exp = src_kind == XENT_SRC_LOGITS, stream = store == XENT_STORE_STREAM;
    const xv va = xv_set1(a), vb = xv_set1(b), vm = xv_set1(m);
    const int64_t head = stream ? row_stream_head(out, n) : -1;
    int64_t i = 0;
    if (head >= 0) {
        if (head > 0) {
            xv s = xv_load_part(src, head, 0);
            if (from_exp) s = xv_exp_le0(xv_sub(s, vm));
            xv r = v ? xv_fmadd(vb, xv_load_part(v, head, 0), xv_mul(va, s)) : xv_fmadd(va, s, vb);
            xv_store_part(out, r, head);
        }
        i = head;
        for (; i + XV_N <= n; i += XV_N) {
            xv s = xv_loadu(src + i);
            if (i < pf_n) row_prefetch_vector(pf + i);
            if (from_exp) s = xv_exp_le0(xv_sub(s, vm));
            xv r = v ? xv_fmadd(vb, xv_loadu(v + i), xv_mul(va, s)) : xv_fmadd(va, s, vb);
            xv_stream(out + i, r);
        }
    } else {
        for (; i + XV_N <= n; i += XV_N) {
            xv s = xv_loadu(src + i);
            if (i < pf_n) row_prefetch_vector(pf + i);
            if (from_exp) s = xv_exp_le0(xv_sub(s, vm));
            xv r = v ? xv_fmadd(vb, xv_loadu(v + i), xv_mul(va, s)) : xv_fmadd(va, s, vb);
            xv_storeu(out + i, r);
        }
    }
    if (i < n) {
        const int64_t k = n - i;
        xv s = xv_load_part(src + i, k, 0);
        if (from_exp) s = xv_exp_le0(xv_sub(s, vm));
        xv r = v ? xv_fmadd(vb, xv_load_part(v + i, k, 0), xv_mul(va, s)) : xv_fmadd(va, s, vb);
        xv_store_part(out + i, r, k);
    }
}

/* Sum of a float array in double, fixed order for a given ISA (deterministic). */
XENT_INLINE double row_sum_wide(const XENT_T *x, int64_t n)
{
    double s = 0.0;
    int64_t c0;
    for (c0 = 0; c0 < n; c0 += XENT_CHUNK) {
        const int64_t c1 = (c0 + XENT_CHUNK < n) ? c0 + XENT_CHUNK : n;
        xv a0 = xv_zero(), a1 = xv_zero();
        int64_t i = c0;
        for (; i + 2 * XV_N <= c1; i += 2 * XV_N) {
            a0 = xv_add(a0, xv_loadu(x + i));
            a1 = xv_add(a1, xv_loadu(x + i + XV_N));
        }
        for (; i < c1; i += XV_N) a0 = xv_add(a0, xv_load_part(x + i, c1 - i, 0));
        s += xv_hsum(xv_add(a0, a1));
    }
    return s;
}

/*
 * Few classes: vectorise across rows.  A block holds XV_N rows (lanes); column j
 * of the block is transposed into cols[j].  Used when n_cols <= XENT_SMALL_C.
 */
#define XENT_SMALL_C 32

/*
 * Load the block's columns: rows are read XV_N columns at a time (masked loads)
 * and each XV_N x XV_N tile is transposed in registers.  Lanes k >= nr hold 0.
 * `cols` has room for C rounded up to XV_N.  Returns the per-row maximum.
 */
XENT_INLINE xv rows_block_load(const XENT_T *xb, int64_t C, int64_t nr, xv *cols)
{
    xv m = xv_set1(xent_neg_inf());
    int64_t c0, j, k;
    for (c0 = 0; c0 < C; c0 += XV_N) {
        const int64_t w = C - c0 < XV_N ? C - c0 : XV_N;
        xv *tile = cols + c0;
        if (w == XV_N && nr == XV_N)
            for (k = 0; k < XV_N; ++k) tile[k] = xv_loadu(xb + k * C + c0);
        else {
            for (k = 0; k < nr; ++k) tile[k] = xv_load_part(xb + k * C + c0, w, 0);
            for (; k < XV_N; ++k) tile[k] = xv_zero();
        }
        xv_transpose(tile);
    }
    for (j = 0; j < C; ++j) m = xv_max(m, cols[j]);
    return m;
}

/*
 * Prefetch block i + XENT_SMALL_AHEAD of nb blocks of XV_N rows: the row-strided
 * masked loads of the block kernels run ahead of the hardware prefetchers.
 */
#ifndef XENT_SMALL_AHEAD
#define XENT_SMALL_AHEAD 4
#endif
XENT_INLINE void rows_block_prefetch(const XENT_T *x, int64_t i, int64_t nb, int64_t C)
{
    if (i + XENT_SMALL_AHEAD < nb) {
        const char *p = (const char *)(x + (i + XENT_SMALL_AHEAD) * XV_N * C);
        const int64_t bytes = XV_N * C * (int64_t)sizeof(XENT_T);
        int64_t off;
        for (off = 0; off < bytes; off += 64) XENT_PREFETCH_L2(p + off);
    }
}

/*
 * Store the block's columns back to rows (the inverse transpose, in place in
 * `cols`); lanes k >= nr are dropped.  Rows are written in order with full-width
 * stores while those end inside the block: the lanes past a row's end land on the
 * following rows, which are written afterwards (only the last rows need masks).
 */
XENT_INLINE void rows_block_store(XENT_T *gb, int64_t C, int64_t nr, xv *cols)
{
    const int64_t end = nr * C;
    int64_t c0, k;
    for (c0 = 0; c0 < C; c0 += XV_N) xv_transpose(cols + c0);
    for (k = 0; k < nr; ++k)
        for (c0 = 0; c0 < C; c0 += XV_N) {
            const int64_t o = k * C + c0;
            if (o + XV_N <= end) xv_storeu(gb + o, cols[c0 + k]);
            else xv_store_part(gb + o, cols[c0 + k], C - c0 < XV_N ? C - c0 : XV_N);
        }
}

/*
 * The row to prefetch while processing row r of n_rows (NULL past the end): the
 * next one, or for rows shorter than XENT_PREFETCH_MIN_BYTES the first row at
 * least that many bytes ahead, so that memory has time to answer before the row
 * is read.  Callers prefetch as many elements as they process.
 */
XENT_INLINE const XENT_T *row_prefetch_target(const XENT_T *x, int64_t r, int64_t n_rows, int64_t n_cols)
{
    const int64_t row_bytes = n_cols * (int64_t)sizeof(XENT_T);
    int64_t ahead;
    if (row_bytes <= 0) return NULL;
    ahead = row_bytes >= XENT_PREFETCH_MIN_BYTES ? 1 : (XENT_PREFETCH_MIN_BYTES + row_bytes - 1) / row_bytes;
    return r + ahead < n_rows ? x + (r + ahead) * n_cols : NULL;
}

/* Prefetch pointer for the chunk starting at element c0 of the next row: only the
 * first XENT_PREFETCH_MAX_ROW_BYTES of a row are prefetched, so that this row and
 * the prefetched part of the next one fit in L2 together. */
XENT_INLINE const XENT_T *row_prefetch_chunk(const XENT_T *next_row, int64_t c0)
{
    return (next_row && c0 * (int64_t)sizeof(XENT_T) < XENT_PREFETCH_MAX_ROW_BYTES) ? next_row + c0 : NULL;
}

/* Sum of doubles in a fixed order (eight chains, then pairwise). */
XENT_INLINE double xent_sum_doubles(const double *v, int64_t n)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    int k;
    for (; i + 8 <= n; i += 8)
        for (k = 0; k < 8; ++k) a[k] += v[i + k];
    for (k = 0; i < n; ++i, ++k) a[k] += v[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

#endif /* XENT_ROWOPS_H */
