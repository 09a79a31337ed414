/*
 * xent_softmax.h -- logsumexp / softmax / log_softmax over the rows of a
 * contiguous (n_rows, n_cols) array.  Included once per kernel translation unit.
 *
 * NaN/inf policy (matches torch): logsumexp of a row holding +inf is +inf, of
 * an all -inf row is -inf, of a row holding NaN is NaN.  softmax/log_softmax
 * follow IEEE arithmetic on x - max, so such rows give NaN, as in torch.
 * An empty row (n_cols == 0) has logsumexp -inf (NumPy/SciPy convention).
 */
#ifndef XENT_SOFTMAX_H
#define XENT_SOFTMAX_H

#include "xent_rowops.h"

/* logsumexp of one row with torch's handling of non-finite maxima. */
XENT_INLINE XENT_T xent_lse_row(const XENT_T *XENT_RESTRICT x, int64_t n, const XENT_T *next)
{
    XENT_T m;
    double s;
    if (n == 0) return xent_neg_inf();
    row_max_sumexp(x, n, next, &m, &s);
    if (XENT_LIKELY(isfinite(m))) return (XENT_T)((double)m + log(s));
    return row_has_nan(x, n) ? (XENT_T)NAN : m;
}

/* logsumexp of nr <= XV_N rows with few columns at once (lanes = rows); inlined
 * so that full blocks (nr == XV_N) keep their tiles in registers. */
XENT_INLINE void lse_small_block(const XENT_T *xb, int64_t C, int64_t nr, XENT_T *out)
{
    xv cols[XENT_SMALL_C];
    const xv m = rows_block_load(xb, C, nr, cols);
    xv s = xv_zero();
    int64_t j, k;
    for (j = 0; j < C; ++j) s = xv_add(s, xv_exp_le0(xv_sub(cols[j], m)));
    xv_store_part(out, xv_add(m, xv_log(s)), nr);
    if (xm_any(xv_not_le(xv_abs(m), xv_set1((XENT_T)3.4e38)))) /* a non-finite max: torch's rules */
        for (k = 0; k < nr; ++k)
            if (!isfinite(out[k]) || !isfinite((double)out[k])) out[k] = xent_lse_row(xb + k * C, C, NULL);
}

/* out[i] = logsumexp of row i (xent_rows_call: out has n_rows elements). */
int64_t XENT_FN(xent_logsumexp_rows)(xent_rows_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    XENT_T *out = (XENT_T *)c->out;
    const int nt = xent_threads_for(n_rows * n_cols, n_rows, c->n_threads);
    int64_t i;
    if (XV_N > 1 && n_cols > 0 && n_cols <= XENT_SMALL_C) {
        const int64_t nb = (n_rows + XV_N - 1) / XV_N;
        XENT_PRAGMA_OMP(parallel for schedule(dynamic, 64) num_threads(nt) if(nt > 1))
        for (i = 0; i < nb; ++i) {
            const int64_t r0 = i * XV_N;
            rows_block_prefetch(x, i, nb, n_cols);
            if (n_rows - r0 >= XV_N) lse_small_block(x + r0 * n_cols, n_cols, XV_N, out + r0);
            else lse_small_block(x + r0 * n_cols, n_cols, n_rows - r0, out + r0);
        }
        return XENT_OK;
    }
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1))
    for (i = 0; i < n_rows; ++i) out[i] = xent_lse_row(x + i * n_cols, n_cols, row_prefetch_target(x, i, n_rows, n_cols));
    return XENT_OK;
}

/*
 * softmax (or log_softmax if `is_log`) of rows [lo, hi) into a separate output
 * written with streaming stores.  Software-pipelined so that memory always has
 * reads and writes in flight: while the exponentials of row i are summed from
 * cache, row i - 1 is written out and row i + 1 is prefetched.  softmax keeps
 * the exponentials of rows i - 1 and i in `e2` (two rows).  Same bits as the
 * in-place kernels.
 */
XENT_INLINE void softmax_rows_streamed(const XENT_T *x, int64_t lo, int64_t hi, int64_t C, XENT_T *out,
                                       XENT_T *e2, int is_log)
{
    row_writer w;
    int64_t i;
    for (i = lo; i < hi; ++i) {
        const XENT_T *xr = x + i * C;
        XENT_T *e = is_log ? NULL : e2 + (i & 1) * C;
        const XENT_T m = row_max(xr, C);
        const double s = row_sumexp_ex(xr, C, m, e, NULL, NULL, 0, i + 1 < hi ? xr + C : NULL, NULL,
                                       i > lo ? &w : NULL);
        if (i > lo) row_writer_finish(&w);
        if (is_log) row_writer_start(&w, xr, 1, m, 0, (XENT_T)log(s), NULL, out + i * C, C);
        else row_writer_start(&w, e, 0, 0, (XENT_T)(1.0 / s), 0, NULL, out + i * C, C);
    }
    if (hi > lo) row_writer_finish(&w);
}

/*
 * out = softmax(x) row-wise; out may alias x.  A large separate output is written
 * with streaming stores (no read for ownership) when `scratch` (2 * n_threads *
 * n_cols elements, a cache for the exponentials) is given; otherwise, and in
 * place, the exponentials are stored in `out` and rescaled there.  Same bits.
 */
int64_t XENT_FN(xent_softmax_rows)(xent_rows_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    XENT_T *out = (XENT_T *)c->out, *scratch = (XENT_T *)c->scratch;
    const int nt = xent_threads_for(n_rows * n_cols, n_rows, c->n_threads);
    const int stream = scratch != NULL && rows_stream_output(x, out, n_rows, n_cols);
    if (n_cols == 0) return XENT_OK;
    XENT_PRAGMA_OMP(parallel num_threads(nt) if(nt > 1))
    {
        int64_t i, lo, hi;
        if (stream) {
            xent_block_range(n_rows, xent_team_size(), xent_thread_id(), &lo, &hi);
            softmax_rows_streamed(x, lo, hi, n_cols, out, scratch + 2 * xent_thread_id() * n_cols, 0);
            xv_stream_fence();
        } else {
            XENT_PRAGMA_OMP(for schedule(static))
            for (i = 0; i < n_rows; ++i) {
                const XENT_T *xr = x + i * n_cols;
                XENT_T *o = out + i * n_cols;
                const XENT_T m = row_max(xr, n_cols);
                const double s = row_sumexp_ex(xr, n_cols, m, o, NULL, NULL, 0,
                                               row_prefetch_target(x, i, n_rows, n_cols), NULL, NULL);
                row_scale(o, n_cols, (XENT_T)(1.0 / s), o);
            }
        }
    }
    return XENT_OK;
}

/* out = log_softmax(x) row-wise, computed as (x - max) - log(sum); out may alias x. */
int64_t XENT_FN(xent_log_softmax_rows)(xent_rows_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x;
    const int64_t n_rows = c->n_rows, n_cols = c->n_cols;
    XENT_T *out = (XENT_T *)c->out;
    const int nt = xent_threads_for(n_rows * n_cols, n_rows, c->n_threads);
    const int stream = rows_stream_output(x, out, n_rows, n_cols);
    if (n_cols == 0) return XENT_OK;
    XENT_PRAGMA_OMP(parallel num_threads(nt) if(nt > 1))
    {
        int64_t i, lo, hi;
        if (stream) {
            xent_block_range(n_rows, xent_team_size(), xent_thread_id(), &lo, &hi);
            softmax_rows_streamed(x, lo, hi, n_cols, out, NULL, 1);
            xv_stream_fence();
        } else {
            XENT_PRAGMA_OMP(for schedule(static))
            for (i = 0; i < n_rows; ++i) {
                const XENT_T *xr = x + i * n_cols;
                const XENT_T m = row_max(xr, n_cols);
                const double s = row_sumexp_ex(xr, n_cols, m, NULL, NULL, NULL, 0,
                                               row_prefetch_target(x, i, n_rows, n_cols), NULL, NULL);
                row_sub2(xr, n_cols, m, (XENT_T)log(s), out + i * n_cols);
            }
        }
    }
    return XENT_OK;
}

#endif /* XENT_SOFTMAX_H */
