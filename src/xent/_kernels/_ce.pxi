# Cross-entropy family: softmax cross-entropy (class or probability targets) and NLL.

cdef extern from "xent_kernels.h" nogil:
    ctypedef struct xent_ce_args_f32:
        const float *weight
        const float *sample_weight
        const float *grad_rows
        double grad_scale
        int64_t ignore_index
        double label_smoothing
        double z_loss
        double softcap
        int mean
        float *scratch
    ctypedef struct xent_ce_args_f64:
        const double *weight
        const double *sample_weight
        const double *grad_rows
        double grad_scale
        int64_t ignore_index
        double label_smoothing
        double z_loss
        double softcap
        int mean
        double *scratch
    int64_t xent_ce_rows_f32(const float *x, const int64_t *target, const float *q,
                             int64_t n, int64_t c, const xent_ce_args_f32 *a,
                             double *loss_rows, float *grad, double *totals, int nt)
    int64_t xent_ce_rows_f64(const double *x, const int64_t *target, const double *q,
                             int64_t n, int64_t c, const xent_ce_args_f64 *a,
                             double *loss_rows, double *grad, double *totals, int nt)
    int64_t xent_nll_rows_f32(const float *x, const int64_t *target,
                              int64_t n, int64_t c, const xent_ce_args_f32 *a,
                              double *loss_rows, float *grad, double *totals, int nt)
    int64_t xent_nll_rows_f64(const double *x, const int64_t *target,
                              int64_t n, int64_t c, const xent_ce_args_f64 *a,
                              double *loss_rows, double *grad, double *totals, int nt)


cdef inline const floating *_ptr1(const floating[::1] v) noexcept:
    return &v[0] if v is not None and v.shape[0] > 0 else NULL


cdef _ce_rows(const floating[:, ::1] x, const int64_t[::1] target, const floating[:, ::1] q,
              const floating[::1] weight, const floating[::1] sample_weight,
              const floating[::1] grad_rows, double grad_scale, int64_t ignore_index,
              double label_smoothing, double z_loss, double softcap, bint mean,
              double[::1] loss_rows, floating[:, ::1] grad, int n_threads, bint nll):
    """Softmax cross-entropy (or NLL) rows; see xent.cross_entropy.

    Returns (n_bad_targets, sum_of_losses, mean_denominator).
    """
    cdef int64_t n = x.shape[0], c = x.shape[1], bad = 0
    cdef double totals[2]
    cdef const int64_t *pt = NULL
    cdef const floating *pq = NULL
    cdef floating *pg = NULL
    totals[0] = 0.0
    totals[1] = 0.0
    if c == 0:
        raise ValueError("ce_rows: zero classes")
    if loss_rows.shape[0] != n:
        raise ValueError("ce_rows: loss_rows has the wrong length")
    if q is None:
        if target is None or target.shape[0] != n:
            raise ValueError("ce_rows: target has the wrong length")
    elif q.shape[0] != n or q.shape[1] != c:
        raise ValueError("ce_rows: probability targets have the wrong shape")
    if weight is not None and weight.shape[0] != c:
        raise ValueError("ce_rows: weight has the wrong length")
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError("ce_rows: sample_weight has the wrong length")
    if grad_rows is not None and grad_rows.shape[0] != n:
        raise ValueError("ce_rows: grad_rows has the wrong length")
    if grad is not None and (grad.shape[0] != n or grad.shape[1] != c):
        raise ValueError("ce_rows: grad has the wrong shape")
    if n == 0:
        return 0, 0.0, 0.0
    if q is not None:
        pq = &q[0, 0]
    else:
        pt = &target[0]
    cdef floating *scratch = NULL
    if grad is not None:
        pg = &grad[0, 0]
        if (not nll and q is None and softcap == 0 and n_threads > 0
                and <const void *>pg != <const void *>&x[0, 0]
                and n * c * <int64_t>sizeof(floating) > XENT_STREAM_MIN_BYTES):
            # two cached rows of exponentials per thread for the streaming-store
            # path; without them (NULL) the kernel computes the exponentials twice
            scratch = <floating *>malloc(2 * n_threads * c * sizeof(floating))
    try:
        _ce_call(x, pt, pq, weight, sample_weight, grad_rows, grad_scale, ignore_index,
                 label_smoothing, z_loss, softcap, mean, loss_rows, pg, scratch, n_threads, nll,
                 totals, &bad)
    finally:
        free(scratch)
    return bad, totals[0], totals[1]


cdef int _ce_call(const floating[:, ::1] x, const int64_t *pt, const floating *pq,
                  const floating[::1] weight, const floating[::1] sample_weight,
                  const floating[::1] grad_rows, double grad_scale, int64_t ignore_index,
                  double label_smoothing, double z_loss, double softcap, bint mean,
                  double[::1] loss_rows, floating *pg, floating *scratch, int n_threads, bint nll,
                  double *totals, int64_t *bad) except -1:
    """Fills the kernel's option struct and calls it without the GIL."""
    cdef int64_t n = x.shape[0], c = x.shape[1]
    cdef xent_ce_args_f32 a32
    cdef xent_ce_args_f64 a64
    if floating is float:
        a32.weight = _ptr1(weight)
        a32.sample_weight = _ptr1(sample_weight)
        a32.grad_rows = _ptr1(grad_rows)
        a32.grad_scale = grad_scale
        a32.ignore_index = ignore_index
        a32.label_smoothing = label_smoothing
        a32.z_loss = z_loss
        a32.softcap = softcap
        a32.mean = mean
        a32.scratch = scratch
        with nogil:
            if nll:
                bad[0] = xent_nll_rows_f32(&x[0, 0], pt, n, c, &a32, &loss_rows[0], pg, totals,
                                           n_threads)
            else:
                bad[0] = xent_ce_rows_f32(&x[0, 0], pt, pq, n, c, &a32, &loss_rows[0], pg, totals,
                                          n_threads)
    else:
        a64.weight = _ptr1(weight)
        a64.sample_weight = _ptr1(sample_weight)
        a64.grad_rows = _ptr1(grad_rows)
        a64.grad_scale = grad_scale
        a64.ignore_index = ignore_index
        a64.label_smoothing = label_smoothing
        a64.z_loss = z_loss
        a64.softcap = softcap
        a64.mean = mean
        a64.scratch = scratch
        with nogil:
            if nll:
                bad[0] = xent_nll_rows_f64(&x[0, 0], pt, n, c, &a64, &loss_rows[0], pg, totals,
                                           n_threads)
            else:
                bad[0] = xent_ce_rows_f64(&x[0, 0], pt, pq, n, c, &a64, &loss_rows[0], pg, totals,
                                          n_threads)
    return 0


# Concrete entry points (no fused-type dispatch on the call path: it costs microseconds).
def ce_rows_f32(const float[:, ::1] x, const int64_t[::1] target, const float[:, ::1] q,
                const float[::1] weight, const float[::1] sample_weight,
                const float[::1] grad_rows, double grad_scale, int64_t ignore_index,
                double label_smoothing, double z_loss, double softcap, bint mean,
                double[::1] loss_rows, float[:, ::1] grad, int n_threads, bint nll=False):
    """float32 cross-entropy rows; see xent.cross_entropy."""
    return _ce_rows(x, target, q, weight, sample_weight, grad_rows, grad_scale, ignore_index,
                    label_smoothing, z_loss, softcap, mean, loss_rows, grad, n_threads, nll)


def ce_rows_f64(const double[:, ::1] x, const int64_t[::1] target, const double[:, ::1] q,
                const double[::1] weight, const double[::1] sample_weight,
                const double[::1] grad_rows, double grad_scale, int64_t ignore_index,
                double label_smoothing, double z_loss, double softcap, bint mean,
                double[::1] loss_rows, double[:, ::1] grad, int n_threads, bint nll=False):
    """float64 cross-entropy rows; see xent.cross_entropy."""
    return _ce_rows(x, target, q, weight, sample_weight, grad_rows, grad_scale, ignore_index,
                    label_smoothing, z_loss, softcap, mean, loss_rows, grad, n_threads, nll)
