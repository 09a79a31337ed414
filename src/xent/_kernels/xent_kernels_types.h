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

/*
 * Options of the softmax cross-entropy kernels (xent_ce.h).  Pointers may be NULL.
 *   weight        (C,) per-class weights
 *   sample_weight (N,) per-row weights
 *   grad_rows     (N,) per-row grad_output (reduction "none"), else NULL
 *   grad_scale    grad_output scalar (the kernel divides it by the mean denominator)
 *   mean          1 if reduction == "mean" (gradient divided by the denominator)
 *   label_smoothing, z_loss; softcap 0 for off
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
    } xent_ce_args_##SFX;
XENT_DEFINE_CE_ARGS(float, f32)
XENT_DEFINE_CE_ARGS(double, f64)

#endif
