/*
 * xent_dispatch.c -- run-time choice of the SIMD variant of every kernel.
 *
 * The level is read once at import (xent_simd_select from the module init,
 * after XENT_SIMD is parsed in Python) and is only read afterwards, so
 * concurrent calls never race on it.
 */
#include "xent_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define XENT_X86 1
#else
#define XENT_X86 0
#endif

static int xent_level = -1;

static int xent_detect(void)
{
#if XENT_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
        return XENT_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
        return XENT_SIMD_AVX2;
#endif
    return XENT_SIMD_SCALAR;
}

int xent_simd_supported(void)
{
    static int supported = -1;
    if (supported < 0) supported = xent_detect();
    return supported;
}

int xent_simd_select(int level)
{
    const int sup = xent_simd_supported();
    xent_level = (level < 0 || level > sup) ? sup : level;
    return xent_level;
}

int xent_simd_active(void)
{
    if (xent_level < 0) xent_simd_select(-1);
    return xent_level;
}

#if XENT_X86
#define XENT_SWITCH(name, sfx, args)                                          \
    switch (xent_level >= 0 ? xent_level : xent_simd_active()) {                                                     \
    case XENT_SIMD_AVX512: return name##_##sfx##_avx512 args;                 \
    case XENT_SIMD_AVX2: return name##_##sfx##_avx2 args;                     \
    default: return name##_##sfx##_scalar args;                               \
    }
#define XENT_DECLARE_VARIANTS(name, sfx, params)                              \
    int64_t name##_##sfx##_scalar params;                                     \
    int64_t name##_##sfx##_avx2 params;                                       \
    int64_t name##_##sfx##_avx512 params;
#else
#define XENT_SWITCH(name, sfx, args) return name##_##sfx##_scalar args;
#define XENT_DECLARE_VARIANTS(name, sfx, params) int64_t name##_##sfx##_scalar params;
#endif

#define XENT_KERNEL(name, params, args)                                       \
    XENT_DECLARE_VARIANTS(name, f32, params)                                  \
    int64_t name##_f32 params { XENT_SWITCH(name, f32, args) }
#define XENT_T float
#define XENT_ARGS_SFX f32
#include "xent_kernels.def"
#undef XENT_KERNEL
#undef XENT_T
#undef XENT_ARGS_SFX

#define XENT_KERNEL(name, params, args)                                       \
    XENT_DECLARE_VARIANTS(name, f64, params)                                  \
    int64_t name##_f64 params { XENT_SWITCH(name, f64, args) }
#define XENT_T double
#define XENT_ARGS_SFX f64
#include "xent_kernels.def"
#undef XENT_KERNEL
#undef XENT_T
#undef XENT_ARGS_SFX
