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
 * The slower split scaling runs only for vectors holding such lanes.
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
}

/* s * tanh(x / s) and, in *dy, its derivative 1 - tanh(x/s)**2. */
XENT_INLINE xv xv_softcap(xv x, XENT_T s, XENT_T inv_s, xv *dy)
{
    /* tanh(u) = sign(u) (1 - 2 / (e^{2|u|} + 1)); accurate to a few ulp of 1,
       which is all a logit needs. */
    xv u = xv_mul(x, xv_set1(inv_s));
    xv au = xv_abs(u);
    xv e = xv_exp(xv_add(au, au));
    xv t = xv_sub(xv_set1((XENT_T)1), xv_div(xv_set1((XENT_T)2), xv_add(e, xv_set1((XENT_T)1))));
    xv neg = xv_sub(xv_zero(), t);
    t = xv_select(xv_gt(xv_zero(), u), neg, t);
    t = xv_select(xv_isnan(u), u, t);
    *dy = xv_fnmadd(t, t, xv_set1((XENT_T)1));
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
 * xv_log: natural logarithm (fdlibm/musl method).  x = 2**k * m with
 * m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact), s = f / (2 + f) and
 * log(1 + f) = f - f**2/2 + s (f**2/2 + R(s**2)) with fdlibm's minimax R
 * (Lg1..Lg4 for float32, Lg1..Lg7 for float64), k*ln2 added in two parts.
 * Subnormal inputs are scaled into the normal range first.  log(0) = -inf,
 * log(x < 0) = NaN, log(+inf) = +inf, NaN propagates.  Measured error
 * (tests/test_vmath.py, sweep against long double): <= 1 ulp.
 */
XENT_INLINE xv xv_log(xv x)
{
#if XENT_F32
    const xv tiny = xv_set1(0x1p-126f), up = xv_set1(0x1p25f), upk = xv_set1(25.0f);
#else
    const xv tiny = xv_set1(0x1p-1022), up = xv_set1(0x1p54), upk = xv_set1(54.0);
#endif
    const xv one = xv_set1((XENT_T)1), half = xv_set1((XENT_T)0.5);
    const xm sub = xv_gt(tiny, x);
    xv e, k, f, s, z, w, t1, t2, R, hfsq, r;
    xv m = xv_frexp1(xv_select(sub, xv_mul(x, up), x), &e);
    const xm big = xv_gt(m, xv_set1((XENT_T)1.41421356237309504880));
    k = xv_sub(e, xv_select(sub, upk, xv_zero()));
    k = xv_select(big, xv_add(k, one), k);
    m = xv_select(big, xv_mul(m, half), m);
    f = xv_sub(m, one);
    s = xv_div(f, xv_add(f, xv_set1((XENT_T)2)));
    z = xv_mul(s, s);
    w = xv_mul(z, z);
#if XENT_F32
    t1 = xv_mul(w, xv_fmadd(w, xv_set1(0.24279078841f), xv_set1(0.40000972152f)));
    t2 = xv_mul(z, xv_fmadd(w, xv_set1(0.28498786688f), xv_set1(0.66666662693f)));
#else
    t1 = xv_fmadd(w, xv_set1(1.531383769920937332e-01), xv_set1(2.222219843214978396e-01));
    t1 = xv_fmadd(w, t1, xv_set1(3.999999999940941908e-01));
    t1 = xv_mul(w, t1);
    t2 = xv_fmadd(w, xv_set1(1.479819860511658591e-01), xv_set1(1.818357216161805012e-01));
    t2 = xv_fmadd(w, t2, xv_set1(2.857142874366239149e-01));
    t2 = xv_fmadd(w, t2, xv_set1(6.666666666666735130e-01));
    t2 = xv_mul(z, t2);
#endif
    R = xv_add(t2, t1);
    hfsq = xv_mul(half, xv_mul(f, f));
    /* k*ln2_hi + (f - (hfsq - (s*(hfsq + R) + k*ln2_lo))) */
    r = xv_fmadd(s, xv_add(hfsq, R), xv_mul(k, xv_set1(XENT_LN2_LO)));
    r = xv_sub(f, xv_sub(hfsq, r));
    r = xv_fmadd(k, xv_set1(XENT_LN2_HI), r);
    /* special values */
    r = xv_select(xv_eq(x, xv_zero()), xv_set1(xent_neg_inf_()), r);
    r = xv_select(xv_gt(xv_zero(), x), xv_set1((XENT_T)NAN), r);
    r = xv_select(xv_eq(x, xv_set1((XENT_T)INFINITY)), x, r);
    return xv_select(xv_isnan(x), x, r);
}

/*
 * xv_log1p: log(1 + x) as log(u) + (x - (u - 1)) / u with u = fl(1 + x); the
 * correction term is exact for |x| <= 1 and restores the bits lost in
 * rounding 1 + x.  log1p(-1) = -inf, log1p(x < -1) = NaN, log1p(+inf) = +inf,
 * log1p(-0) = -0, tiny x returns x.  Error <= 2 ulp (tests/test_vmath.py).
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
