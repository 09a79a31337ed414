/*
 * expcheck.c -- xv_exp_le0(d) and xv_exp_le0_x2 give xv_exp(d) bit for bit for
 * every d <= 0 and NaN, on the path and dtype this binary is built for (the row
 * loops rely on it: a stored exponential and a recomputed one must agree, and
 * a lane's value must not depend on its neighbours).  `make check` runs it.
 *
 * Inputs: every float32 d <= 0 down to the underflow threshold and beyond in
 * steps of a few ulps (float32), a dense sample (float64), the special values
 * -0, -inf, NaN (with payloads), and vectors that mix in-range lanes with
 * lanes needing the slow path (subnormal results, -inf, NaN).
 */
#include <stdio.h>
#include <stdlib.h>

#include "xent_instantiate.h"

static long n_checked, n_bad;

static void check_vector(const XENT_T *d)
{
    XENT_T a[XV_N], b[XV_N], c[XV_N], c2[XV_N];
    xv e0, e1;
    int k;
    xv_storeu(a, xv_exp(xv_loadu(d)));
    xv_storeu(b, xv_exp_le0(xv_loadu(d)));
    xv_exp_le0_x2(xv_loadu(d), xv_set1((XENT_T)-1), &e0, &e1);
    xv_storeu(c, e0);
    xv_exp_le0_x2(xv_set1(xent_neg_inf()), xv_loadu(d), &e0, &e1);
    xv_storeu(c2, e1);
    for (k = 0; k < XV_N; ++k) {
        const int nan = a[k] != a[k];
        const int same = nan ? (b[k] != b[k] && c[k] != c[k] && c2[k] != c2[k])
                             : (!memcmp(a + k, b + k, sizeof(XENT_T)) && !memcmp(a + k, c + k, sizeof(XENT_T)) &&
                                !memcmp(a + k, c2 + k, sizeof(XENT_T)));
        ++n_checked;
        if (!same && n_bad++ < 10)
            printf("mismatch at d = %a: xv_exp %a, le0 %a, x2 %a / %a\n", (double)d[k], (double)a[k], (double)b[k],
                   (double)c[k], (double)c2[k]);
    }
}

int main(void)
{
    XENT_T v[XV_N];
    const XENT_T lo = (XENT_T)(XENT_EXP_LO * 1.05);
    int64_t i;
    int k, j;
    /* a dense walk from 0 down past the clamp, XV_N consecutive values per vector */
#if XENT_F32
    const double step = 0x1p-18;
#else
    const double step = 0x1p-12;
#endif
    for (i = 0;; ++i) {
        double d0 = -(double)i * XV_N * step;
        if (d0 < lo) break;
        for (k = 0; k < XV_N; ++k) v[k] = (XENT_T)(d0 - k * step * 0.999);
        check_vector(v);
    }
    /* tiny and zero arguments */
    for (j = 0; j < 200; ++j) {
        for (k = 0; k < XV_N; ++k) v[k] = -(XENT_T)ldexp(1.0 + k / 8.0, -j);
        check_vector(v);
    }
    /* mixed vectors: one special lane among ordinary ones, at every position */
    {
        const XENT_T special[] = {-(XENT_T)0.0, xent_neg_inf(), (XENT_T)NAN, -(XENT_T)NAN,
                                  (XENT_T)(XENT_EXP_LO * 0.9), (XENT_T)(XENT_EXP_LO * 0.95),
                                  (XENT_T)(XENT_EXP_LO * 1.5), (XENT_T)-1e30};
        for (j = 0; j < (int)(sizeof special / sizeof special[0]); ++j)
            for (i = 0; i < XV_N; ++i) {
                for (k = 0; k < XV_N; ++k) v[k] = (XENT_T)(-0.37 * (k + 1));
                v[i] = special[j];
                check_vector(v);
            }
    }
    /* NaN payloads (the fast path must never be taken for them) */
    {
#if XENT_F32
        uint32_t bits[] = {0x7fc00001u, 0x7f800001u, 0xffc12345u, 0x7fffffffu};
#else
        uint64_t bits[] = {0x7ff8000000000001ull, 0x7ff0000000000001ull, 0xfff8000012345678ull};
#endif
        for (j = 0; j < (int)(sizeof bits / sizeof bits[0]); ++j) {
            XENT_T nanv;
            memcpy(&nanv, &bits[j], sizeof nanv);
            for (k = 0; k < XV_N; ++k) v[k] = k == 0 ? nanv : (XENT_T)-2.5;
            check_vector(v);
        }
    }
    printf("%s %s: %ld lanes, %ld mismatches\n", XENT_ISA == 0 ? "scalar" : XENT_ISA == 1 ? "avx2" : "avx512",
           XENT_F32 ? "float32" : "float64", n_checked, n_bad);
    return n_bad != 0;
}
