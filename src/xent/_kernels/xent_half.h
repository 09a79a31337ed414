/*
 * xent_half.h -- float16 and bfloat16 logits for logsumexp, softmax,
 * log_softmax, cross-entropy (xent_ce_rows) and token_scores.
 *
 * Design: the 16-bit type is a storage type only; the computation is the
 * float32 kernel's, unchanged.  A block of rows (XENT_HALF_BLOCK_ELEMS float32
 * elements, at least one row: it stays in L2) is widened into the calling
 * thread's scratch, the float32 kernel of the same SIMD path runs on it with one
 * thread (in place for softmax, log_softmax and the gradient), and the
 * (n_rows, n_cols) outputs are narrowed back with round-to-nearest-even (NaN
 * stays NaN, overflow gives inf, float16 subnormals are exact).  Every other
 * array of the call (per-row outputs, weights, probability targets) is float32.
 * Memory sees 2 bytes per logit read and 2 per gradient element written; no
 * full-size float32 copy exists.  Compiled in the float32 units only.
 *
 * Cross-entropy: the targets are scanned once for the whole call (bad count, the
 * mean's denominator), and each block runs with reduction "sum" and the final
 * gradient scale, so the blocks' gradients equal those of one float32 call.  If
 * a block finds a target that another thread moved out of range after that
 * scan, its rows get NaN losses and zero gradients and are counted.  With
 * grad_f32 the gradient is float32 (xent.torch keeps it for its backward, which
 * scales it by grad_output before rounding it to the input's dtype).
 */
#ifndef XENT_HALF_H
#define XENT_HALF_H

#if XENT_F32

/* ---------------------------------------------------- portable conversions */

XENT_INLINE float half_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

XENT_INLINE uint32_t half_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

XENT_INLINE float half_bf16_to_f32(uint16_t h) { return half_bits_f32((uint32_t)h << 16); }

/* Round to nearest even; a NaN keeps its sign and top payload bits and is made quiet. */
XENT_INLINE uint16_t half_f32_to_bf16(float f)
{
    const uint32_t u = half_f32_bits(f);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
}

XENT_INLINE float half_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return half_bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN */
    if (e == 0) return half_bits_f32(sign | half_f32_bits((float)m * 0x1p-24f)); /* 0, subnormal */
    return half_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Round to nearest even, as vcvtps2ph: overflow gives inf, results below 2**-14 are subnormal. */
XENT_INLINE uint16_t half_f32_to_f16(float f)
{
    const uint32_t u = half_f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (and inf) */
    if (a < 0x38800000u) {
        /* adding 0.5 leaves units of 2**-24 (the subnormal step) in the mantissa,
           rounded to nearest even by the FPU */
        const float t = half_bits_f32(a) + 0.5f;
        return (uint16_t)(sign | (half_f32_bits(t) - 0x3f000000u));
    }
    /* rebias the exponent (127 - 15) and round the 13 dropped bits to even */
    return (uint16_t)(sign | ((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13));
}

/* ------------------------------------------------------------ row conversions */

#if XENT_ISA != XENT_ISA_SCALAR
/* 8 bfloat16 -> float32: the bits shifted into the high half. */
XENT_INLINE __m256 half_bf16x8_to_f32(const uint16_t *h)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)h));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* 8 float32 -> bfloat16, as half_f32_to_bf16 (the same integer steps, 8 lanes). */
XENT_INLINE __m128i half_f32x8_to_bf16(__m256 v)
{
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    /* 32 -> 16 bits per lane (values <= 0xffff), lanes back in order */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}
#endif

static void half_widen(const uint16_t *XENT_RESTRICT h, float *XENT_RESTRICT f, int64_t n, xent_dtype dt)
{
    int64_t i = 0;
    if (dt == XENT_DTYPE_BF16) {
#if XENT_ISA != XENT_ISA_SCALAR
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(f + i, half_bf16x8_to_f32(h + i));
#endif
        for (; i < n; ++i) f[i] = half_bf16_to_f32(h[i]);
        return;
    }
#if XENT_ISA != XENT_ISA_SCALAR
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
    for (; i < n; ++i) f[i] = half_f16_to_f32(h[i]);
}

static void half_narrow(const float *XENT_RESTRICT f, uint16_t *XENT_RESTRICT h, int64_t n, xent_dtype dt)
{
    int64_t i = 0;
    if (dt == XENT_DTYPE_BF16) {
#if XENT_ISA != XENT_ISA_SCALAR
        for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(h + i), half_f32x8_to_bf16(_mm256_loadu_ps(f + i)));
#endif
        for (; i < n; ++i) h[i] = half_f32_to_bf16(f[i]);
        return;
    }
#if XENT_ISA != XENT_ISA_SCALAR
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(f + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; ++i) h[i] = half_f32_to_f16(f[i]);
}

/* ------------------------------------------------------------------ drivers */

/* The blocks of rows of a call and the team that runs them. */
typedef struct {
    int64_t rows, count;
    int nt;
} half_blocks;

static half_blocks half_blocks_of(int64_t n_rows, int64_t n_cols, int n_threads)
{
    half_blocks b;
    b.rows = xent_half_block_rows(n_cols);
    b.count = (n_rows + b.rows - 1) / b.rows;
    b.nt = xent_threads_for(n_rows * n_cols, b.count, n_threads);
    return b;
}

/* The calling thread's block buffer (scratch: xent_scratch_bytes). */
XENT_INLINE float *half_buffer(void *scratch, const half_blocks *b, int64_t n_cols)
{
    return (float *)scratch + (size_t)xent_thread_id() * (size_t)(b->rows * n_cols);
}

static int64_t half_rows(xent_kernel kernel, xent_dtype dt, xent_rows_call *c)
{
    const int64_t n_rows = c->n_rows, C = c->n_cols;
    const half_blocks b = half_blocks_of(n_rows, C, c->n_threads);
    const uint16_t *x = (const uint16_t *)c->x;
    int64_t k;
    if (C == 0) return kernel == XENT_KERNEL_logsumexp_rows ? XENT_FN(xent_logsumexp_rows)(c) : XENT_OK;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(b.nt) if(b.nt > 1))
    for (k = 0; k < b.count; ++k) {
        const int64_t r0 = k * b.rows, nr = r0 + b.rows < n_rows ? b.rows : n_rows - r0;
        float *buf = half_buffer(c->scratch, &b, C);
        xent_rows_call sub;
        memset(&sub, 0, sizeof sub);
        sub.x = buf;
        sub.n_rows = nr;
        sub.n_cols = C;
        sub.out = kernel == XENT_KERNEL_logsumexp_rows ? (void *)((float *)c->out + r0) : (void *)buf;
        sub.n_threads = 1;
        half_widen(x + r0 * C, buf, nr * C, dt);
        if (kernel == XENT_KERNEL_logsumexp_rows) {
            XENT_FN(xent_logsumexp_rows)(&sub);
            continue;
        }
        if (kernel == XENT_KERNEL_softmax_rows) XENT_FN(xent_softmax_rows)(&sub);
        else XENT_FN(xent_log_softmax_rows)(&sub);
        half_narrow(buf, (uint16_t *)c->out + r0 * C, nr * C, dt);
    }
    return XENT_OK;
}

static int64_t half_ce(xent_dtype dt, xent_ce_call *c)
{
    const xent_ce_args_t args = ce_args_of(c);
    const int64_t n_rows = c->n_rows, C = c->n_cols;
    const half_blocks b = half_blocks_of(n_rows, C, c->n_threads);
    const uint16_t *x = (const uint16_t *)c->x;
    xent_ce_options opt = c->opt;
    double denom;
    int64_t k, lost = 0;
    if (c->q == NULL) {
        const int64_t bad = ce_scan_targets(c->target, n_rows, C, &args, c->n_threads, &denom);
        if (bad) return bad;
    } else {
        denom = args.sample_weight ? row_sum_wide(args.sample_weight, n_rows) : (double)n_rows;
    }
    if (opt.reduction == XENT_REDUCE_MEAN) { /* the scale the float32 kernel would use */
        opt.grad_scale = opt.grad_scale / denom;
        opt.reduction = XENT_REDUCE_SUM;
    }
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(b.nt) if(b.nt > 1) reduction(+:lost))
    for (k = 0; k < b.count; ++k) {
        const int64_t r0 = k * b.rows, nr = r0 + b.rows < n_rows ? b.rows : n_rows - r0;
        float *buf = half_buffer(c->scratch, &b, C);
        xent_ce_call sub = *c;
        int64_t r, i;
        sub.x = buf;
        sub.target = c->target ? c->target + r0 : NULL;
        sub.q = c->q ? (const void *)((const float *)c->q + r0 * C) : NULL;
        sub.sample_weight = c->sample_weight ? (const void *)((const float *)c->sample_weight + r0) : NULL;
        sub.grad_rows = c->grad_rows ? (const void *)((const float *)c->grad_rows + r0) : NULL;
        sub.n_rows = nr;
        sub.opt = opt;
        sub.loss_rows = c->loss_rows + r0;
        float *wide = c->grad && c->grad_f32 ? (float *)c->grad + r0 * C : NULL;
        sub.grad = wide ? wide : c->grad ? buf : NULL; /* wide: a separate output, no narrowing */
        sub.scratch = NULL;
        sub.n_threads = 1;
        half_widen(x + r0 * C, buf, nr * C, dt);
        r = XENT_FN(xent_ce_rows)(&sub);
        if (r) { /* a target moved out of range after the scan (see the header) */
            for (i = 0; i < nr; ++i) sub.loss_rows[i] = (double)NAN;
            if (sub.grad) memset(sub.grad, 0, (size_t)(nr * C) * sizeof(float));
            lost += r;
        }
        if (c->grad && !wide) half_narrow(buf, (uint16_t *)c->grad + r0 * C, nr * C, dt);
    }
    c->total = xent_sum_doubles(c->loss_rows, n_rows);
    c->denom = denom;
    return lost;
}

static int64_t half_scores(xent_dtype dt, xent_scores_call *c)
{
    const int64_t n_rows = c->n_rows, C = c->n_cols, tk = c->top_logprobs ? c->opt.top_k : 0;
    const half_blocks b = half_blocks_of(n_rows, C, c->n_threads);
    const uint16_t *x = (const uint16_t *)c->x;
    int64_t k, bad = 0;
    if (C <= 0) return XENT_OK;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(b.nt) if(b.nt > 1) reduction(+:bad))
    for (k = 0; k < b.count; ++k) {
        const int64_t r0 = k * b.rows, nr = r0 + b.rows < n_rows ? b.rows : n_rows - r0;
        float *buf = half_buffer(c->scratch, &b, C);
        xent_scores_call sub = *c;
        sub.x = buf;
        sub.n_rows = nr;
        sub.target = c->target ? c->target + r0 : NULL;
        sub.lse = (float *)c->lse + r0;
        sub.entropy = (float *)c->entropy + r0;
        sub.logprob = c->logprob ? (void *)((float *)c->logprob + r0) : NULL;
        sub.rank = c->rank ? c->rank + r0 : NULL;
        sub.top_logprobs = c->top_logprobs ? (void *)((float *)c->top_logprobs + r0 * tk) : NULL;
        sub.top_indices = c->top_indices ? c->top_indices + r0 * tk : NULL;
        sub.scratch = NULL;
        sub.n_threads = 1;
        half_widen(x + r0 * C, buf, nr * C, dt);
        bad += XENT_FN(xent_token_scores_rows)(&sub);
    }
    return bad;
}

/* xent_run for float16 / bfloat16 logits (xent_dispatch.c); -1 for the other kernels. */
int64_t XENT_FN(xent_half_run)(xent_kernel kernel, xent_dtype dt, void *call)
{
    switch (kernel) {
    case XENT_KERNEL_logsumexp_rows:
    case XENT_KERNEL_softmax_rows:
    case XENT_KERNEL_log_softmax_rows: return half_rows(kernel, dt, (xent_rows_call *)call);
    case XENT_KERNEL_ce_rows: return half_ce(dt, (xent_ce_call *)call);
    case XENT_KERNEL_token_scores_rows: return half_scores(dt, (xent_scores_call *)call);
    default: return -1;
    }
}

#endif /* XENT_F32 */
#endif /* XENT_HALF_H */
