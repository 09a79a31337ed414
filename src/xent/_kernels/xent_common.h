/*
 * xent_common.h -- portability layer shared by every kernel translation unit.
 *
 * Design: kernels are plain C11.  OpenMP appears only through XENT_PRAGMA_OMP so
 * that a build without OpenMP (or with MSVC's OpenMP 2.0) compiles the same
 * source serially.  Nothing here allocates, raises or prints.
 */
#ifndef XENT_COMMON_H
#define XENT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#include "xent_kernels.h"

#if defined(_MSC_VER) && !defined(__clang__)
#define XENT_RESTRICT __restrict
#define XENT_INLINE static __forceinline
#define XENT_LIKELY(x) (x)
#define XENT_UNLIKELY(x) (x)
#else
#define XENT_RESTRICT restrict
#define XENT_INLINE static inline __attribute__((always_inline))
#define XENT_LIKELY(x) __builtin_expect(!!(x), 1)
#define XENT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#endif

#define XENT_STR_(x) #x
#define XENT_CAT2_(a, b) a##_##b
#define XENT_CAT2(a, b) XENT_CAT2_(a, b)
#define XENT_CAT3(a, b, c) XENT_CAT2(XENT_CAT2(a, b), c)

#ifdef _OPENMP
#include <omp.h>
#define XENT_PRAGMA_OMP(x) _Pragma(XENT_STR_(omp x))
XENT_INLINE int xent_thread_id(void) { return omp_get_thread_num(); }
XENT_INLINE int xent_team_size(void) { return omp_get_num_threads(); }
#else
#define XENT_PRAGMA_OMP(x)
XENT_INLINE int xent_thread_id(void) { return 0; }
XENT_INLINE int xent_team_size(void) { return 1; }
#endif

/* Prefetch into L2 (no-op where unsupported). */
#if defined(__GNUC__) || defined(__clang__)
#define XENT_PREFETCH_L2(p) __builtin_prefetch((p), 0, 2)
#else
#define XENT_PREFETCH_L2(p) ((void)(p))
#endif

/*
 * Rows up to this many bytes are processed in two passes (max, then exp from
 * L2) while the next row is prefetched into L2: two rows must fit in L2.
 */
#define XENT_PREFETCH_MAX_ROW_BYTES (256 * 1024)

/* Rows shorter than this prefetch the row this many bytes ahead instead of the
   next one (row_prefetch_target): a row of a few hundred bytes is processed in
   less time than memory takes to deliver the next. */
#ifndef XENT_PREFETCH_MIN_BYTES
#define XENT_PREFETCH_MIN_BYTES 4096
#endif

/* Status codes returned by kernels: 0 or a positive count of bad entries. */
#define XENT_OK 0

/*
 * Whether a separate output of n_rows x n_cols goes to memory with streaming
 * (non-temporal) stores: when it is too large to stay in cache.  Smaller outputs
 * (and outputs written in place) use ordinary stores.  The streaming softmax and
 * cross-entropy gradient keep the exponentials of two rows per thread in scratch
 * (xent_scratch_bytes), so the kernels and the scratch sizing ask this one function.
 */
#define XENT_STREAM_MIN_BYTES (16 * 1024 * 1024)
static inline int xent_stream_output(const void *x, const void *out, int64_t n_rows, int64_t n_cols,
                                     size_t itemsize)
{
    return out != NULL && out != x && n_rows * n_cols * (int64_t)itemsize > XENT_STREAM_MIN_BYTES;
}

/* Rows per block of 16-bit logits widened to float32 (xent_half.h): about
 * XENT_HALF_BLOCK_ELEMS elements (64 KiB, it stays in L2), at least one row.
 * Scratch: one block per thread. */
#define XENT_HALF_BLOCK_ELEMS 16384
static inline int64_t xent_half_block_rows(int64_t n_cols)
{
    return n_cols > 0 && n_cols < XENT_HALF_BLOCK_ELEMS ? XENT_HALF_BLOCK_ELEMS / n_cols : 1;
}

/* ECE scratch (xent_metrics.h): per row a confidence (double) and a bin (int64),
 * then per bin the sums of confidences and accuracies (double) and a count (int64). */
#define XENT_ECE_SCRATCH_BYTES(n_rows, n_bins) ((size_t)(n_rows) * 16 + (size_t)(n_bins) * 24)

/*
 * Class targets are checked where they are used, not only in a first scan:
 * another thread may rewrite them during a call, and a stale check must never
 * become an out-of-bounds access.  The volatile load makes the value checked
 * the value used (the compiler may not reload it from memory later).
 */
XENT_INLINE int64_t xent_load_target(const int64_t *p) { return *(const volatile int64_t *)p; }
XENT_INLINE int xent_class_ok(int64_t t, int64_t n_classes)
{
    return (uint64_t)t < (uint64_t)n_classes;
}

/*
 * Work (in logits elements, weighted by cost) below which no thread team is
 * started.  Waking an OpenMP team costs a few microseconds; one core handles
 * about 64K float32 elements of softmax work in that time.
 */
#ifndef XENT_MIN_PARALLEL_WORK
#define XENT_MIN_PARALLEL_WORK 65536
#endif

/* Keep the workers of the caller's next team of nt threads off the caller's CPU
 * (xent_team.c); a no-op when nothing changed since the last call. */
void xent_team_prepare(int nt);

/*
 * Number of threads to use for `work` elements: 1 below the threshold.  Called
 * by the master right before its team starts, so it also readies the team.
 */
XENT_INLINE int xent_threads_for(int64_t work, int64_t n_tasks, int n_threads)
{
    int nt = n_threads;
    if (n_threads <= 1 || work < XENT_MIN_PARALLEL_WORK || n_tasks <= 1) return 1;
    if ((int64_t)n_threads > n_tasks) nt = (int)n_tasks;
    xent_team_prepare(nt);
    return nt;
}

/* Contiguous block [lo, hi) of n items owned by part `k` of `parts`. */
XENT_INLINE void xent_block_range(int64_t n, int parts, int k, int64_t *lo, int64_t *hi)
{
    int64_t q = n / parts, r = n % parts;
    *lo = k * q + (k < r ? k : r);
    *hi = *lo + q + (k < r ? 1 : 0);
}

/* What a row writer's source values are (row_axpb): exponentials already
 * computed, or logits still to exponentiate as exp(x - m). */
typedef enum { XENT_SRC_EXP = 0, XENT_SRC_LOGITS = 1 } xent_row_src;

/* How a row writer stores: through the cache, or with non-temporal (streaming)
 * stores for outputs too large to stay cached (xent_stream_output decides). */
typedef enum { XENT_STORE_CACHED = 0, XENT_STORE_STREAM = 1 } xent_row_store;

#endif /* XENT_COMMON_H */
