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
