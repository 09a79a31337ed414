/*
 * xent_dispatch.c -- xent_run: the variant of a kernel for the call's element
 * type and the SIMD level in use; xent_scratch_bytes: the scratch a call needs.
 *
 * The level is set at import (xent_simd_select, after XENT_SIMD is parsed in
 * Python) and only read afterwards, so concurrent calls never race on it.
 */
#include "xent_kernels.h"
#include "xent_common.h"

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
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
        __builtin_cpu_supports("bmi2"))
        return XENT_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2"))
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

/* The variants of every kernel: xent_<name>_<f32|f64>_<scalar|avx2|avx512>. */
#if XENT_X86
#define XENT_DECLARE(name, call_type, sfx)                  \
    int64_t xent_##name##_##sfx##_scalar(call_type *call);  \
    int64_t xent_##name##_##sfx##_avx2(call_type *call);    \
    int64_t xent_##name##_##sfx##_avx512(call_type *call);
#define XENT_PICK(name, sfx, ...)                                             \
    (level == XENT_SIMD_AVX512 ? xent_##name##_##sfx##_avx512(__VA_ARGS__)    \
     : level == XENT_SIMD_AVX2 ? xent_##name##_##sfx##_avx2(__VA_ARGS__)      \
                               : xent_##name##_##sfx##_scalar(__VA_ARGS__))
int64_t xent_half_run_f32_avx512(xent_kernel kernel, xent_dtype dtype, void *call);
int64_t xent_half_run_f32_avx2(xent_kernel kernel, xent_dtype dtype, void *call);
#else
#define XENT_DECLARE(name, call_type, sfx) int64_t xent_##name##_##sfx##_scalar(call_type *call);
#define XENT_PICK(name, sfx, ...) xent_##name##_##sfx##_scalar(__VA_ARGS__)
#endif
/* 16-bit logits: the float32 kernels on widened blocks of rows (xent_half.h). */
int64_t xent_half_run_f32_scalar(xent_kernel kernel, xent_dtype dtype, void *call);

#define XENT_KERNEL(name, call_type) XENT_DECLARE(name, call_type, f32) XENT_DECLARE(name, call_type, f64)
#include "xent_kernels.def"
#include "xent_testing.def"
#undef XENT_KERNEL

int64_t xent_run(xent_kernel kernel, xent_dtype dtype, void *call)
{
    const int level = xent_level >= 0 ? xent_level : xent_simd_active();
    (void)level; /* unused off x86 */
    if (dtype == XENT_DTYPE_F16 || dtype == XENT_DTYPE_BF16) return XENT_PICK(half_run, f32, kernel, dtype, call);
    switch (kernel) {
#define XENT_KERNEL(name, call_type)                                   \
    case XENT_KERNEL_##name:                                           \
        return dtype == XENT_DTYPE_F64 ? XENT_PICK(name, f64, (call_type *)call) \
                                       : XENT_PICK(name, f32, (call_type *)call);
#include "xent_kernels.def"
#include "xent_testing.def"
#undef XENT_KERNEL
    default:
        return -1;
    }
}

/* Two rows of exponentials per thread, where a large separate output is streamed. */
static size_t xent_stream_rows_bytes(const void *x, const void *out, int64_t n_rows, int64_t n_cols,
                                     int n_threads, size_t itemsize)
{
    if (n_threads < 1 || !xent_stream_output(x, out, n_rows, n_cols, itemsize)) return 0;
    return 2 * (size_t)n_threads * (size_t)n_cols * itemsize;
}

/* One block of widened rows per thread (xent_half.h). */
static size_t xent_half_scratch_bytes(xent_kernel kernel, const void *call)
{
    int64_t n_cols;
    int n_threads;
    switch (kernel) {
    case XENT_KERNEL_logsumexp_rows:
    case XENT_KERNEL_softmax_rows:
    case XENT_KERNEL_log_softmax_rows:
        n_cols = ((const xent_rows_call *)call)->n_cols;
        n_threads = ((const xent_rows_call *)call)->n_threads;
        break;
    case XENT_KERNEL_ce_rows:
        n_cols = ((const xent_ce_call *)call)->n_cols;
        n_threads = ((const xent_ce_call *)call)->n_threads;
        break;
    case XENT_KERNEL_token_scores_rows:
        n_cols = ((const xent_scores_call *)call)->n_cols;
        n_threads = ((const xent_scores_call *)call)->n_threads;
        break;
    default:
        return 0;
    }
    if (n_cols <= 0) return 0;
    return (size_t)(n_threads > 1 ? n_threads : 1) * (size_t)(xent_half_block_rows(n_cols) * n_cols) *
           sizeof(float);
}

size_t xent_scratch_bytes(xent_kernel kernel, xent_dtype dtype, const void *call)
{
    const size_t item = dtype == XENT_DTYPE_F64 ? sizeof(double) : sizeof(float);
    if (dtype == XENT_DTYPE_F16 || dtype == XENT_DTYPE_BF16) return xent_half_scratch_bytes(kernel, call);
    switch (kernel) {
    case XENT_KERNEL_softmax_rows: {
        const xent_rows_call *c = (const xent_rows_call *)call;
        return xent_stream_rows_bytes(c->x, c->out, c->n_rows, c->n_cols, c->n_threads, item);
    }
    case XENT_KERNEL_ce_rows: {
        /* the software-pipelined gradient: class targets, no softcap (xent_ce.h) */
        const xent_ce_call *c = (const xent_ce_call *)call;
        if (c->q != NULL || c->opt.softcap != 0.0) return 0;
        return xent_stream_rows_bytes(c->x, c->grad, c->n_rows, c->n_cols, c->n_threads, item);
    }
    case XENT_KERNEL_binary_loss: {
        const xent_binary_call *c = (const xent_binary_call *)call;
        const int64_t tiles = c->n_rows * ((c->n_cols + XENT_BINARY_TILE - 1) / XENT_BINARY_TILE);
        return (size_t)(tiles > 0 ? tiles : 1) * sizeof(double);
    }
    case XENT_KERNEL_ece_rows: {
        const xent_ece_call *c = (const xent_ece_call *)call;
        return XENT_ECE_SCRATCH_BYTES(c->n_rows, c->opt.n_bins);
    }
    default:
        return 0;
    }
}
