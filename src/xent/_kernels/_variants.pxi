# Loss variants: focal, binary (BCE with logits, BCE, sigmoid focal), KL, ECE.
# Every array argument is flat and C-contiguous; optional inputs/outputs are
# passed as arrays with a `has_*` flag (an empty array when absent), so the
# fused-type dispatch always sees real buffers.

cdef extern from "xent_kernels.h" nogil:
    int XENT_RED_NONE
    int XENT_RED_MEAN
    int XENT_RED_SUM
    int XENT_RED_BATCHMEAN
    int XENT_BIN_LOGITS
    int XENT_BIN_PROBS
    int XENT_BIN_FOCAL
    int XENT_BIN_TILE

    ctypedef struct xent_focal_args_f32:
        double gamma, alpha
        const float *alpha_c
        int64_t ignore_index
        int reduction
        double grad_scale
        const float *grad_rows
    ctypedef struct xent_focal_args_f64:
        double gamma, alpha
        const double *alpha_c
        int64_t ignore_index
        int reduction
        double grad_scale
        const double *grad_rows
    ctypedef struct xent_binary_args_f32:
        int op, reduction
        const float *weight
        int64_t weight_rows
        const float *pos_weight
        double alpha, gamma, grad_scale
        const float *grad_elems
    ctypedef struct xent_binary_args_f64:
        int op, reduction
        const double *weight
        int64_t weight_rows
        const double *pos_weight
        double alpha, gamma, grad_scale
        const double *grad_elems
    ctypedef struct xent_kl_args_f32:
        double temperature
        int reduction
        double grad_scale
        const float *grad_rows
    ctypedef struct xent_kl_args_f64:
        double temperature
        int reduction
        double grad_scale
        const double *grad_rows

    int64_t xent_focal_rows_f32(const float *x, const int64_t *t, int64_t n, int64_t c,
                                const xent_focal_args_f32 *a, float *loss, float *grad,
                                double *total, int64_t *count, int nt)
    int64_t xent_focal_rows_f64(const double *x, const int64_t *t, int64_t n, int64_t c,
                                const xent_focal_args_f64 *a, double *loss, double *grad,
                                double *total, int64_t *count, int nt)
    int64_t xent_binary_loss_f32(const float *x, const float *t, int64_t n, int64_t c,
                                 const xent_binary_args_f32 *a, float *loss, float *grad,
                                 double *tile_sums, double *total, int nt)
    int64_t xent_binary_loss_f64(const double *x, const double *t, int64_t n, int64_t c,
                                 const xent_binary_args_f64 *a, double *loss, double *grad,
                                 double *tile_sums, double *total, int nt)
    int64_t xent_vmath_array_f32(const float *x, int64_t n, float *out, int fn)
    int64_t xent_vmath_array_f64(const double *x, int64_t n, double *out, int fn)
    int64_t xent_kl_rows_f32(const float *s, const float *t, int64_t n, int64_t c,
                             const xent_kl_args_f32 *a, float *loss, float *grad,
                             double *total, int nt)
    int64_t xent_kl_rows_f64(const double *s, const double *t, int64_t n, int64_t c,
                             const xent_kl_args_f64 *a, double *loss, double *grad,
                             double *total, int nt)
    int64_t xent_ece_rows_f32(const float *x, const int64_t *t, int64_t n, int64_t c,
                              int64_t ignore_index, int64_t n_bins, double *row_conf,
                              int64_t *row_bin, double *bin_conf, double *bin_acc,
                              int64_t *bin_count, double *ece, int nt)
    int64_t xent_ece_rows_f64(const double *x, const int64_t *t, int64_t n, int64_t c,
                              int64_t ignore_index, int64_t n_bins, double *row_conf,
                              int64_t *row_bin, double *bin_conf, double *bin_acc,
                              int64_t *bin_count, double *ece, int nt)


BINARY_TILE = XENT_BIN_TILE
BINARY_OPS = {"logits": XENT_BIN_LOGITS, "probs": XENT_BIN_PROBS, "focal": XENT_BIN_FOCAL}
REDUCTION_CODES = {"none": XENT_RED_NONE, "mean": XENT_RED_MEAN, "sum": XENT_RED_SUM,
                   "batchmean": XENT_RED_BATCHMEAN}


cdef inline void _need(bint ok, str what) except *:
    if not ok:
        raise ValueError(what)


def focal_rows(const floating[::1] x, const int64_t[::1] t, int64_t n_rows, int64_t n_cols,
               double gamma, double alpha, const floating[::1] alpha_c, bint has_alpha_c,
               int64_t ignore_index, int reduction, double grad_scale,
               const floating[::1] grad_rows, bint has_grad_rows,
               floating[::1] loss, bint has_loss, floating[::1] grad, bint has_grad,
               int n_threads):
    """Focal loss rows; see xent.focal_loss.  Returns (bad_count, total, count)."""
    cdef xent_focal_args_f32 a32
    cdef xent_focal_args_f64 a64
    cdef double total = 0.0
    cdef int64_t count = 0, bad = 0
    _need(n_rows >= 0 and n_cols > 0 and x.shape[0] == n_rows * n_cols, "focal_rows: x")
    _need(t.shape[0] == n_rows, "focal_rows: target")
    _need(not has_alpha_c or alpha_c.shape[0] == n_cols, "focal_rows: alpha")
    _need(not has_grad_rows or grad_rows.shape[0] == n_rows, "focal_rows: grad_output")
    _need(not has_loss or loss.shape[0] == n_rows, "focal_rows: loss")
    _need(not has_grad or grad.shape[0] == n_rows * n_cols, "focal_rows: grad")
    if n_rows == 0:
        return 0, 0.0, 0
    if floating is float:
        a32.gamma = gamma
        a32.alpha = alpha
        a32.alpha_c = &alpha_c[0] if has_alpha_c else NULL
        a32.ignore_index = ignore_index
        a32.reduction = reduction
        a32.grad_scale = grad_scale
        a32.grad_rows = &grad_rows[0] if has_grad_rows else NULL
        with nogil:
            bad = xent_focal_rows_f32(&x[0], &t[0], n_rows, n_cols, &a32,
                                      &loss[0] if has_loss else NULL,
                                      &grad[0] if has_grad else NULL,
                                      &total, &count, n_threads)
    else:
        a64.gamma = gamma
        a64.alpha = alpha
        a64.alpha_c = &alpha_c[0] if has_alpha_c else NULL
        a64.ignore_index = ignore_index
        a64.reduction = reduction
        a64.grad_scale = grad_scale
        a64.grad_rows = &grad_rows[0] if has_grad_rows else NULL
        with nogil:
            bad = xent_focal_rows_f64(&x[0], &t[0], n_rows, n_cols, &a64,
                                      &loss[0] if has_loss else NULL,
                                      &grad[0] if has_grad else NULL,
                                      &total, &count, n_threads)
    return bad, total, count


def binary_loss(const floating[::1] x, const floating[::1] t, int64_t n_rows, int64_t n_cols,
                int op, const floating[::1] weight, int64_t weight_rows,
                const floating[::1] pos_weight, bint has_pos_weight,
                double alpha, double gamma, int reduction, double grad_scale,
                const floating[::1] grad_elems, bint has_grad_elems,
                floating[::1] loss, bint has_loss, floating[::1] grad, bint has_grad,
                double[::1] tile_sums, int n_threads):
    """Elementwise binary losses; see xent.binary_cross_entropy*.  Returns (bad, total)."""
    cdef xent_binary_args_f32 a32
    cdef xent_binary_args_f64 a64
    cdef double total = 0.0
    cdef int64_t bad = 0
    cdef int64_t n = n_rows * n_cols
    cdef int64_t tpr = (n_cols + XENT_BIN_TILE - 1) // XENT_BIN_TILE if n_cols > 0 else 0
    _need(n_rows >= 0 and n_cols >= 0 and x.shape[0] == n and t.shape[0] == n, "binary_loss: x/t")
    _need(weight_rows == 0 or (weight_rows == 1 or weight_rows == n_rows)
          and weight.shape[0] == weight_rows * n_cols, "binary_loss: weight")
    _need(not has_pos_weight or pos_weight.shape[0] == n_cols, "binary_loss: pos_weight")
    _need(not has_grad_elems or grad_elems.shape[0] == n, "binary_loss: grad_output")
    _need(not has_loss or loss.shape[0] == n, "binary_loss: loss")
    _need(not has_grad or grad.shape[0] == n, "binary_loss: grad")
    _need(tile_sums.shape[0] >= n_rows * tpr, "binary_loss: tile_sums")
    _need(op == XENT_BIN_LOGITS or op == XENT_BIN_PROBS or op == XENT_BIN_FOCAL, "binary_loss: op")
    if n == 0:
        return 0, 0.0
    if floating is float:
        a32.op = op
        a32.reduction = reduction
        a32.weight = &weight[0] if weight_rows > 0 else NULL
        a32.weight_rows = weight_rows
        a32.pos_weight = &pos_weight[0] if has_pos_weight else NULL
        a32.alpha = alpha
        a32.gamma = gamma
        a32.grad_scale = grad_scale
        a32.grad_elems = &grad_elems[0] if has_grad_elems else NULL
        with nogil:
            bad = xent_binary_loss_f32(&x[0], &t[0], n_rows, n_cols, &a32,
                                       &loss[0] if has_loss else NULL,
                                       &grad[0] if has_grad else NULL,
                                       &tile_sums[0], &total, n_threads)
    else:
        a64.op = op
        a64.reduction = reduction
        a64.weight = &weight[0] if weight_rows > 0 else NULL
        a64.weight_rows = weight_rows
        a64.pos_weight = &pos_weight[0] if has_pos_weight else NULL
        a64.alpha = alpha
        a64.gamma = gamma
        a64.grad_scale = grad_scale
        a64.grad_elems = &grad_elems[0] if has_grad_elems else NULL
        with nogil:
            bad = xent_binary_loss_f64(&x[0], &t[0], n_rows, n_cols, &a64,
                                       &loss[0] if has_loss else NULL,
                                       &grad[0] if has_grad else NULL,
                                       &tile_sums[0], &total, n_threads)
    return bad, total


def kl_rows(const floating[::1] s, const floating[::1] t, int64_t n_rows, int64_t n_cols,
            double temperature, int reduction, double grad_scale,
            const floating[::1] grad_rows, bint has_grad_rows,
            floating[::1] loss, bint has_loss, floating[::1] grad, bint has_grad, int n_threads):
    """KL distillation rows; see xent.kl_div_with_logits.  Returns the sum of the row losses."""
    cdef xent_kl_args_f32 a32
    cdef xent_kl_args_f64 a64
    cdef double total = 0.0
    _need(n_rows >= 0 and n_cols > 0 and s.shape[0] == n_rows * n_cols
          and t.shape[0] == n_rows * n_cols, "kl_rows: s/t")
    _need(not has_grad_rows or grad_rows.shape[0] == n_rows, "kl_rows: grad_output")
    _need(not has_loss or loss.shape[0] == n_rows, "kl_rows: loss")
    _need(not has_grad or grad.shape[0] == n_rows * n_cols, "kl_rows: grad")
    if n_rows == 0:
        return 0.0
    if floating is float:
        a32.temperature = temperature
        a32.reduction = reduction
        a32.grad_scale = grad_scale
        a32.grad_rows = &grad_rows[0] if has_grad_rows else NULL
        with nogil:
            xent_kl_rows_f32(&s[0], &t[0], n_rows, n_cols, &a32,
                             &loss[0] if has_loss else NULL, &grad[0] if has_grad else NULL,
                             &total, n_threads)
    else:
        a64.temperature = temperature
        a64.reduction = reduction
        a64.grad_scale = grad_scale
        a64.grad_rows = &grad_rows[0] if has_grad_rows else NULL
        with nogil:
            xent_kl_rows_f64(&s[0], &t[0], n_rows, n_cols, &a64,
                             &loss[0] if has_loss else NULL, &grad[0] if has_grad else NULL,
                             &total, n_threads)
    return total


def ece_rows(const floating[::1] x, const int64_t[::1] t, int64_t n_rows, int64_t n_cols,
             int64_t ignore_index, int64_t n_bins, double[::1] row_conf, int64_t[::1] row_bin,
             double[::1] bin_conf, double[::1] bin_acc, int64_t[::1] bin_count, int n_threads):
    """Expected calibration error; see xent.expected_calibration_error.  Returns (bad, ece)."""
    cdef double ece = float("nan")
    cdef int64_t bad = 0
    _need(n_rows >= 0 and n_cols > 0 and n_bins > 0 and x.shape[0] == n_rows * n_cols,
          "ece_rows: x")
    _need(t.shape[0] == n_rows and row_conf.shape[0] == n_rows and row_bin.shape[0] == n_rows,
          "ece_rows: rows")
    _need(bin_conf.shape[0] == n_bins and bin_acc.shape[0] == n_bins
          and bin_count.shape[0] == n_bins, "ece_rows: bins")
    if n_rows == 0:
        return 0, ece
    with nogil:
        if floating is float:
            bad = xent_ece_rows_f32(&x[0], &t[0], n_rows, n_cols, ignore_index, n_bins,
                                    &row_conf[0], &row_bin[0], &bin_conf[0], &bin_acc[0],
                                    &bin_count[0], &ece, n_threads)
        else:
            bad = xent_ece_rows_f64(&x[0], &t[0], n_rows, n_cols, ignore_index, n_bins,
                                    &row_conf[0], &row_bin[0], &bin_conf[0], &bin_acc[0],
                                    &bin_count[0], &ece, n_threads)
    return bad, ece


def vmath_array(const floating[::1] x, floating[::1] out, int fn):
    """Vector log (fn=0) / log1p (fn=1) of the active SIMD path (accuracy-test hook)."""
    cdef int64_t n = x.shape[0]
    _need(out.shape[0] == n and (fn == 0 or fn == 1), "vmath_array: bad arguments")
    if n == 0:
        return
    with nogil:
        if floating is float:
            xent_vmath_array_f32(&x[0], n, &out[0], fn)
        else:
            xent_vmath_array_f64(&x[0], n, &out[0], fn)
