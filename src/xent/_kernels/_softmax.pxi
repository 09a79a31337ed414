# Softmax family: logsumexp / softmax / log_softmax over contiguous rows.

cdef extern from "xent_kernels.h" nogil:
    enum: XENT_STREAM_MIN_BYTES
    int64_t xent_logsumexp_rows_f32(const float *x, int64_t n, int64_t c, float *out, int nt)
    int64_t xent_logsumexp_rows_f64(const double *x, int64_t n, int64_t c, double *out, int nt)
    int64_t xent_softmax_rows_f32(const float *x, int64_t n, int64_t c, float *out, float *scratch, int nt)
    int64_t xent_softmax_rows_f64(const double *x, int64_t n, int64_t c, double *out, double *scratch, int nt)
    int64_t xent_log_softmax_rows_f32(const float *x, int64_t n, int64_t c, float *out, int nt)
    int64_t xent_log_softmax_rows_f64(const double *x, int64_t n, int64_t c, double *out, int nt)
    int64_t xent_exp_array_f32(const float *x, int64_t n, float *out)
    int64_t xent_exp_array_f64(const double *x, int64_t n, double *out)
    int64_t xent_log_array_f32(const float *x, int64_t n, float *out)
    int64_t xent_log_array_f64(const double *x, int64_t n, double *out)


cdef _logsumexp_rows(const floating[:, ::1] x, floating[::1] out, int n_threads):
    """Row-wise logsumexp; see xent.logsumexp."""
    cdef int64_t n = x.shape[0], c = x.shape[1]
    if out.shape[0] != n:
        raise ValueError("logsumexp_rows: out has the wrong length")
    if n == 0:
        return
    cdef const floating *px = &x[0, 0] if c > 0 else NULL
    with nogil:
        if floating is float:
            xent_logsumexp_rows_f32(px, n, c, &out[0], n_threads)
        else:
            xent_logsumexp_rows_f64(px, n, c, &out[0], n_threads)


cdef _softmax_rows(const floating[:, ::1] x, floating[:, ::1] out, int n_threads, bint log):
    """Row-wise softmax or log_softmax; see xent.softmax / xent.log_softmax."""
    cdef int64_t n = x.shape[0], c = x.shape[1]
    if out.shape[0] != n or out.shape[1] != c:
        raise ValueError("softmax_rows: out has the wrong shape")
    if n == 0 or c == 0:
        return
    cdef floating *scratch = NULL
    if (not log and n_threads > 0 and <const void *>&out[0, 0] != <const void *>&x[0, 0]
            and n * c * <int64_t>sizeof(floating) > XENT_STREAM_MIN_BYTES):
        # two cached rows of exponentials per thread for the streaming-store path;
        # without them (NULL) the kernel uses ordinary stores
        scratch = <floating *>malloc(2 * n_threads * c * sizeof(floating))
    try:
        with nogil:
            if floating is float:
                if log:
                    xent_log_softmax_rows_f32(&x[0, 0], n, c, &out[0, 0], n_threads)
                else:
                    xent_softmax_rows_f32(&x[0, 0], n, c, &out[0, 0], scratch, n_threads)
            else:
                if log:
                    xent_log_softmax_rows_f64(&x[0, 0], n, c, &out[0, 0], n_threads)
                else:
                    xent_softmax_rows_f64(&x[0, 0], n, c, &out[0, 0], scratch, n_threads)
    finally:
        free(scratch)


def exp_array(const floating[::1] x, floating[::1] out):
    """Vector exp of the active SIMD path (test hook for the accuracy sweep)."""
    cdef int64_t n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("exp_array: out has the wrong length")
    if n == 0:
        return
    with nogil:
        if floating is float:
            xent_exp_array_f32(&x[0], n, &out[0])
        else:
            xent_exp_array_f64(&x[0], n, &out[0])


def log_array(const floating[::1] x, floating[::1] out):
    """Vector log of the active SIMD path (test hook for the accuracy sweep)."""
    cdef int64_t n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("log_array: out has the wrong length")
    if n == 0:
        return
    with nogil:
        if floating is float:
            xent_log_array_f32(&x[0], n, &out[0])
        else:
            xent_log_array_f64(&x[0], n, &out[0])


# Concrete entry points (fused-type dispatch of a def function costs microseconds per call).
def logsumexp_rows_f32(const float[:, ::1] x, float[::1] out, int n_threads):
    """float32 row-wise logsumexp; see xent.logsumexp."""
    _logsumexp_rows(x, out, n_threads)


def logsumexp_rows_f64(const double[:, ::1] x, double[::1] out, int n_threads):
    """float64 row-wise logsumexp; see xent.logsumexp."""
    _logsumexp_rows(x, out, n_threads)


def softmax_rows_f32(const float[:, ::1] x, float[:, ::1] out, int n_threads, bint log):
    """float32 row-wise softmax / log_softmax."""
    _softmax_rows(x, out, n_threads, log)


def softmax_rows_f64(const double[:, ::1] x, double[:, ::1] out, int n_threads, bint log):
    """float64 row-wise softmax / log_softmax."""
    _softmax_rows(x, out, n_threads, log)


def logsumexp_rows(x, out, int n_threads):
    """Row-wise logsumexp of a float32 or float64 array."""
    (logsumexp_rows_f32 if x.dtype == np.float32 else logsumexp_rows_f64)(x, out, n_threads)


def softmax_rows(x, out, int n_threads, bint log):
    """Row-wise softmax / log_softmax of a float32 or float64 array."""
    (softmax_rows_f32 if x.dtype == np.float32 else softmax_rows_f64)(x, out, n_threads, log)
