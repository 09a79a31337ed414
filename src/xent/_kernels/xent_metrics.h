/*
 * xent_metrics.h -- expected calibration error (top-1, equal-width bins).
 *
 * Per row: confidence = max softmax = 1 / sum_j exp(x_j - max) (in double),
 * prediction = first index of the maximum, bin b with b/n < conf <= (b+1)/n
 * (boundaries b * (1/n) as numpy.linspace(0, 1, n + 1)).  Rows are classified
 * in parallel into `row_bin` (2 * bin + correct, -1 for ignored rows, -2 for a
 * NaN confidence), then accumulated in row order (deterministic):
 *   ECE = sum_b |sum_correct_b - sum_conf_b| / n_valid   (NaN if n_valid == 0
 *   or any valid row has a NaN confidence).
 * Return: the number of out-of-range non-ignored targets (nothing computed).
 */
#ifndef XENT_METRICS_H
#define XENT_METRICS_H

#include "xent_rowops.h"
#include "xent_focal.h" /* xent_variants_check_targets */

/* First index of the value m in the row (m is the row max), or 0. */
XENT_INLINE int64_t xent_ece_row_find(const XENT_T *x, int64_t n, XENT_T m)
{
    const xv vm = xv_set1(m);
    int64_t i = 0, j;
    for (; i + XV_N <= n; i += XV_N)
        if (xm_any(xv_eq(xv_loadu(x + i), vm))) break;
    for (j = i; j < n; ++j)
        if (x[j] == m) return j;
    return 0;
}

int64_t XENT_FN(xent_ece_rows)(xent_ece_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x;
    const int64_t *t = c->target, n_rows = c->n_rows, n_cols = c->n_cols;
    const int64_t ignore_index = c->opt.ignore_index, n_bins = c->opt.n_bins;
    /* scratch: XENT_ECE_SCRATCH_BYTES(n_rows, n_bins), 8-byte items throughout */
    double *row_conf = (double *)c->scratch;
    int64_t *row_bin = (int64_t *)(row_conf + n_rows);
    double *bin_conf = (double *)(row_bin + n_rows), *bin_acc = bin_conf + n_bins;
    int64_t *bin_count = (int64_t *)(bin_acc + n_bins);
    double *ece = &c->ece;
    int64_t cnt, i, b;
    const int64_t bad = xent_variants_check_targets(t, n_rows, n_cols, ignore_index, &cnt);
    const int nt = xent_threads_for(n_rows * n_cols, n_rows, c->n_threads);
    const double step = 1.0 / (double)n_bins;
    int any_nan = 0;
    double s;
    *ece = NAN;
    (void)nt; /* unused in a serial build */
    if (bad) return bad;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) if(nt > 1))
    for (i = 0; i < n_rows; ++i) {
        const XENT_T *xr = x + i * n_cols;
        XENT_T m;
        double ssum, conf;
        int64_t bb;
        if (t[i] == ignore_index) {
            row_bin[i] = -1;
            row_conf[i] = 0.0;
            continue;
        }
        row_max_sumexp(xr, n_cols, row_prefetch_target(x, i, n_rows, n_cols), &m, &ssum);
        conf = 1.0 / ssum;
        row_conf[i] = conf;
        if (!(conf == conf)) {
            row_bin[i] = -2;
            continue;
        }
        bb = (int64_t)ceil(conf * (double)n_bins) - 1;
        if (bb < 0) bb = 0;
        if (bb > n_bins - 1) bb = n_bins - 1;
        /* settle rounding at the edges against the linspace boundaries */
        while (bb > 0 && conf <= (double)bb * step) --bb;
        while (bb < n_bins - 1 && conf > (double)(bb + 1) * step) ++bb;
        row_bin[i] = 2 * bb + (xent_ece_row_find(xr, n_cols, m) == t[i] ? 1 : 0);
    }
    for (b = 0; b < n_bins; ++b) {
        bin_conf[b] = 0.0;
        bin_acc[b] = 0.0;
        bin_count[b] = 0;
    }
    for (i = 0; i < n_rows; ++i) {
        const int64_t rb = row_bin[i];
        if (rb == -1) continue;
        if (rb == -2) {
            any_nan = 1;
            continue;
        }
        bin_conf[rb >> 1] += row_conf[i];
        bin_acc[rb >> 1] += (double)(rb & 1);
        bin_count[rb >> 1] += 1;
    }
    if (cnt == 0 || any_nan) return XENT_OK;
    s = 0.0;
    for (b = 0; b < n_bins; ++b) s += fabs(bin_acc[b] - bin_conf[b]);
    *ece = s / (double)cnt;
    return XENT_OK;
}

#endif /* XENT_METRICS_H */
