/*
 * xent_simd.h -- a minimal vector abstraction, one instantiation per translation unit.
 *
 * Every kernel body is written once against the `xv_*` operations below.  Each
 * of the six kernel translation units (xent_<isa>_<dtype>.c) defines
 *   XENT_ISA  : XENT_ISA_SCALAR, XENT_ISA_AVX2 or XENT_ISA_AVX512
 *   XENT_F32  : 1 for float, 0 for double
 * and includes xent_instantiate.h, which includes this file.  The scalar
 * "vector" has one lane, so the generic code is also the portable fallback.
 *
 * Types:  xv  -- vector of XENT_T,  xm -- lane mask,  XV_N -- lanes.
 * Naming: xv_<op>; loads/stores are unaligned unless said otherwise.
 * xm_bits(m): lane i of the mask as bit i.  xv_add_where(m, a, b): a + b in the
 * lanes of m, a elsewhere (b's other lanes are never used, even if NaN);
 * xv_add_unless(m, a, b) the same in the lanes not in m.
 */
#ifndef XENT_SIMD_H
#define XENT_SIMD_H

#include "xent_common.h"

#define XENT_ISA_SCALAR 0
#define XENT_ISA_AVX2 1
#define XENT_ISA_AVX512 2

#if !defined(XENT_ISA) || !defined(XENT_F32)
#error "define XENT_ISA and XENT_F32 before including xent_simd.h"
#endif

#if XENT_F32
#define XENT_T float
#define XENT_SFX f32
#else
#define XENT_T double
#define XENT_SFX f64
#endif

#if XENT_ISA == XENT_ISA_AVX512
#define XENT_ISA_SFX avx512
#elif XENT_ISA == XENT_ISA_AVX2
#define XENT_ISA_SFX avx2
#else
#define XENT_ISA_SFX scalar
#endif

/* Exported kernel names: xent_softmax_rows -> xent_softmax_rows_f32_avx512. */
#define XENT_FN(name) XENT_CAT3(name, XENT_SFX, XENT_ISA_SFX)

#if XENT_ISA != XENT_ISA_SCALAR
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ AVX-512 */
#if XENT_ISA == XENT_ISA_AVX512 && XENT_F32
typedef __m512 xv;
typedef __mmask16 xm;
#define XV_N 16
XENT_INLINE xv xv_set1(float a) { return _mm512_set1_ps(a); }
XENT_INLINE xv xv_loadu(const float *p) { return _mm512_loadu_ps(p); }
XENT_INLINE void xv_storeu(float *p, xv v) { _mm512_storeu_ps(p, v); }
XENT_INLINE void xv_stream(float *p, xv v) { _mm512_stream_ps(p, v); }
XENT_INLINE xm xm_first(int64_t n) { return (xm)((n >= 16) ? 0xFFFF : ((1u << n) - 1u)); }
XENT_INLINE xv xv_load_part(const float *p, int64_t n, float fill)
{ return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), xm_first(n), p); }
XENT_INLINE void xv_store_part(float *p, xv v, int64_t n) { _mm512_mask_storeu_ps(p, xm_first(n), v); }
XENT_INLINE xv xv_add(xv a, xv b) { return _mm512_add_ps(a, b); }
XENT_INLINE xv xv_sub(xv a, xv b) { return _mm512_sub_ps(a, b); }
XENT_INLINE xv xv_mul(xv a, xv b) { return _mm512_mul_ps(a, b); }
XENT_INLINE xv xv_div(xv a, xv b) { return _mm512_div_ps(a, b); }
XENT_INLINE xv xv_fmadd(xv a, xv b, xv c) { return _mm512_fmadd_ps(a, b, c); }
XENT_INLINE xv xv_fnmadd(xv a, xv b, xv c) { return _mm512_fnmadd_ps(a, b, c); }
XENT_INLINE xv xv_max(xv a, xv b) { return _mm512_max_ps(a, b); }
XENT_INLINE xv xv_min(xv a, xv b) { return _mm512_min_ps(a, b); }
XENT_INLINE xv xv_abs(xv a) { return _mm512_abs_ps(a); }
XENT_INLINE xm xv_gt(xv a, xv b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
XENT_INLINE xm xv_ge(xv a, xv b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
XENT_INLINE xm xv_eq(xv a, xv b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
XENT_INLINE xm xv_isnan(xv a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
XENT_INLINE xm xv_not_le(xv a, xv b) { return _mm512_cmp_ps_mask(a, b, _CMP_NLE_UQ); }
XENT_INLINE xm xv_not_ge(xv a, xv b) { return _mm512_cmp_ps_mask(a, b, _CMP_NGE_UQ); }
XENT_INLINE xv xv_select(xm m, xv a, xv b) { return _mm512_mask_blend_ps(m, b, a); }
XENT_INLINE xv xv_add_where(xm m, xv a, xv b) { return _mm512_mask_add_ps(a, m, a, b); }
/* a * 2**floor(b), rounded once (subnormal results included); only on AVX-512. */
#define XV_HAS_SCALEF 1
XENT_INLINE xv xv_scalef(xv a, xv b) { return _mm512_scalef_ps(a, b); }
/* Lanes k < n: t[k] as a float, or -1 where t[k] == ignore; lanes k >= n: -1. */
#define XV_HAS_LOAD_CLASSES 1
XENT_INLINE xv xv_load_classes(const int64_t *t, int64_t n, int64_t ignore)
{
    const __m512i ig = _mm512_set1_epi64(ignore);
    const __mmask8 m0 = (__mmask8)(n >= 8 ? 0xFF : (1u << n) - 1u);
    const __mmask8 m1 = (__mmask8)(n >= 16 ? 0xFF : n > 8 ? (1u << (n - 8)) - 1u : 0u);
    const __m512i a = _mm512_maskz_loadu_epi64(m0, t), b = _mm512_maskz_loadu_epi64(m1, t + 8);
    const __mmask16 keep = (__mmask16)(_mm512_mask_cmpneq_epi64_mask(m0, a, ig) |
                                       ((unsigned)_mm512_mask_cmpneq_epi64_mask(m1, b, ig) << 8));
    const __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtepi64_ps(a)), _mm512_cvtepi64_ps(b), 1);
    return _mm512_mask_blend_ps(keep, _mm512_set1_ps(-1.0f), v);
}
XENT_INLINE xm xm_not(xm m) { return (xm)~m; }
XENT_INLINE xm xm_or(xm a, xm b) { return (xm)(a | b); }
XENT_INLINE int xm_any(xm m) { return m != 0; }
XENT_INLINE int xm_count(xm m) { return __builtin_popcount((unsigned)m); }
XENT_INLINE uint32_t xm_bits(xm m) { return (uint32_t)m; }
XENT_INLINE float xv_hmax(xv v) { return _mm512_reduce_max_ps(v); }
XENT_INLINE double xv_hsum(xv v)
{
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}
/* 2**n for lanes holding integral n in the normal exponent range. */
XENT_INLINE xv xv_pow2n(xv n)
{
    __m512i b = _mm512_castps_si512(_mm512_add_ps(n, _mm512_set1_ps(0x1.8p23f)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(127)), 23));
}
/* x = m * 2**e with m in [1, 2) for finite x > 0 (subnormals included). */
XENT_INLINE xv xv_frexp(xv x, xv *e)
{
    *e = _mm512_getexp_ps(x);
    return _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
}
/* Lanes k < n of base[k * stride] (others 0); stride * XV_N must fit in int32. */
XENT_INLINE xv xv_gather(const float *base, int64_t stride, int64_t n)
{
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)stride));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), xm_first(n), idx, base, 4);
}
XENT_INLINE void xv_scatter(float *base, int64_t stride, xv v, int64_t n)
{
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)stride));
    _mm512_mask_i32scatter_ps(base, xm_first(n), idx, v, 4);
}

/* In-register transpose of a 16 x 16 tile: r[k] (row k) becomes column k. */
XENT_INLINE void xv_transpose(xv *r)
{
    __m512 t[16], u[16];
    int i, c;
    for (i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 4; ++i) { /* u[4i + c]: in 128-bit lane L, column 4L + c of rows 4i..4i+3 */
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (c = 0; c < 4; ++c) { /* a 4 x 4 transpose of 128-bit blocks */
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

#elif XENT_ISA == XENT_ISA_AVX512
typedef __m512d xv;
typedef __mmask8 xm;
#define XV_N 8
XENT_INLINE xv xv_set1(double a) { return _mm512_set1_pd(a); }
XENT_INLINE xv xv_loadu(const double *p) { return _mm512_loadu_pd(p); }
XENT_INLINE void xv_storeu(double *p, xv v) { _mm512_storeu_pd(p, v); }
XENT_INLINE void xv_stream(double *p, xv v) { _mm512_stream_pd(p, v); }
XENT_INLINE xm xm_first(int64_t n) { return (xm)((n >= 8) ? 0xFF : ((1u << n) - 1u)); }
XENT_INLINE xv xv_load_part(const double *p, int64_t n, double fill)
{ return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), xm_first(n), p); }
XENT_INLINE void xv_store_part(double *p, xv v, int64_t n) { _mm512_mask_storeu_pd(p, xm_first(n), v); }
XENT_INLINE xv xv_add(xv a, xv b) { return _mm512_add_pd(a, b); }
XENT_INLINE xv xv_sub(xv a, xv b) { return _mm512_sub_pd(a, b); }
XENT_INLINE xv xv_mul(xv a, xv b) { return _mm512_mul_pd(a, b); }
XENT_INLINE xv xv_div(xv a, xv b) { return _mm512_div_pd(a, b); }
XENT_INLINE xv xv_fmadd(xv a, xv b, xv c) { return _mm512_fmadd_pd(a, b, c); }
XENT_INLINE xv xv_fnmadd(xv a, xv b, xv c) { return _mm512_fnmadd_pd(a, b, c); }
XENT_INLINE xv xv_max(xv a, xv b) { return _mm512_max_pd(a, b); }
XENT_INLINE xv xv_min(xv a, xv b) { return _mm512_min_pd(a, b); }
XENT_INLINE xv xv_abs(xv a) { return _mm512_abs_pd(a); }
XENT_INLINE xm xv_gt(xv a, xv b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
XENT_INLINE xm xv_ge(xv a, xv b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
XENT_INLINE xm xv_eq(xv a, xv b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
XENT_INLINE xm xv_isnan(xv a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
XENT_INLINE xm xv_not_le(xv a, xv b) { return _mm512_cmp_pd_mask(a, b, _CMP_NLE_UQ); }
XENT_INLINE xm xv_not_ge(xv a, xv b) { return _mm512_cmp_pd_mask(a, b, _CMP_NGE_UQ); }
XENT_INLINE xv xv_select(xm m, xv a, xv b) { return _mm512_mask_blend_pd(m, b, a); }
XENT_INLINE xv xv_add_where(xm m, xv a, xv b) { return _mm512_mask_add_pd(a, m, a, b); }
#define XV_HAS_SCALEF 1
XENT_INLINE xv xv_scalef(xv a, xv b) { return _mm512_scalef_pd(a, b); }
#define XV_HAS_LOAD_CLASSES 1
XENT_INLINE xv xv_load_classes(const int64_t *t, int64_t n, int64_t ignore)
{
    const __mmask8 m = (__mmask8)(n >= 8 ? 0xFF : (1u << n) - 1u);
    const __m512i a = _mm512_maskz_loadu_epi64(m, t);
    const __mmask8 keep = _mm512_mask_cmpneq_epi64_mask(m, a, _mm512_set1_epi64(ignore));
    return _mm512_mask_blend_pd(keep, _mm512_set1_pd(-1.0), _mm512_cvtepi64_pd(a));
}
XENT_INLINE xm xm_not(xm m) { return (xm)~m; }
XENT_INLINE xm xm_or(xm a, xm b) { return (xm)(a | b); }
XENT_INLINE int xm_any(xm m) { return m != 0; }
XENT_INLINE int xm_count(xm m) { return __builtin_popcount((unsigned)m); }
XENT_INLINE uint32_t xm_bits(xm m) { return (uint32_t)m; }
XENT_INLINE double xv_hmax(xv v) { return _mm512_reduce_max_pd(v); }
XENT_INLINE double xv_hsum(xv v) { return _mm512_reduce_add_pd(v); }
XENT_INLINE xv xv_pow2n(xv n)
{
    __m512i b = _mm512_castpd_si512(_mm512_add_pd(n, _mm512_set1_pd(0x1.8p52)));
    return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(b, _mm512_set1_epi64(1023)), 52));
}
XENT_INLINE xv xv_frexp(xv x, xv *e)
{
    *e = _mm512_getexp_pd(x);
    return _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
}
XENT_INLINE xv xv_gather(const double *base, int64_t stride, int64_t n)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)stride));
    return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), xm_first(n), idx, base, 8);
}
XENT_INLINE void xv_scatter(double *base, int64_t stride, xv v, int64_t n)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)stride));
    _mm512_mask_i32scatter_pd(base, xm_first(n), idx, v, 8);
}

/* In-register transpose of an 8 x 8 tile: r[k] (row k) becomes column k. */
XENT_INLINE void xv_transpose(xv *r)
{
    __m512d t[8];
    int i, c;
    for (i = 0; i < 4; ++i) { /* t[2i + c]: in 128-bit lane L, column 2L + c of rows 2i, 2i+1 */
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (c = 0; c < 2; ++c) { /* a 4 x 4 transpose of 128-bit blocks */
        const __m512d v0 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0x88), v1 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0xDD);
        const __m512d v2 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0x88), v3 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0xDD);
        r[c] = _mm512_shuffle_f64x2(v0, v2, 0x88);
        r[2 + c] = _mm512_shuffle_f64x2(v1, v3, 0x88);
        r[4 + c] = _mm512_shuffle_f64x2(v0, v2, 0xDD);
        r[6 + c] = _mm512_shuffle_f64x2(v1, v3, 0xDD);
    }
}

/* ------------------------------------------------------------------ AVX2 */
#elif XENT_ISA == XENT_ISA_AVX2 && XENT_F32
typedef __m256 xv;
typedef __m256 xm;
#define XV_N 8
XENT_INLINE xv xv_set1(float a) { return _mm256_set1_ps(a); }
XENT_INLINE xv xv_loadu(const float *p) { return _mm256_loadu_ps(p); }
XENT_INLINE void xv_storeu(float *p, xv v) { _mm256_storeu_ps(p, v); }
XENT_INLINE void xv_stream(float *p, xv v) { _mm256_stream_ps(p, v); }
XENT_INLINE __m256i xm_first_i(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
XENT_INLINE xv xv_load_part(const float *p, int64_t n, float fill)
{
    __m256i m = xm_first_i(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
XENT_INLINE void xv_store_part(float *p, xv v, int64_t n) { _mm256_maskstore_ps(p, xm_first_i(n), v); }
XENT_INLINE xv xv_add(xv a, xv b) { return _mm256_add_ps(a, b); }
XENT_INLINE xv xv_sub(xv a, xv b) { return _mm256_sub_ps(a, b); }
XENT_INLINE xv xv_mul(xv a, xv b) { return _mm256_mul_ps(a, b); }
XENT_INLINE xv xv_div(xv a, xv b) { return _mm256_div_ps(a, b); }
XENT_INLINE xv xv_fmadd(xv a, xv b, xv c) { return _mm256_fmadd_ps(a, b, c); }
XENT_INLINE xv xv_fnmadd(xv a, xv b, xv c) { return _mm256_fnmadd_ps(a, b, c); }
XENT_INLINE xv xv_max(xv a, xv b) { return _mm256_max_ps(a, b); }
XENT_INLINE xv xv_min(xv a, xv b) { return _mm256_min_ps(a, b); }
XENT_INLINE xv xv_abs(xv a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
XENT_INLINE xm xv_gt(xv a, xv b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
XENT_INLINE xm xv_ge(xv a, xv b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
XENT_INLINE xm xv_eq(xv a, xv b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
XENT_INLINE xm xv_isnan(xv a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
XENT_INLINE xm xv_not_le(xv a, xv b) { return _mm256_cmp_ps(a, b, _CMP_NLE_UQ); }
XENT_INLINE xm xv_not_ge(xv a, xv b) { return _mm256_cmp_ps(a, b, _CMP_NGE_UQ); }
XENT_INLINE xv xv_select(xm m, xv a, xv b) { return _mm256_blendv_ps(b, a, m); }
XENT_INLINE xv xv_add_where(xm m, xv a, xv b) { return _mm256_add_ps(a, _mm256_and_ps(m, b)); }
#define XV_HAS_ADD_UNLESS 1
XENT_INLINE xv xv_add_unless(xm m, xv a, xv b) { return _mm256_add_ps(a, _mm256_andnot_ps(m, b)); }
XENT_INLINE xm xm_not(xm m) { return _mm256_xor_ps(m, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
XENT_INLINE xm xm_or(xm a, xm b) { return _mm256_or_ps(a, b); }
XENT_INLINE int xm_any(xm m) { return !_mm256_testz_ps(m, m); }
XENT_INLINE int xm_count(xm m) { return __builtin_popcount((unsigned)_mm256_movemask_ps(m)); }
XENT_INLINE uint32_t xm_bits(xm m) { return (uint32_t)_mm256_movemask_ps(m); }
XENT_INLINE float xv_hmax(xv v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
XENT_INLINE double xv_hsum(xv v)
{
    __m256d s = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}
XENT_INLINE xv xv_pow2n(xv n)
{
    __m256i b = _mm256_castps_si256(_mm256_add_ps(n, _mm256_set1_ps(0x1.8p23f)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(127)), 23));
}
/* 2**n from nm = n + 0x1.8p23 + 127 (xv_exp's biased rounding magic), whose low
   bits are n's biased exponent: shifted into the exponent field.  |n| <= 126. */
XENT_INLINE xv xv_pow2_magic(xv nm) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(nm), 23)); }
XENT_INLINE xv xv_frexp(xv x, xv *e)
{
    /* subnormals: scale by 2**32 first */
    const __m256 sub = _mm256_cmp_ps(x, _mm256_set1_ps(0x1p-126f), _CMP_LT_OQ);
    const __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(0x1p32f)), sub);
    const __m256i b = _mm256_castps_si256(xs);
    __m256 ef = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(127)));
    *e = _mm256_sub_ps(ef, _mm256_and_ps(sub, _mm256_set1_ps(32.0f)));
    return _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x007fffff)),
                                               _mm256_set1_epi32(0x3f800000)));
}
XENT_INLINE xv xv_gather(const float *base, int64_t stride, int64_t n)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)stride));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, _mm256_castsi256_ps(xm_first_i(n)), 4);
}
XENT_INLINE void xv_scatter(float *base, int64_t stride, xv v, int64_t n)
{
    float tmp[8];
    int64_t k;
    _mm256_storeu_ps(tmp, v);
    for (k = 0; k < n && k < 8; ++k) base[k * stride] = tmp[k];
}

/* In-register transpose of an 8 x 8 tile: r[k] (row k) becomes column k. */
XENT_INLINE void xv_transpose(xv *r)
{
    __m256 t[8], u[8];
    int i, c;
    for (i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 2; ++i) { /* u[4i + c]: in 128-bit lane L, column 4L + c of rows 4i..4i+3 */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (c = 0; c < 4; ++c) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

#elif XENT_ISA == XENT_ISA_AVX2
typedef __m256d xv;
typedef __m256d xm;
#define XV_N 4
XENT_INLINE xv xv_set1(double a) { return _mm256_set1_pd(a); }
XENT_INLINE xv xv_loadu(const double *p) { return _mm256_loadu_pd(p); }
XENT_INLINE void xv_storeu(double *p, xv v) { _mm256_storeu_pd(p, v); }
XENT_INLINE void xv_stream(double *p, xv v) { _mm256_stream_pd(p, v); }
XENT_INLINE __m256i xm_first_i(int64_t n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n > 4 ? 4 : n), _mm256_setr_epi64x(0, 1, 2, 3));
}
XENT_INLINE xv xv_load_part(const double *p, int64_t n, double fill)
{
    __m256i m = xm_first_i(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
}
XENT_INLINE void xv_store_part(double *p, xv v, int64_t n) { _mm256_maskstore_pd(p, xm_first_i(n), v); }
XENT_INLINE xv xv_add(xv a, xv b) { return _mm256_add_pd(a, b); }
XENT_INLINE xv xv_sub(xv a, xv b) { return _mm256_sub_pd(a, b); }
XENT_INLINE xv xv_mul(xv a, xv b) { return _mm256_mul_pd(a, b); }
XENT_INLINE xv xv_div(xv a, xv b) { return _mm256_div_pd(a, b); }
XENT_INLINE xv xv_fmadd(xv a, xv b, xv c) { return _mm256_fmadd_pd(a, b, c); }
XENT_INLINE xv xv_fnmadd(xv a, xv b, xv c) { return _mm256_fnmadd_pd(a, b, c); }
XENT_INLINE xv xv_max(xv a, xv b) { return _mm256_max_pd(a, b); }
XENT_INLINE xv xv_min(xv a, xv b) { return _mm256_min_pd(a, b); }
XENT_INLINE xv xv_abs(xv a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
XENT_INLINE xm xv_gt(xv a, xv b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
XENT_INLINE xm xv_ge(xv a, xv b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
XENT_INLINE xm xv_eq(xv a, xv b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
XENT_INLINE xm xv_isnan(xv a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
XENT_INLINE xm xv_not_le(xv a, xv b) { return _mm256_cmp_pd(a, b, _CMP_NLE_UQ); }
XENT_INLINE xm xv_not_ge(xv a, xv b) { return _mm256_cmp_pd(a, b, _CMP_NGE_UQ); }
XENT_INLINE xv xv_select(xm m, xv a, xv b) { return _mm256_blendv_pd(b, a, m); }
XENT_INLINE xv xv_add_where(xm m, xv a, xv b) { return _mm256_add_pd(a, _mm256_and_pd(m, b)); }
#define XV_HAS_ADD_UNLESS 1
XENT_INLINE xv xv_add_unless(xm m, xv a, xv b) { return _mm256_add_pd(a, _mm256_andnot_pd(m, b)); }
XENT_INLINE xm xm_not(xm m) { return _mm256_xor_pd(m, _mm256_castsi256_pd(_mm256_set1_epi64x(-1))); }
XENT_INLINE xm xm_or(xm a, xm b) { return _mm256_or_pd(a, b); }
XENT_INLINE int xm_any(xm m) { return !_mm256_testz_pd(m, m); }
XENT_INLINE int xm_count(xm m) { return __builtin_popcount((unsigned)_mm256_movemask_pd(m)); }
XENT_INLINE uint32_t xm_bits(xm m) { return (uint32_t)_mm256_movemask_pd(m); }
XENT_INLINE double xv_hmax(xv v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
}
XENT_INLINE double xv_hsum(xv v)
{
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}
XENT_INLINE xv xv_pow2n(xv n)
{
    __m256i b = _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(0x1.8p52)));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(b, _mm256_set1_epi64x(1023)), 52));
}
XENT_INLINE xv xv_pow2_magic(xv nm) { return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(nm), 52)); }
XENT_INLINE xv xv_frexp(xv x, xv *e)
{
    const __m256d sub = _mm256_cmp_pd(x, _mm256_set1_pd(0x1p-1022), _CMP_LT_OQ);
    const __m256d xs = _mm256_blendv_pd(x, _mm256_mul_pd(x, _mm256_set1_pd(0x1p64)), sub);
    const __m256i b = _mm256_castpd_si256(xs);
    /* exponent field as an exact double: OR it into the mantissa of 2**52 */
    const __m256i ebits = _mm256_or_si256(_mm256_srli_epi64(b, 52), _mm256_castpd_si256(_mm256_set1_pd(0x1p52)));
    __m256d ef = _mm256_sub_pd(_mm256_castsi256_pd(ebits), _mm256_set1_pd(0x1p52 + 1023.0));
    *e = _mm256_sub_pd(ef, _mm256_and_pd(sub, _mm256_set1_pd(64.0)));
    return _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi64x(0x000fffffffffffffLL)),
                                               _mm256_set1_epi64x(0x3ff0000000000000LL)));
}
XENT_INLINE xv xv_gather(const double *base, int64_t stride, int64_t n)
{
    const __m128i idx = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32((int)stride));
    return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), base, idx, _mm256_castsi256_pd(xm_first_i(n)), 8);
}
XENT_INLINE void xv_scatter(double *base, int64_t stride, xv v, int64_t n)
{
    double tmp[4];
    int64_t k;
    _mm256_storeu_pd(tmp, v);
    for (k = 0; k < n && k < 4; ++k) base[k * stride] = tmp[k];
}

/* In-register transpose of a 4 x 4 tile: r[k] (row k) becomes column k. */
XENT_INLINE void xv_transpose(xv *r)
{
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* ------------------------------------------------------------------ scalar */
#else
typedef XENT_T xv;
typedef int xm;
#define XV_N 1
XENT_INLINE xv xv_set1(XENT_T a) { return a; }
XENT_INLINE xv xv_loadu(const XENT_T *p) { return *p; }
XENT_INLINE void xv_storeu(XENT_T *p, xv v) { *p = v; }
XENT_INLINE void xv_stream(XENT_T *p, xv v) { *p = v; }
XENT_INLINE xv xv_load_part(const XENT_T *p, int64_t n, XENT_T fill) { return n > 0 ? *p : fill; }
XENT_INLINE void xv_store_part(XENT_T *p, xv v, int64_t n) { if (n > 0) *p = v; }
XENT_INLINE xv xv_add(xv a, xv b) { return a + b; }
XENT_INLINE xv xv_sub(xv a, xv b) { return a - b; }
XENT_INLINE xv xv_mul(xv a, xv b) { return a * b; }
XENT_INLINE xv xv_div(xv a, xv b) { return a / b; }
/* Unfused on purpose: the baseline x86-64 has no FMA and libm fma() is slow. */
XENT_INLINE xv xv_fmadd(xv a, xv b, xv c) { return a * b + c; }
XENT_INLINE xv xv_fnmadd(xv a, xv b, xv c) { return c - a * b; }
/* Same NaN rule as the x86 instructions: the second operand wins on NaN. */
XENT_INLINE xv xv_max(xv a, xv b) { return a > b ? a : b; }
XENT_INLINE xv xv_min(xv a, xv b) { return a < b ? a : b; }
XENT_INLINE xv xv_abs(xv a) { return a < 0 ? -a : (a == 0 ? (XENT_T)0 : a); }
XENT_INLINE xm xv_gt(xv a, xv b) { return a > b; }
XENT_INLINE xm xv_ge(xv a, xv b) { return a >= b; }
XENT_INLINE xm xv_eq(xv a, xv b) { return a == b; }
XENT_INLINE xm xv_isnan(xv a) { return a != a; }
XENT_INLINE xm xv_not_le(xv a, xv b) { return !(a <= b); }
XENT_INLINE xm xv_not_ge(xv a, xv b) { return !(a >= b); }
XENT_INLINE xv xv_select(xm m, xv a, xv b) { return m ? a : b; }
XENT_INLINE xv xv_add_where(xm m, xv a, xv b) { return m ? a + b : a; }
XENT_INLINE xm xm_not(xm m) { return !m; }
XENT_INLINE xm xm_or(xm a, xm b) { return a || b; }
XENT_INLINE int xm_any(xm m) { return m != 0; }
XENT_INLINE int xm_count(xm m) { return m != 0; }
XENT_INLINE uint32_t xm_bits(xm m) { return m != 0; }
XENT_INLINE XENT_T xv_hmax(xv v) { return v; }
XENT_INLINE double xv_hsum(xv v) { return (double)v; }
XENT_INLINE xv xv_pow2n(xv n)
{
#if XENT_F32
    uint32_t b = (uint32_t)((int32_t)n + 127) << 23;
    float r;
#else
    uint64_t b = (uint64_t)((int64_t)n + 1023) << 52;
    double r;
#endif
    memcpy(&r, &b, sizeof r);
    return r;
}
XENT_INLINE xv xv_pow2_magic(xv nm)
{
#if XENT_F32
    uint32_t b;
    const int sh = 23;
#else
    uint64_t b;
    const int sh = 52;
#endif
    memcpy(&b, &nm, sizeof b);
    b <<= sh;
    memcpy(&nm, &b, sizeof nm);
    return nm;
}
XENT_INLINE xv xv_frexp(xv x, xv *e)
{
    int k;
    XENT_T m = (XENT_T)frexp((double)x, &k); /* m in [0.5, 1) */
    *e = (XENT_T)(k - 1);
    return m * 2;
}
XENT_INLINE xv xv_gather(const XENT_T *base, int64_t stride, int64_t n) { (void)stride; return n > 0 ? base[0] : 0; }
XENT_INLINE void xv_scatter(XENT_T *base, int64_t stride, xv v, int64_t n) { (void)stride; if (n > 0) base[0] = v; }
XENT_INLINE void xv_transpose(xv *r) { (void)r; }
#endif

XENT_INLINE xv xv_zero(void) { return xv_set1((XENT_T)0); }

#ifndef XV_HAS_ADD_UNLESS
/* a + b in the lanes NOT in m, a elsewhere: xv_add_where(xm_not(m), a, b). */
XENT_INLINE xv xv_add_unless(xm m, xv a, xv b) { return xv_add_where(xm_not(m), a, b); }
#endif

#ifndef XV_HAS_LOAD_CLASSES
/* Lanes k < n: t[k] as XENT_T, or -1 where t[k] == ignore; lanes k >= n: -1. */
XENT_INLINE xv xv_load_classes(const int64_t *t, int64_t n, int64_t ignore)
{
    XENT_T buf[XV_N];
    int64_t k;
    for (k = 0; k < XV_N; ++k) buf[k] = (k < n && t[k] != ignore) ? (XENT_T)t[k] : (XENT_T)-1;
    return xv_loadu(buf);
}
#endif

/* Lane numbers 0, 1, ..., XV_N - 1 (for masking tails after a transform). */
XENT_INLINE xv xv_lane_index(void)
{
#if XV_N == 1
    return (XENT_T)0;
#else
    XENT_T idx[XV_N];
    int k;
    for (k = 0; k < XV_N; ++k) idx[k] = (XENT_T)k;
    return xv_loadu(idx);
#endif
}

/* Order streaming (non-temporal) stores before later loads by other threads. */
XENT_INLINE void xv_stream_fence(void)
{
#if XENT_ISA != XENT_ISA_SCALAR
    _mm_sfence();
#endif
}

#endif /* XENT_SIMD_H */
