# The C boundary (xent_kernels.h), declared once for _core.pyx.
from libc.stdint cimport int64_t


cdef extern from "xent_runtime.h" nogil:
    int xent_openmp_enabled()
    int xent_omp_max_threads()
    const char *xent_build_cc()
    const char *xent_build_flags()


cdef extern from "xent_kernels.h" nogil:
    ctypedef enum xent_dtype:
        XENT_DTYPE_F32
        XENT_DTYPE_F64
        XENT_DTYPE_F16
        XENT_DTYPE_BF16

    ctypedef enum xent_reduction:
        XENT_REDUCE_NONE
        XENT_REDUCE_MEAN
        XENT_REDUCE_SUM
        XENT_REDUCE_BATCHMEAN

    ctypedef enum xent_binary_op:
        XENT_BINARY_WITH_LOGITS
        XENT_BINARY_PROBS
        XENT_BINARY_SIGMOID_FOCAL

    ctypedef enum xent_vmath_fn:
        XENT_VMATH_EXP
        XENT_VMATH_LOG
        XENT_VMATH_LOG1P

    ctypedef enum xent_kernel:
        XENT_KERNEL_logsumexp_rows
        XENT_KERNEL_softmax_rows
        XENT_KERNEL_log_softmax_rows
        XENT_KERNEL_ce_rows
        XENT_KERNEL_nll_rows
        XENT_KERNEL_focal_rows
        XENT_KERNEL_binary_loss
        XENT_KERNEL_kl_rows
        XENT_KERNEL_ece_rows
        XENT_KERNEL_token_scores_rows
        XENT_KERNEL_vmath_array

    ctypedef struct xent_rows_call:
        const void *x
        int64_t n_rows, n_cols
        void *out
        void *scratch
        int n_threads

    ctypedef struct xent_ce_options:
        int64_t ignore_index
        double label_smoothing, z_loss, softcap
        xent_reduction reduction
        double grad_scale

    ctypedef struct xent_ce_call:
        const void *x
        const int64_t *target
        const void *q
        const void *weight
        const void *sample_weight
        const void *grad_rows
        int64_t n_rows, n_cols
        xent_ce_options opt
        double *loss_rows
        void *grad
        int grad_f32
        void *scratch
        double total, denom
        int n_threads

    ctypedef struct xent_focal_options:
        double gamma, alpha
        int64_t ignore_index
        xent_reduction reduction
        double grad_scale

    ctypedef struct xent_focal_call:
        const void *x
        const int64_t *target
        const void *alpha_c
        const void *grad_rows
        int64_t n_rows, n_cols
        xent_focal_options opt
        void *loss
        void *grad
        double total
        int64_t count
        int n_threads

    ctypedef struct xent_binary_options:
        xent_binary_op op
        xent_reduction reduction
        double alpha, gamma, grad_scale

    ctypedef struct xent_binary_call:
        const void *x
        const void *t
        const void *weight
        int64_t weight_rows
        const void *pos_weight
        const void *grad_elems
        int64_t n_rows, n_cols
        xent_binary_options opt
        void *loss
        void *grad
        void *scratch
        double total
        int n_threads

    ctypedef struct xent_kl_options:
        double temperature
        xent_reduction reduction
        double grad_scale

    ctypedef struct xent_kl_call:
        const void *s
        const void *t
        const void *grad_rows
        int64_t n_rows, n_cols
        xent_kl_options opt
        void *loss
        void *grad
        double total
        int n_threads

    ctypedef struct xent_ece_options:
        int64_t ignore_index, n_bins

    ctypedef struct xent_ece_call:
        const void *x
        const int64_t *target
        int64_t n_rows, n_cols
        xent_ece_options opt
        void *scratch
        double ece
        int n_threads

    ctypedef struct xent_scores_options:
        int64_t ignore_index
        double temperature
        int64_t top_k

    ctypedef struct xent_scores_call:
        const void *x
        const int64_t *target
        int64_t n_rows, n_cols
        xent_scores_options opt
        void *lse
        void *entropy
        void *logprob
        int64_t *rank
        void *top_logprobs
        int64_t *top_indices
        void *scratch
        int n_threads

    ctypedef struct xent_vmath_call:
        const void *x
        int64_t n
        xent_vmath_fn fn
        void *out

    int64_t xent_run(xent_kernel kernel, xent_dtype dtype, void *call)
    size_t xent_scratch_bytes(xent_kernel kernel, xent_dtype dtype, const void *call)

    int xent_simd_supported()
    int xent_simd_active()
    int xent_simd_select(int level)
    int xent_team_placement_select(int on)
    int xent_team_placement_active()
    int xent_fork_guard_install()
