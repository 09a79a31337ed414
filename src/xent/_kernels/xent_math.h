/*
 * xent_math.h -- vector elementary functions written once over xent_simd.h.
 *
 * xv_exp: Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, then a polynomial
 * for e**r and a scaling by 2**n built in the exponent field.
 *   float32: Cephes' degree-7 minimax polynomial (1 + r + r^2 P5(r)).
 *   float64: Taylor series to degree 13 (truncation < 4e-18 on |r| <= ln2/2).
 * Measured error (tests/test_math.py, dense sweep against long double): <= 2 ulp
 * for both types.  Overflow gives +inf, -inf gives +0, NaN propagates, and
 * results in the subnormal range are rounded once (2**n split in two factors).
 * The slower split scaling runs only for vectors holding such lanes; AVX-512
 * scales by 2**n with one instruction (vscalef), which covers every range.
 */
#ifndef XENT_MATH_H
#define XENT_MATH_H

#include "xent_simd.h"

#if XENT_F32
#define XENT_EXP_HI 88.8f            /* exp(88.73) > FLT_MAX */
#define XENT_EXP_LO -104.0f          /* exp(-103.98) < FLT_TRUE_MIN / 2 */
#define XENT_EXP_NMAX 126.0f         /* |n| beyond which 2**n is not normal */
#define XENT_MAGIC 0x1.8p23f
#define XENT_LOG2E 1.44269504088896341f
#define XENT_LN2_HI 0.693359375f     /* few bits: n * LN2_HI is exact */
#define XENT_LN2_LO -2.12194440e-4f
#else
#define XENT_EXP_HI 709.9
#define XENT_EXP_LO -745.2
#define XENT_EXP_NMAX 1022.0
#define XENT_MAGIC 0x1.8p52
#define XENT_LOG2E 1.4426950408889634074
#define XENT_LN2_HI 0.693145751953125
#define XENT_LN2_LO 1.42860682030941723212e-6
#endif

XENT_INLINE XENT_T xent_neg_inf_(void) { return -(XENT_T)INFINITY; }

/* e**r for |r| <= ln2/2. */
XENT_INLINE xv xv_exp_poly(xv r)
{
#if XENT_F32
    xv p = xv_set1(1.9875691500e-4f);
    p = xv_fmadd(p, r, xv_set1(1.3981999507e-3f));
    p = xv_fmadd(p, r, xv_set1(8.3334519073e-3f));
    p = xv_fmadd(p, r, xv_set1(4.1665795894e-2f));
    p = xv_fmadd(p, r, xv_set1(1.6666665459e-1f));
    p = xv_fmadd(p, r, xv_set1(5.0000001201e-1f));
    p = xv_fmadd(p, xv_mul(r, r), r);
    return xv_add(p, xv_set1(1.0f));
#else
    xv p = xv_set1(1.0 / 6227020800.0);              /* 1/13! */
    p = xv_fmadd(p, r, xv_set1(1.0 / 479001600.0));  /* 1/12! */
    p = xv_fmadd(p, r, xv_set1(1.0 / 39916800.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 3628800.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 362880.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 40320.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 5040.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 720.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 120.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 24.0));
    p = xv_fmadd(p, r, xv_set1(1.0 / 6.0));
    p = xv_fmadd(p, r, xv_set1(0.5));
    p = xv_fmadd(p, xv_mul(r, r), r);
    return xv_add(p, xv_set1(1.0));
#endif
}

XENT_INLINE xv xv_exp(xv x)
{
    /* min/max return their second operand on NaN: keep x second so NaN survives. */
    xv xc = xv_max(xv_set1(XENT_EXP_LO), xv_min(xv_set1(XENT_EXP_HI), x));
    xv magic = xv_set1(XENT_MAGIC);
    xv n = xv_sub(xv_fmadd(xc, xv_set1(XENT_LOG2E), magic), magic); /* round to nearest */
    xv r = xv_fnmadd(n, xv_set1(XENT_LN2_HI), xc);
    r = xv_fnmadd(n, xv_set1(XENT_LN2_LO), r);
    xv p = xv_exp_poly(r);
#ifdef XV_HAS_SCALEF
    (void)x;
    return xv_scalef(p, n); /* one rounding, subnormal and overflowing results included */
#else
    if (XENT_LIKELY(!xm_any(xv_not_le(xv_abs(n), xv_set1(XENT_EXP_NMAX)))))
        return xv_mul(p, xv_pow2n(n));
    {
        /* 2**n = 2**n1 * 2**n2 with both factors normal: one rounding into the
           subnormal range, overflow to inf above the range. */
        xv n1 = xv_sub(xv_fmadd(n, xv_set1((XENT_T)0.5), magic), magic);
        xv n2 = xv_sub(n, n1);
        xv y = xv_mul(xv_mul(p, xv_pow2n(n1)), xv_pow2n(n2));
        return xv_select(xv_isnan(x), x, y);
    }
#endif
}

/*
 * Natural log: x = m * 2**e, m in [sqrt(1/2), sqrt(2)), and
 * log(m) = 2 atanh(u) = 2 (u + u^3/3 + u^5/5 + ...), u = (m - 1) / (m + 1), |u| <= 0.172,
 * series to u^9 (float32) or u^21 (float64): truncation below 1e-9 / 1e-17 relative.
 * log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN propagates.
 */
XENT_INLINE xv xv_log(xv x)
{
    const xv one = xv_set1((XENT_T)1);
    xv e, m = xv_frexp(x, &e);
    const xm big = xv_gt(m, xv_set1((XENT_T)1.4142135623730951));
    m = xv_select(big, xv_mul(m, xv_set1((XENT_T)0.5)), m);
    e = xv_select(big, xv_add(e, one), e);
    {
        const xv u = xv_div(xv_sub(m, one), xv_add(m, one));
        const xv u2 = xv_mul(u, u);
#if XENT_F32
        xv p = xv_set1(1.0f / 9);
        p = xv_fmadd(p, u2, xv_set1(1.0f / 7));
        p = xv_fmadd(p, u2, xv_set1(1.0f / 5));
        p = xv_fmadd(p, u2, xv_set1(1.0f / 3));
#else
        xv p = xv_set1(1.0 / 21);
        p = xv_fmadd(p, u2, xv_set1(1.0 / 19));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 17));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 15));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 13));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 11));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 9));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 7));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 5));
        p = xv_fmadd(p, u2, xv_set1(1.0 / 3));
#endif
        /* 2u + 2u^3 p(u^2), then e*ln2 in two parts */
        xv lm = xv_fmadd(xv_mul(xv_add(u, u), u2), p, xv_add(u, u));
        xv r = xv_fmadd(e, xv_set1(XENT_LN2_LO), lm);
        r = xv_fmadd(e, xv_set1(XENT_LN2_HI), r);
        /* special cases: 0 -> -inf, negative -> NaN, +inf -> +inf, NaN -> NaN */
        r = xv_select(xv_eq(x, xv_zero()), xv_set1(xent_neg_inf_()), r);
        r = xv_select(xv_gt(xv_zero(), x), xv_set1((XENT_T)NAN), r);
        r = xv_select(xv_eq(x, xv_set1((XENT_T)INFINITY)), x, r);
        return xv_select(xv_isnan(x), x, r);
    }
}

/*
 * s * tanh(x / s) and, in *dy, its derivative sech(x/s)**2 = 4e / (1 + e)**2 with
 * e = exp(2|x/s|): no cancellation where the cap saturates (1 - tanh**2 would
 * lose all accuracy there), no overflow for large e.
 */
XENT_INLINE xv xv_softcap(xv x, XENT_T s, XENT_T inv_s, xv *dy)
{
    /* tanh(u) = sign(u) (1 - 2 / (e^{2|u|} + 1)); accurate to a few ulp of 1,
       which is all a logit needs. */
    const xv one = xv_set1((XENT_T)1);
    xv u = xv_mul(x, xv_set1(inv_s));
    xv au = xv_abs(u);
    xv e = xv_exp(xv_add(au, au));
    xv inv1pe = xv_div(one, xv_add(e, one));
    xv t = xv_fnmadd(xv_set1((XENT_T)2), inv1pe, one);
    xv neg = xv_sub(xv_zero(), t);
    t = xv_select(xv_gt(xv_zero(), u), neg, t);
    t = xv_select(xv_isnan(u), u, t);
    *dy = xv_mul(xv_mul(xv_set1((XENT_T)4), inv1pe), xv_mul(e, inv1pe));
    *dy = xv_select(xv_eq(e, xv_set1((XENT_T)INFINITY)), xv_zero(), *dy);
    return xv_mul(t, xv_set1(s));
}

/* Scalar versions on lane 0, for the per-row bookkeeping. */
XENT_INLINE XENT_T xent_exp1(XENT_T x)
{
#if XENT_ISA == XENT_ISA_SCALAR
    return xv_exp(x);
#else
    XENT_T out;
    xv_store_part(&out, xv_exp(xv_set1(x)), 1);
    return out;
#endif
}


/*
 * xv_log1p: log(1 + x) as log(u) + (x - (u - 1)) / u with u = fl(1 + x); the
 * correction term is exact for |x| <= 1 and restores the bits lost in
 * rounding 1 + x.  log1p(-1) = -inf, log1p(x < -1) = NaN, log1p(+inf) = +inf,
 * log1p(-0) = -0, tiny x returns x.  Measured error (tests/test_vmath.py, sweep
 * against long double, all paths): < 2.4 ulp float32, < 2 ulp float64.
 */
XENT_INLINE xv xv_log1p(xv x)
{
    const xv one = xv_set1((XENT_T)1);
    const xv u = xv_add(one, x);
    const xv c = xv_sub(x, xv_sub(u, one));
    xv r = xv_add(xv_log(u), xv_div(c, u));
    r = xv_select(xv_eq(u, one), x, r);
    r = xv_select(xv_eq(u, xv_zero()), xv_set1(xent_neg_inf_()), r);
    r = xv_select(xv_eq(x, xv_set1((XENT_T)INFINITY)), x, r);
    return xv_select(xv_isnan(x), x, r);
}

#endif /* XENT_MATH_H */
