/*
 * xent_testing.h -- test hooks (xent_testing.def): the vector exp / log / log1p
 * of the active SIMD path over an array, for the accuracy sweeps in tests/.
 */
#ifndef XENT_TESTING_H
#define XENT_TESTING_H

#include "xent_rowops.h"

XENT_INLINE xv xent_vmath_vec(xent_vmath_fn fn, xv v)
{
    if (fn == XENT_VMATH_EXP) return xv_exp(v);
    return fn == XENT_VMATH_LOG ? xv_log(v) : xv_log1p(v);
}

int64_t XENT_FN(xent_vmath_array)(xent_vmath_call *c)
{
    const XENT_T *x = (const XENT_T *)c->x;
    XENT_T *out = (XENT_T *)c->out;
    const int64_t n = c->n;
    const XENT_T pad = c->fn == XENT_VMATH_EXP ? 0 : 1; /* lanes past the end */
    int64_t i;
    for (i = 0; i < n; i += XV_N) {
        const int64_t k = n - i;
        if (k >= XV_N) xv_storeu(out + i, xent_vmath_vec(c->fn, xv_loadu(x + i)));
        else xv_store_part(out + i, xent_vmath_vec(c->fn, xv_load_part(x + i, k, pad)), k);
    }
    return XENT_OK;
}

#endif /* XENT_TESTING_H */
