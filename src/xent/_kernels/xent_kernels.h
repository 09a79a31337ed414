/*
 * xent_kernels.h -- the boundary between the Cython layer (_core.pyx, which
 * declares this file once in _core.pxd) and the C kernels.
 *
 * One entry point: xent_run(kernel, dtype, call).  The caller fills the call
 * struct of the kernel's family: arrays as pointers to elements of the call's
 * dtype (void *; NULL where an optional array is absent), sizes, one options
 * struct, outputs, and optional scratch of xent_scratch_bytes(...) bytes.
 * xent_run picks the variant for the dtype and the SIMD level chosen at import
 * (AVX-512, AVX2+FMA or scalar; XENT_SIMD can force a lower one).
 *
 * Kernels never allocate, raise or print.  They return XENT_OK (0) or a count
 * of bad entries: class targets out of range, or probabilities outside [0, 1]
 * (then, if found before any output was written, nothing is written), and
 * propagate NaN/inf in the IEEE way.
 */
#ifndef XENT_KERNELS_H
#define XENT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ enums */

/* F16 / BF16: the (n_rows, n_cols) arrays of the call (logits, softmax output,
 * gradient) hold 16-bit floats and every other array is float32 (xent_half.h);
 * only logsumexp, softmax, log_softmax, ce_rows and token_scores take them. */
typedef enum {
    XENT_DTYPE_F32 = 0,
    XENT_DTYPE_F64 = 1,
    XENT_DTYPE_F16 = 2,
    XENT_DTYPE_BF16 = 3
} xent_dtype;

typedef enum {
    XENT_SIMD_SCALAR = 0,
    XENT_SIMD_AVX2 = 1,
    XENT_SIMD_AVX512 = 2
} xent_simd_level;

typedef enum {
    XENT_REDUCE_NONE = 0,
    XENT_REDUCE_MEAN = 1,
    XENT_REDUCE_SUM = 2,
    XENT_REDUCE_BATCHMEAN = 3
} xent_reduction;

/* The elementwise losses of xent_binary.h. */
typedef enum {
    XENT_BINARY_WITH_LOGITS = 0, /* binary_cross_entropy_with_logits */
    XENT_BINARY_PROBS = 1,       /* binary_cross_entropy */
    XENT_BINARY_SIGMOID_FOCAL = 2
} xent_binary_op;

/* Elements per parallel work item (and partial sum) of the binary losses. */
#define XENT_BINARY_TILE 4096

/* ------------------------------------------------- the families' call structs */

/* logsumexp / softmax / log_softmax (xent_softmax.h). */
typedef struct {
    const void *x;   /* IN  (n_rows, n_cols) */
    int64_t n_rows, n_cols;
    void *out;       /* OUT logsumexp: (n_rows,); softmax / log_softmax: (n_rows, n_cols), may be x */
    void *scratch;
    int n_threads;
} xent_rows_call;

/* cross_entropy and nll_loss (xent_ce.h). */
typedef struct {
    int64_t ignore_index;
    double label_smoothing;
    double z_loss;
    double softcap;           /* 0: off */
    xent_reduction reduction; /* MEAN: the gradient is divided by the mean's denominator */
    double grad_scale;        /* scalar grad_output */
} xent_ce_options;

typedef struct {
    const void *x;             /* IN  (n_rows, n_cols) logits (log-probabilities for nll) */
    const int64_t *target;     /* IN  (n_rows,) class targets, or NULL with q */
    const void *q;             /* IN  (n_rows, n_cols) probability targets, or NULL */
    const void *weight;        /* IN  (n_cols,) class weights, or NULL */
    const void *sample_weight; /* IN  (n_rows,) or NULL */
    const void *grad_rows;     /* IN  (n_rows,) per-row grad_output (reduction none), or NULL */
    int64_t n_rows, n_cols;
    xent_ce_options opt;
    double *loss_rows;         /* OUT (n_rows,) */
    void *grad;                /* OUT (n_rows, n_cols), may be x; NULL for the loss only */
    int grad_f32;              /* 16-bit logits only: grad is float32, not x's type */
    void *scratch;
    double total, denom;       /* OUT sum of the row losses, the mean's denominator */
    int n_threads;
} xent_ce_call;

/* focal_loss (xent_focal.h). */
typedef struct {
    double gamma;
    double alpha;             /* used when alpha_c is NULL */
    int64_t ignore_index;
    xent_reduction reduction;
    double grad_scale;
} xent_focal_options;

typedef struct {
    const void *x;          /* IN  (n_rows, n_cols) */
    const int64_t *target;  /* IN  (n_rows,) */
    const void *alpha_c;    /* IN  (n_cols,) per-class alpha, or NULL */
    const void *grad_rows;  /* IN  (n_rows,) or NULL */
    int64_t n_rows, n_cols;
    xent_focal_options opt;
    void *loss;             /* OUT (n_rows,) or NULL */
    void *grad;             /* OUT (n_rows, n_cols), may be x; or NULL */
    double total;           /* OUT sum of the row losses */
    int64_t count;          /* OUT non-ignored rows */
    int n_threads;
} xent_focal_call;

/* The elementwise binary losses (xent_binary.h). */
typedef struct {
    xent_binary_op op;
    xent_reduction reduction;
    double alpha, gamma; /* sigmoid focal */
    double grad_scale;
} xent_binary_options;

typedef struct {
    const void *x;          /* IN  (n_rows, n_cols) logits or probabilities */
    const void *t;          /* IN  (n_rows, n_cols) targets */
    const void *weight;     /* IN  (weight_rows, n_cols), weight_rows 1 or n_rows; or NULL */
    int64_t weight_rows;
    const void *pos_weight; /* IN  (n_cols,) or NULL */
    const void *grad_elems; /* IN  (n_rows, n_cols) per-element grad_output, or NULL */
    int64_t n_rows, n_cols;
    xent_binary_options opt;
    void *loss;             /* OUT (n_rows, n_cols) or NULL */
    void *grad;             /* OUT (n_rows, n_cols), may be x; or NULL */
    void *scratch;          /* the tiles' partial sums */
    double total;           /* OUT */
    int n_threads;
} xent_binary_call;

/* kl_div_with_logits (xent_kl.h). */
typedef struct {
    double temperature;
    xent_reduction reduction;
    double grad_scale;
} xent_kl_options;

typedef struct {
    const void *s;          /* IN  (n_rows, n_cols) student logits */
    const void *t;          /* IN  (n_rows, n_cols) teacher logits */
    const void *grad_rows;  /* IN  (n_rows,) or NULL */
    int64_t n_rows, n_cols;
    xent_kl_options opt;
    void *loss;             /* OUT (n_rows,) or NULL */
    void *grad;             /* OUT (n_rows, n_cols), may be s; or NULL */
    double total;           /* OUT */
    int n_threads;
} xent_kl_call;

/* expected_calibration_error (xent_metrics.h). */
typedef struct {
    int64_t ignore_index;
    int64_t n_bins;
} xent_ece_options;

typedef struct {
    const void *x;          /* IN  (n_rows, n_cols) */
    const int64_t *target;  /* IN  (n_rows,) */
    int64_t n_rows, n_cols;
    xent_ece_options opt;
    void *scratch;          /* per-row confidences and bins, per-bin sums */
    double ece;             /* OUT (NaN without rows) */
    int n_threads;
} xent_ece_call;

/* token_scores (xent_scores.h): the outputs marked "or NULL" may be NULL. */
typedef struct {
    int64_t ignore_index;
    double temperature;
    int64_t top_k;
} xent_scores_options;

typedef struct {
    const void *x;          /* IN  (n_rows, n_cols) */
    const int64_t *target;  /* IN  (n_rows,) or NULL */
    int64_t n_rows, n_cols;
    xent_scores_options opt;
    void *lse, *entropy;    /* OUT (n_rows,) */
    void *logprob;          /* OUT (n_rows,), NULL without target */
    int64_t *rank;          /* OUT (n_rows,), NULL without target */
    void *top_logprobs;     /* OUT (n_rows, top_k), NULL if top_k == 0 */
    int64_t *top_indices;   /* OUT (n_rows, top_k), NULL if top_k == 0 */
    void *scratch;          /* 16-bit logits only (xent_half.h) */
    int n_threads;
} xent_scores_call;

/* Test hooks (xent_testing.def): a vector function of the active path over an array. */
typedef enum { XENT_VMATH_EXP = 0, XENT_VMATH_LOG = 1, XENT_VMATH_LOG1P = 2 } xent_vmath_fn;

typedef struct {
    const void *x;
    int64_t n;
    xent_vmath_fn fn;
    void *out;
} xent_vmath_call;

/* ----------------------------------------------------------- entry points */

/* The kernels (xent_kernels.def), then the test hooks (xent_testing.def). */
#define XENT_KERNEL(name, call_type) XENT_KERNEL_##name,
typedef enum {
#include "xent_kernels.def"
#include "xent_testing.def"
    XENT_KERNEL_COUNT
} xent_kernel;
#undef XENT_KERNEL

/* Runs `kernel` on `call` (the family's call struct) for elements of `dtype`. */
int64_t xent_run(xent_kernel kernel, xent_dtype dtype, void *call);

/* Bytes of scratch `call` needs (0: none); the caller allocates them and sets the
 * call's `scratch`.  Whether a large separate output is streamed is decided here
 * and in the kernels by the same function (xent_stream_output, xent_common.h). */
size_t xent_scratch_bytes(xent_kernel kernel, xent_dtype dtype, const void *call);

/* Highest SIMD level this CPU and build support; the level in use; select one
 * (clamped to the supported one; returns the level now active). */
int xent_simd_supported(void);
int xent_simd_active(void);
int xent_simd_select(int level);

/* Worker placement (xent_team.c): 1 keeps each team's workers off the CPU of the
 * calling thread.  Returns the setting now active (always 0 without Linux + OpenMP). */
int xent_team_placement_select(int on);
int xent_team_placement_active(void);
/* Release the forking thread's OpenMP pool before every fork (xent_team.c), so a
 * forked child can start thread teams.  Returns 1 if the handler is installed. */
int xent_fork_guard_install(void);

#endif /* XENT_KERNELS_H */
