# cython: freethreading_compatible = True
"""Cython boundary of xent: checks buffers, picks the dtype, runs C kernels without the GIL.

Private module; the public functions live in ``xent``.  Every kernel wrapper
takes its arrays (NumPy arrays, or None where optional), one options object of
its family and the thread count, fills the family's call struct
(xent_kernels.h) and runs it through ``_run``, the one place the GIL is
released.  The Python layer has validated and converted the arrays already;
this layer re-checks only what memory safety needs: C-contiguous buffers of
the right element type and length, writable outputs.
"""

from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS,
    PyBUF_FORMAT,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from libc.stdlib cimport free, malloc
from libc.string cimport memset

SIMD_NAMES = ("scalar", "avx2", "avx512")
FORK_GUARD = bool(xent_fork_guard_install())  # see xent_team.c
BINARY_TILE = 4096  # XENT_BINARY_TILE

_REDUCTIONS = {"none": XENT_REDUCE_NONE, "mean": XENT_REDUCE_MEAN, "sum": XENT_REDUCE_SUM,
               "batchmean": XENT_REDUCE_BATCHMEAN}
_BINARY_OPS = {"with_logits": XENT_BINARY_WITH_LOGITS, "probs": XENT_BINARY_PROBS,
               "sigmoid_focal": XENT_BINARY_SIGMOID_FOCAL}
_VMATH = {"exp": XENT_VMATH_EXP, "log": XENT_VMATH_LOG, "log1p": XENT_VMATH_LOG1P}


# ------------------------------------------------------------------ runtime

def openmp_enabled():
    """True if the extension was built with OpenMP."""
    return bool(xent_openmp_enabled())


def omp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return xent_omp_max_threads()


def build_info():
    """Compiler and flags the extension was built with."""
    return {
        "compiler": xent_build_cc().decode("utf-8", "replace"),
        "flags": xent_build_flags().decode("utf-8", "replace"),
    }


def simd_supported():
    """Name of the best SIMD path this CPU and build support."""
    return SIMD_NAMES[xent_simd_supported()]


def simd_active():
    """Name of the SIMD path in use."""
    return SIMD_NAMES[xent_simd_active()]


def simd_select(str name):
    """Select a SIMD path by name (clamped to what the CPU supports); returns the active one.

    Not thread-safe with concurrent kernel calls: meant for import time and tests.
    """
    if name not in SIMD_NAMES:
        raise ValueError(f"unknown SIMD path {name!r}; expected one of {SIMD_NAMES}")
    return SIMD_NAMES[xent_simd_select(SIMD_NAMES.index(name))]


def placement_select(bint on):
    """Turn worker placement on or off (see xent_team.c); returns the active setting."""
    return bool(xent_team_placement_select(on))


def placement_active():
    """True if each team's workers are kept off the calling thread's CPU."""
    return bool(xent_team_placement_active())


# ------------------------------------------------------------------ buffers

cdef enum:
    MAX_ARRAYS = 12

cdef enum Elem:
    FLOATING  # the call's computation dtype: float32 or float64 (float32 for 16-bit logits)
    ROWS      # the logits' own dtype: an (n_rows, n_cols) output such as a gradient
    INT64

cdef struct Arrays:
    Py_buffer views[MAX_ARRAYS]
    int n
    xent_dtype dtype


cdef int _open(Arrays *a, object x, int64_t *n_rows, int64_t *n_cols, bint half=False) except -1:
    """Takes the call's primary array (its dtype is the call's); its rows and columns.

    With `half`, 16-bit logits are taken too: float16, or bfloat16 passed as its
    bits (a uint16 array); the call's other floating arrays are then float32.
    """
    cdef Py_buffer *v = &a.views[0]
    PyObject_GetBuffer(x, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    a.n = 1
    if _is_type(v, b"f", 4):
        a.dtype = XENT_DTYPE_F32
    elif _is_type(v, b"d", 8):
        a.dtype = XENT_DTYPE_F64
    elif half and _is_type(v, b"e", 2):
        a.dtype = XENT_DTYPE_F16
    elif half and _is_type(v, b"H", 2):
        a.dtype = XENT_DTYPE_BF16
    else:
        raise TypeError(f"xent kernels take float32 or float64 arrays, got format {v.format!r}")
    if v.ndim == 2:
        n_rows[0], n_cols[0] = v.shape[0], v.shape[1]
    elif v.ndim == 1:
        n_rows[0], n_cols[0] = 1, v.shape[0]
    else:
        raise ValueError(f"xent kernels take 1-d or 2-d arrays, got {v.ndim} dimensions")
    return 0


cdef bint _is_type(Py_buffer *v, const char *codes, Py_ssize_t itemsize) noexcept:
    cdef const char *f = v.format
    if f[0] == b"@" or f[0] == b"=":
        f += 1
    return v.itemsize == itemsize and f[0] != 0 and f[1] == 0 and (
        f[0] == codes[0] or (codes[1] != 0 and f[0] == codes[1]))


cdef void *_array(Arrays *a, object obj, Elem elem, int64_t n_items, bint out,
                  bint required=False) except? NULL:
    """Data of `obj` (None: NULL) after checking element type, length, and for outputs writability."""
    if obj is None:
        if required:
            raise ValueError("xent kernels: a required array is None")
        return NULL
    if a.n == MAX_ARRAYS:
        raise ValueError("xent kernels: too many arrays")
    cdef Py_buffer *v = &a.views[a.n]
    PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if out else 0))
    a.n += 1
    cdef bint ok
    if elem == INT64:
        ok = _is_type(v, b"lq", 8)
    elif elem == ROWS and a.dtype == XENT_DTYPE_F16:
        ok = _is_type(v, b"e", 2)
    elif elem == ROWS and a.dtype == XENT_DTYPE_BF16:
        ok = _is_type(v, b"H", 2)
    elif a.dtype == XENT_DTYPE_F64:
        ok = _is_type(v, b"d", 8)
    else:
        ok = _is_type(v, b"f", 4)
    if not ok:
        raise TypeError(f"xent kernels: an array has format {v.format!r}, not the call's type")
    if v.len != n_items * v.itemsize:
        raise ValueError(f"xent kernels: an array has {v.len // v.itemsize} elements, "
                         f"expected {n_items}")
    return v.buf


cdef double *_doubles(Arrays *a, object obj, int64_t n_items) except? NULL:
    """A float64 output array (per-row losses), whatever the call's dtype."""
    cdef xent_dtype saved = a.dtype
    a.dtype = XENT_DTYPE_F64
    try:
        return <double *>_array(a, obj, FLOATING, n_items, True)
    finally:
        a.dtype = saved


cdef void _close(Arrays *a) noexcept:
    cdef int i
    for i in range(a.n):
        PyBuffer_Release(&a.views[i])
    a.n = 0


cdef int64_t _run(xent_kernel kernel, xent_dtype dtype, void *call, void **scratch) except -1:
    """Runs a kernel without the GIL (the one place it is released), with the scratch
    the kernel asks for (`scratch`: the call's scratch field, or NULL if it has none)."""
    cdef size_t nbytes = xent_scratch_bytes(kernel, dtype, call) if scratch != NULL else 0
    cdef void *buf = NULL
    cdef int64_t r
    if nbytes:
        buf = malloc(nbytes)
        if buf == NULL:
            raise MemoryError(f"xent: cannot allocate {nbytes} bytes of scratch")
        scratch[0] = buf
    try:
        with nogil:
            r = xent_run(kernel, dtype, call)
    finally:
        free(buf)
        if scratch != NULL:
            scratch[0] = NULL
    return r


cdef xent_reduction _reduction(str name) except *:
    return _REDUCTIONS[name]


# ------------------------------------------------------------------ options

cdef class CEOptions:
    """Options of cross_entropy / nll_loss (xent_ce_options)."""
    cdef xent_ce_options c

    def __init__(self, *, int64_t ignore_index=-100, double label_smoothing=0.0,
                 double z_loss=0.0, double softcap=0.0, str reduction="mean",
                 double grad_scale=1.0):
        self.c.ignore_index = ignore_index
        self.c.label_smoothing = label_smoothing
        self.c.z_loss = z_loss
        self.c.softcap = softcap
        self.c.reduction = _reduction(reduction)
        self.c.grad_scale = grad_scale


cdef class FocalOptions:
    """Options of focal_loss (xent_focal_options)."""
    cdef xent_focal_options c

    def __init__(self, *, double gamma=2.0, double alpha=1.0, int64_t ignore_index=-100,
                 str reduction="mean", double grad_scale=1.0):
        self.c.gamma = gamma
        self.c.alpha = alpha
        self.c.ignore_index = ignore_index
        self.c.reduction = _reduction(reduction)
        self.c.grad_scale = grad_scale


cdef class BinaryOptions:
    """Options of the elementwise binary losses (xent_binary_options)."""
    cdef xent_binary_options c

    def __init__(self, str op, *, str reduction="mean", double alpha=0.25, double gamma=2.0,
                 double grad_scale=1.0):
        self.c.op = _BINARY_OPS[op]
        self.c.reduction = _reduction(reduction)
        self.c.alpha = alpha
        self.c.gamma = gamma
        self.c.grad_scale = grad_scale


cdef class KLOptions:
    """Options of kl_div_with_logits (xent_kl_options)."""
    cdef xent_kl_options c

    def __init__(self, *, double temperature=1.0, str reduction="batchmean",
                 double grad_scale=1.0):
        self.c.temperature = temperature
        self.c.reduction = _reduction(reduction)
        self.c.grad_scale = grad_scale


cdef class ECEOptions:
    """Options of expected_calibration_error (xent_ece_options)."""
    cdef xent_ece_options c

    def __init__(self, *, int64_t n_bins=15, int64_t ignore_index=-100):
        if n_bins < 1:
            raise ValueError("ECEOptions: n_bins must be >= 1")
        self.c.n_bins = n_bins
        self.c.ignore_index = ignore_index


cdef class ScoresOptions:
    """Options of token_scores (xent_scores_options)."""
    cdef xent_scores_options c

    def __init__(self, *, int64_t top_k=0, double temperature=1.0, int64_t ignore_index=-100):
        if not temperature > 0:
            raise ValueError("ScoresOptions: temperature must be > 0")
        self.c.top_k = top_k
        self.c.temperature = temperature
        self.c.ignore_index = ignore_index


# ------------------------------------------------------------------ kernels

def rows(str op, x, out, int n_threads):
    """logsumexp / softmax / log_softmax over the rows of `x` (op names the kernel).

    logsumexp writes one value per row into `out`; softmax and log_softmax write
    `out` of x's shape (`out` may be `x`).
    """
    cdef Arrays a
    cdef xent_rows_call c
    cdef xent_kernel k
    memset(&c, 0, sizeof(c))
    if op == "logsumexp":
        k = XENT_KERNEL_logsumexp_rows
    elif op == "softmax":
        k = XENT_KERNEL_softmax_rows
    elif op == "log_softmax":
        k = XENT_KERNEL_log_softmax_rows
    else:
        raise ValueError(f"unknown rows kernel {op!r}")
    a.n = 0
    try:
        _open(&a, x, &c.n_rows, &c.n_cols, True)
        c.x = a.views[0].buf
        c.out = _array(&a, out, FLOATING if k == XENT_KERNEL_logsumexp_rows else ROWS,
                       c.n_rows if k == XENT_KERNEL_logsumexp_rows else c.n_rows * c.n_cols,
                       True, True)
        c.n_threads = n_threads
        if c.n_rows == 0 or (c.n_cols == 0 and k != XENT_KERNEL_logsumexp_rows):
            return None
        _run(k, a.dtype, &c, &c.scratch)
    finally:
        _close(&a)


def ce_rows(x, target, q, weight, sample_weight, grad_rows, loss_rows, grad, CEOptions opt,
            int n_threads, bint nll=False):
    """Cross-entropy (or, with `nll`, NLL) rows; see xent.cross_entropy.

    Returns (number of bad targets, sum of the row losses, mean's denominator).
    """
    cdef Arrays a
    cdef xent_ce_call c
    cdef int64_t n, k, bad
    memset(&c, 0, sizeof(c))
    a.n = 0
    try:
        _open(&a, x, &c.n_rows, &c.n_cols, not nll)
        n, k = c.n_rows, c.n_cols
        if k == 0:
            raise ValueError("ce_rows: zero classes")
        c.x = a.views[0].buf
        c.target = <const int64_t *>_array(&a, target, INT64, n, False, q is None)
        c.q = _array(&a, q, FLOATING, n * k, False)
        c.weight = _array(&a, weight, FLOATING, k, False)
        c.sample_weight = _array(&a, sample_weight, FLOATING, n, False)
        c.grad_rows = _array(&a, grad_rows, FLOATING, n, False)
        c.loss_rows = _doubles(&a, loss_rows, n)
        c.grad_f32 = (a.dtype == XENT_DTYPE_F16 or a.dtype == XENT_DTYPE_BF16) and (
            grad is not None and grad.dtype.itemsize == 4)  # a float32 gradient of 16-bit logits
        c.grad = _array(&a, grad, FLOATING if c.grad_f32 else ROWS, n * k, True)
        c.opt = opt.c
        c.n_threads = n_threads
        if n == 0:
            return 0, 0.0, 0.0
        bad = _run(XENT_KERNEL_nll_rows if nll else XENT_KERNEL_ce_rows, a.dtype, &c, &c.scratch)
        return bad, c.total, c.denom
    finally:
        _close(&a)


def focal_rows(x, target, alpha_c, grad_rows, loss, grad, FocalOptions opt, int n_threads):
    """Focal loss rows; see xent.focal_loss.  Returns (bad targets, total, non-ignored rows)."""
    cdef Arrays a
    cdef xent_focal_call c
    cdef int64_t n, k, bad
    memset(&c, 0, sizeof(c))
    a.n = 0
    try:
        _open(&a, x, &c.n_rows, &c.n_cols)
        n, k = c.n_rows, c.n_cols
        if k == 0:
            raise ValueError("focal_rows: zero classes")
        c.x = a.views[0].buf
        c.target = <const int64_t *>_array(&a, target, INT64, n, False, True)
        c.alpha_c = _array(&a, alpha_c, FLOATING, k, False)
        c.grad_rows = _array(&a, grad_rows, FLOATING, n, False)
        c.loss = _array(&a, loss, FLOATING, n, True)
        c.grad = _array(&a, grad, FLOATING, n * k, True)
        c.opt = opt.c
        c.n_threads = n_threads
        if n == 0:
            return 0, 0.0, 0
        bad = _run(XENT_KERNEL_focal_rows, a.dtype, &c, NULL)
        return bad, c.total, c.count
    finally:
        _close(&a)


def binary_loss(x, t, weight, pos_weight, grad_elems, loss, grad, BinaryOptions opt,
                int n_threads):
    """Elementwise binary losses over (rows, cols); see xent.binary_cross_entropy*.

    `weight` is None or of shape (1, cols) (repeated over the rows) or (rows, cols).
    Returns (invalid entries, total).
    """
    cdef Arrays a
    cdef xent_binary_call c
    cdef int64_t n, k, bad
    memset(&c, 0, sizeof(c))
    a.n = 0
    try:
        _open(&a, x, &c.n_rows, &c.n_cols)
        n, k = c.n_rows, c.n_cols
        c.x = a.views[0].buf
        c.t = _array(&a, t, FLOATING, n * k, False, True)
        if weight is not None:
            c.weight_rows = weight.shape[0]
            if c.weight_rows != 1 and c.weight_rows != n:
                raise ValueError("binary_loss: weight must have 1 or n_rows rows")
        c.weight = _array(&a, weight, FLOATING, c.weight_rows * k, False)
        c.pos_weight = _array(&a, pos_weight, FLOATING, k, False)
        c.grad_elems = _array(&a, grad_elems, FLOATING, n * k, False)
        c.loss = _array(&a, loss, FLOATING, n * k, True)
        c.grad = _array(&a, grad, FLOATING, n * k, True)
        c.opt = opt.c
        c.n_threads = n_threads
        if n * k == 0:
            return 0, 0.0
        bad = _run(XENT_KERNEL_binary_loss, a.dtype, &c, &c.scratch)
        return bad, c.total
    finally:
        _close(&a)


def kl_rows(s, t, grad_rows, loss, grad, KLOptions opt, int n_threads):
    """KL distillation rows; see xent.kl_div_with_logits.  Returns the sum of the row losses."""
    cdef Arrays a
    cdef xent_kl_call c
    cdef int64_t n, k
    memset(&c, 0, sizeof(c))
    a.n = 0
    try:
        _open(&a, s, &c.n_rows, &c.n_cols)
        n, k = c.n_rows, c.n_cols
        if k == 0:
            raise ValueError("kl_rows: zero classes")
        c.s = a.views[0].buf
        c.t = _array(&a, t, FLOATING, n * k, False, True)
        c.grad_rows = _array(&a, grad_rows, FLOATING, n, False)
        c.loss = _array(&a, loss, FLOATING, n, True)
        c.grad = _array(&a, grad, FLOATING, n * k, True)
        c.opt = opt.c
        c.n_threads = n_threads
        if n == 0:
            return 0.0
        _run(XENT_KERNEL_kl_rows, a.dtype, &c, NULL)
        return c.total
    finally:
        _close(&a)


def ece_rows(x, target, ECEOptions opt, int n_threads):
    """Expected calibration error; see xent.expected_calibration_error.  Returns (bad, ece)."""
    cdef Arrays a
    cdef xent_ece_call c
    cdef int64_t bad
    memset(&c, 0, sizeof(c))
    a.n = 0
    try:
        _open(&a, x, &c.n_rows, &c.n_cols)
        if c.n_cols == 0:
            raise ValueError("ece_rows: zero classes")
        c.x = a.views[0].buf
        c.target = <const int64_t *>_array(&a, target, INT64, c.n_rows, False, True)
        c.opt = opt.c
        c.n_threads = n_threads
        if c.n_rows == 0:
            return 0, float("nan")
        bad = _run(XENT_KERNEL_ece_rows, a.dtype, &c, &c.scratch)
        return bad, c.ece
    finally:
        _close(&a)


def token_scores_rows(x, target, lse, entropy, logprob, rank, top_logprobs, top_indices,
                      ScoresOptions opt, int n_threads):
    """Row-wise token scores; see xent.token_scores.

    `target`, `logprob` and `rank` are all None or all arrays of n_rows; the top-k
    arrays hold n_rows * top_k elements.  Returns the number of out-of-range targets.
    """
    cdef Arrays a
    cdef xent_scores_call c
    cdef int64_t n, k = opt.c.top_k
    cdef bint has_t = target is not None
    memset(&c, 0, sizeof(c))
    a.n = 0
    try:
        _open(&a, x, &c.n_rows, &c.n_cols, True)
        n = c.n_rows
        if c.n_cols == 0 or not 0 <= k <= c.n_cols:
            raise ValueError("token_scores_rows: need 0 <= top_k <= C and C >= 1")
        if has_t != (logprob is not None) or has_t != (rank is not None):
            raise ValueError("token_scores_rows: target, logprob and rank go together")
        c.x = a.views[0].buf
        c.target = <const int64_t *>_array(&a, target, INT64, n, False)
        c.lse = _array(&a, lse, FLOATING, n, True, True)
        c.entropy = _array(&a, entropy, FLOATING, n, True, True)
        c.logprob = _array(&a, logprob, FLOATING, n, True)
        c.rank = <int64_t *>_array(&a, rank, INT64, n, True)
        c.top_logprobs = _array(&a, top_logprobs, FLOATING, n * k, True, True)
        c.top_indices = <int64_t *>_array(&a, top_indices, INT64, n * k, True, True)
        if k == 0:
            c.top_logprobs = NULL
            c.top_indices = NULL
        c.opt = opt.c
        c.n_threads = n_threads
        if n == 0:
            return 0
        return _run(XENT_KERNEL_token_scores_rows, a.dtype, &c, &c.scratch)
    finally:
        _close(&a)


def vmath(str fn, x, out):
    """Test hook: the vector exp / log / log1p of the active SIMD path over a 1-d array."""
    cdef Arrays a
    cdef xent_vmath_call c
    cdef int64_t rows, n
    memset(&c, 0, sizeof(c))
    c.fn = _VMATH[fn]
    a.n = 0
    try:
        _open(&a, x, &rows, &n)
        c.x = a.views[0].buf
        c.n = rows * n
        c.out = _array(&a, out, FLOATING, c.n, True, True)
        if c.n:
            _run(XENT_KERNEL_vmath_array, a.dtype, &c, NULL)
    finally:
        _close(&a)
