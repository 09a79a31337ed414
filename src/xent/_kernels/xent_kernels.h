/*
 * xent_kernels.h -- public C prototypes of the dispatched kernels.
 *
 * xent_<name>_f32 / xent_<name>_f64 forward to the variant for the SIMD level
 * chosen at import (AVX-512, AVX2+FMA or scalar; XENT_SIMD can force a lower one).
 * Kernels never allocate, raise or print; they return XENT_OK (0) or a count of
 * bad entries, and propagate NaN/inf in the IEEE way.
 */
#ifndef XENT_KERNELS_H
#define XENT_KERNELS_H

#include <stdint.h>
#include "xent_kernels_types.h"

#define XENT_SIMD_SCALAR 0
#define XENT_SIMD_AVX2 1
#define XENT_SIMD_AVX512 2

/* Highest level this CPU and build support. */
int xent_simd_supported(void);
/* Level in use. */
int xent_simd_active(void);
/* Select a level (clamped to the supported one); returns the level now active. */
int xent_simd_select(int level);

/* Worker placement (xent_team.c): 1 keeps each team's workers off the CPU of the
 * calling thread.  Returns the setting now active (always 0 without Linux + OpenMP). */
int xent_team_placement_select(int on);
int xent_team_placement_active(void);
/* Release the forking thread's OpenMP pool before every fork (xent_team.c), so a
 * forked child can start thread teams.  Returns 1 if the handler is installed. */
int xent_fork_guard_install(void);

#define XENT_KERNEL(name, params, args) int64_t name##_f32 params;
#define XENT_T float
#define XENT_ARGS_SFX f32
#include "xent_kernels.def"
#undef XENT_KERNEL
#undef XENT_T
#undef XENT_ARGS_SFX

#define XENT_KERNEL(name, params, args) int64_t name##_f64 params;
#define XENT_T double
#define XENT_ARGS_SFX f64
#include "xent_kernels.def"
#undef XENT_KERNEL
#undef XENT_T
#undef XENT_ARGS_SFX

#endif /* XENT_KERNELS_H */
