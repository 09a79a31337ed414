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

#endif
