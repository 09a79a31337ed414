/*
 * xent_kernels_types.h -- option structs shared by the Cython boundary and the kernels.
 * One struct per family and element type; XENT_ARGS names the one for XENT_T.
 */
#ifndef XENT_KERNELS_TYPES_H
#define XENT_KERNELS_TYPES_H
#include <stdint.h>

/* XENT_ARGS(xent_ce_args) -> xent_ce_args_f32 for the element type being compiled. */
#define XENT_ARGS_CAT_(a, b) a##_##b
#define XENT_ARGS_CAT(a, b) XENT_ARGS_CAT_(a, b)
#define XENT_ARGS(fam) XENT_ARGS_CAT(fam, XENT_ARGS_SFX)

/* Separate row outputs larger than this go to memory with streaming stores
 * (xent_rowops.h), with the exponentials kept in a caller's scratch (two rows
 * per thread) by the softmax and cross-entropy kernels. */
#define XENT_STREAM_MIN_BYTES (16 * 1024 * 1024)

/* Reduction codes shared by the loss variants (xent_focal.h, xent_binary.h, xent_kl.h). */
#define XENT_RED_NONE 0
#define XENT_RED_MEAN 1
#define XENT_RED_SUM 2
#define XENT_RED_BATCHMEAN 3

/* Loss variants: binary ops (xent_binary.h). */
#define XENT_BIN_LOGITS 0 /* binary_cross_entropy_with_logits */
#define XENT_BIN_PROBS 1  /* binary_cross_entropy */
#define XENT_BIN_FOCAL 2  /* sigmoid_focal_loss */
#define XENT_BIN_TILE 4096 /* elements per parallel work item / partial sum */

#define XENT_DEFINE_VARIANT_ARGS(T, sfx)                                                   \
    /* focal_loss: alpha_t = alpha_c[t] if alpha_c else alpha */                           \
    typedef struct {                                                                       \
        double gamma, alpha;                                                               \
        const T *alpha_c;                                                                  \
        int64_t ignore_index;                                                              \
        int reduction;                                                                     \
        double grad_scale;   /* scalar grad_output */                                      \
        const T *grad_rows;  /* per-row grad_output (reduction none) or NULL */            \
    } xent_focal_args_##sfx;                                                               \
    /* binary losses over an (n_rows, n_cols) array */                                     \
    typedef struct {                                                                       \
        int op, reduction;                                                                 \
        const T *weight;     /* NULL, or (weight_rows, n_cols) with weight_rows 1 or n */  \
        int64_t weight_rows;                                                               \
        const T *pos_weight; /* NULL or (n_cols,) */                                       \
        double alpha, gamma; /* sigmoid focal */                                           \
        double grad_scale;                                                                 \
        const T *grad_elems; /* per-element grad_output (reduction none) or NULL */        \
    } xent_binary_args_##sfx;                                                              \
    /* kl_div_with_logits */                                                               \
    typedef struct {                                                                       \
        double temperature;                                                                \
        int reduction;                                                                     \
        double grad_scale;                                                                 \
        const T *grad_rows;                                                                \
    } xent_kl_args_##sfx;
XENT_DEFINE_VARIANT_ARGS(float, f32)
XENT_DEFINE_VARIANT_ARGS(double, f64)
/*
 * Options of the softmax cross-entropy kernels (xent_ce.h).  Pointers may be NULL.
 *   weight        (C,) per-class weights
 *   sample_weight (N,) per-row weights
 *   grad_rows     (N,) per-row grad_output (reduction "none"), else NULL
 *   grad_scale    grad_output scalar (the kernel divides it by the mean denominator)
 *   mean          1 if reduction == "mean" (gradient divided by the denominator)
 *   label_smoothing, z_loss; softcap 0 for off
 *   scratch       NULL, or 2 * n_threads * C elements: a separate gradient over
 *                 XENT_STREAM_MIN_BYTES (class targets, no softcap) is then written
 *                 with streaming stores while the exponentials wait there in cache
 */
#define XENT_DEFINE_CE_ARGS(T, SFX)                                            \
    typedef struct {                                                           \
        const T *weight;                                                       \
        const T *sample_weight;                                                \
        const T *grad_rows;                                                    \
        double grad_scale;                                                     \
        int64_t ignore_index;                                                  \
        double label_smoothing;                                                \
        double z_loss;                                                         \
        double softcap;                                                        \
        int mean;                                                              \
        T *scratch;                                                            \
    } xent_ce_args_##SFX;
XENT_DEFINE_CE_ARGS(float, f32)
XENT_DEFINE_CE_ARGS(double, f64)
/* token_scores (xent_scores.h): outputs may be NULL as documented there. */
#define XENT_SCORES_ARGS_DEF(T, sfx)                                                    \
    typedef struct {                                                                    \
        const int64_t *target; int64_t ignore_index; double temperature; int64_t top_k; \
        T *lse; T *entropy; T *logprob; int64_t *rank; T *top_logprobs;                 \
        int64_t *top_indices;                                                           \
    } xent_scores_args_##sfx;
XENT_SCORES_ARGS_DEF(float, f32)
XENT_SCORES_ARGS_DEF(double, f64)

#endif
