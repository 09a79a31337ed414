/*
 * xent_math.h -- vector elementary functions written once over xent_simd.h.
 *
 * xv_exp: Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, t = e**r - 1 by a
 * minimax polynomial (Estrin's scheme), then 2**n + t 2**n in one FMA with 2**n
 * built in the exponent field (one rounding).
 *   float32: degree 6, float64: degree 11 (polynomial error 3.1e-9 / 3.6e-18).
 * Measured error (tests/test_math.py, dense sweep against long double): <= 2 ulp
 * for both types (the sweep's maxima are quoted in docs/performance-primitives.md).
 * Overflow gives +inf, -inf gives +0, NaN propagates.  Lanes whose 2**n is not
 * normal (subnormal or zero results, overflow) are scaled by two normal factors;
 * that slower path runs only for vectors holding such lanes.  AVX-512 scales
 * 1 + t by 2**n with one instruction (vscalef), which covers every range.
 */
#ifndef XENT_MATH_H
#define XENT_MATH_H

#include "xent_simd.h"

#if XENT_F32
#define XENT_EXP_HI 88.8f            /* exp(88.73) > FLT_MAX */
#define XENT_EXP_LO -104.0f          /* exp(-103.98) < FLT_TRUE_MIN / 2 */
#define XENT_EXP_NFAST 126.0f        /* |n| up to which 2**n is normal */
#define XENT_MAGIC 0x1.8p23f
#define XENT_MAGIC_BIASED (0x1.8p23f + 127.0f) /* n + this holds n's biased exponent */
#define XENT_LOG2E 1.44269504088896341f
#define XENT_LN2_HI 0.693359375f     /* few bits: n * LN2_HI is exact */
#define XENT_LN2_LO -2.12194440e-4f
#else
#define XENT_EXP_HI 709.9
#define XENT_EXP_LO -745.2
#define XENT_EXP_NFAST 1022.0
#define XENT_MAGIC 0x1.8p52
#define XENT_MAGIC_BIASED (0x1.8p52 + 1023.0)
#define XENT_LOG2E 1.4426950408889634074
#define XENT_LN2_HI 0.693145751953125
#define XENT_LN2_LO 1.42860682030941723212e-6
#endif

XENT_INLINE XENT_T xent_neg_inf_(void) { return -(XENT_T)INFINITY; }

/*
 * e**r - 1 for |r| <= ln2/2, as r + r^2 q(r) with q a minimax polynomial for
 * (e**r - 1 - r) / r^2 (relative error of 1 + r + r^2 q, computed with the
 * Remez algorithm in 80-digit arithmetic: 3.1e-9 for float32 (degree 6),
 * 3.6e-18 for float64 (degree 11), far below half an ulp).  q is evaluated by
 * Estrin's scheme: a few independent FMAs per level instead of one long chain,
 * so that many exponentials are in flight at once (docs/performance-primitives.md).
 */
XENT_INLINE xv xv_expm1_poly_(xv r)
{
    const xv r2 = xv_mul(r, r);
#if XENT_F32
    const xv a = xv_fmadd(xv_set1(1.6666520690e-1f), r, xv_set1(4.9999993452e-1f));
    xv b = xv_fmadd(xv_set1(8.3687098187e-3f), r, xv_set1(4.1668387345e-2f));
    xv q;
    b = xv_fmadd(xv_set1(1.3814614311e-3f), r2, b);
    q = xv_fmadd(b, r2, a);
#else
    const xv r4 = xv_mul(r2, r2);
    const xv p0 = xv_fmadd(xv_set1(0.16666666666666412768), r, xv_set1(0.50000000000000106167));
    const xv p1 = xv_fmadd(xv_set1(0.0083333333334943389627), r, xv_set1(0.041666666666530266311));
    const xv p2 = xv_fmadd(xv_set1(0.00019841269506765307373), r, xv_set1(0.0013888888943597615402));
    const xv p3 = xv_fmadd(xv_set1(2.7557586280416711778e-6), r, xv_set1(0.000024801493136271251595));
    const xv p4 = xv_fmadd(xv_set1(2.5000067533226904717e-8), r, xv_set1(2.7630233889007999732e-7));
    const xv s0 = xv_fmadd(p1, r2, p0), s1 = xv_fmadd(p3, r2, p2);
    xv q = xv_fmadd(s1, r4, s0);
    q = xv_fmadd(p4, xv_mul(r4, r4), q);
#endif
    return xv_fmadd(q, r2, r);
}

/*
 * Shared steps of the exponentials below: for xc in [XENT_EXP_LO, XENT_EXP_HI],
 * n = round(xc / ln2), also returned as nm = n + XENT_MAGIC_BIASED, whose low
 * bits hold the biased exponent of 2**n (xv_pow2_magic); returns t = e**r - 1,
 * r = xc - n ln2 (Cody-Waite: LN2_HI has few bits, so n * LN2_HI is exact even
 * without FMA).
 */
XENT_INLINE xv xv_exp_reduced_(xv xc, xv *n, xv *nm)
{
    const xv magic = xv_set1(XENT_MAGIC_BIASED);
    xv r;
    *nm = xv_fmadd(xc, xv_set1(XENT_LOG2E), magic); /* round to nearest */
    *n = xv_sub(*nm, magic);
    r = xv_fnmadd(*n, xv_set1(XENT_LN2_HI), xc);
    r = xv_fnmadd(*n, xv_set1(XENT_LN2_LO), r);
    return xv_expm1_poly_(r);
}

#ifndef XV_HAS_SCALEF
/* 2**n (1 + t) rounded once, for |n| <= NFAST (2**n normal). */
XENT_INLINE xv xv_exp_fast_scale_(xv t, xv nm)
{
    const xv s = xv_pow2_magic(nm);
    return xv_fmadd(t, s, s);
}

/* Any n of the clamped range: lanes with |n| <= NFAST as xv_exp_fast_scale_ (the
   same bits whatever the other lanes hold); the others (subnormal, zero and
   overflowing results) as (1 + t) 2**n1 2**n2 with both factors normal.  NaN x
   stays x. */
XENT_INLINE xv xv_exp_wide_scale_(xv x, xv t, xv n, xv nm)
{
    const xv magic = xv_set1(XENT_MAGIC);
    const xv n1 = xv_sub(xv_fmadd(n, xv_set1((XENT_T)0.5), magic), magic);
    const xv n2 = xv_sub(n, n1);
    const xv p = xv_add(t, xv_set1((XENT_T)1));
    const xv wide = xv_mul(xv_mul(p, xv_pow2n(n1)), xv_pow2n(n2));
    const xv y = xv_select(xv_not_le(xv_abs(n), xv_set1(XENT_EXP_NFAST)), wide, xv_exp_fast_scale_(t, nm));
    return xv_select(xv_isnan(x), x, y);
}
#endif

XENT_INLINE xv xv_exp(xv x)
{
    /* min/max return their second operand on NaN: keep x second so NaN survives. */
    const xv xc = xv_max(xv_set1(XENT_EXP_LO), xv_min(xv_set1(XENT_EXP_HI), x));
    xv n, nm;
    const xv t = xv_exp_reduced_(xc, &n, &nm);
#ifdef XV_HAS_SCALEF
    (void)x;
    (void)nm;
    return xv_scalef(xv_add(t, xv_set1((XENT_T)1)), n); /* one rounding, every range */
#else
    if (XENT_LIKELY(!xm_any(xv_not_le(xv_abs(n), xv_set1(XENT_EXP_NFAST))))) return xv_exp_fast_scale_(t, nm);
    return xv_exp_wide_scale_(x, t, n, nm);
#endif
}

/*
 * exp(d) for d <= 0 or NaN, the argument of every row loop (d = x - max):
 * bitwise equal to xv_exp(d) there (benchmarks/c/expcheck.c), with one
 * comparison instead of the two-sided clamp and range test.  NaN, -inf and
 * arguments whose results are subnormal or zero take the general path.  d > 0
 * is outside the contract (d up to ~87 still gives exp(d)).
 */
#ifndef XV_HAS_SCALEF
/* The lanes of xv_exp_le0 outside the fast range: subnormal or zero results, NaN. */
XENT_INLINE xv xv_exp_le0_slow_(xv d, xv t, xv n, xv nm)
{
    const xv lo = xv_set1(XENT_EXP_LO);
    if (xm_any(xv_not_ge(d, lo))) { /* beyond the clamp (or NaN): redo from the clamped argument */
        const xv dc = xv_max(lo, d);  /* NaN stays NaN */
        t = xv_exp_reduced_(dc, &n, &nm);
    }
    return xv_exp_wide_scale_(d, t, n, nm);
}
#endif

XENT_INLINE xv xv_exp_le0(xv d)
{
#ifdef XV_HAS_SCALEF
    return xv_exp(d);
#else
    xv n, nm;
    const xv t = xv_exp_reduced_(d, &n, &nm);
    if (XENT_LIKELY(!xm_any(xv_not_ge(n, xv_set1(-XENT_EXP_NFAST))))) return xv_exp_fast_scale_(t, nm);
    return xv_exp_le0_slow_(d, t, n, nm);
#endif
}

/* Two exponentials as xv_exp_le0 (same bits), one range test for both. */
XENT_INLINE void xv_exp_le0_x2(xv d0, xv d1, xv *e0, xv *e1)
{
#ifdef XV_HAS_SCALEF
    *e0 = xv_exp(d0);
    *e1 = xv_exp(d1);
#else
    xv n0, nm0, n1, nm1;
    const xv t0 = xv_exp_reduced_(d0, &n0, &nm0), t1 = xv_exp_reduced_(d1, &n1, &nm1);
    const xv lo = xv_set1(-XENT_EXP_NFAST);
    if (XENT_LIKELY(!xm_any(xm_or(xv_not_ge(n0, lo), xv_not_ge(n1, lo))))) {
        *e0 = xv_exp_fast_scale_(t0, nm0);
        *e1 = xv_exp_fast_scale_(t1, nm1);
    } else {
        *e0 = xv_exp_le0_slow_(d0, t0, n0, nm0);
        *e1 = xv_exp_le0_slow_(d1, t1, n1, nm1);
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
 * log1p(-0) = -0, tiny x returns x.  Measured error (tests/test_math.py, sweep
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
