/*
 * primbench.c -- microbenchmark of the row primitives and kernels of one SIMD
 * path and dtype (benchmarks/c/Makefile builds one binary per pair).
 *
 * Not part of the Python build.  It includes the kernel headers exactly as a
 * kernel translation unit does (xent_instantiate.h), so the primitives are the
 * shipped ones, inlined the same way.
 *
 *   ./primbench_avx2_f32 l1 [rounds]    primitives over one 2048-element row
 *        resident in L1 (compute cost): ns per element, min and median
 *   ./primbench_avx2_f32 mem [rounds]   whole kernels over a 4096 x 32000 array
 *        (float64: 2048 x 32000) next to a read-only pass and a copy of the same
 *        array, 1 and 2 threads: median ms and ratios
 *   ./primbench_avx2_f32 mem 9 R C      the same at R x C
 *   ./primbench_avx2_f32 one            one call of everything (for callgrind:
 *        valgrind --tool=callgrind --toggle-collect='bench_*' ...)
 *
 * A/B builds (make ab BASE=dir-with-other-kernel-headers) link a second copy
 * of the benchmark compiled against other headers into the same binary; every
 * round then times both copies back to back, so a noisy neighbour slows both
 * alike.  Providers alternate within each round in every mode; compare numbers
 * of the same run only.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>

#include "xent_instantiate.h"

#define NOINLINE __attribute__((noinline))
#define STR2_(x) #x
#define STR_(x) STR2_(x)
#define ISA_NAME STR_(XENT_ISA_SFX)
#define CAT2_(a, b) a##_##b
#define CAT_(a, b) CAT2_(a, b)
#ifndef PRIM_TAG
#define PRIM_TAG cur
#endif
#define PRIM_SYM(name) CAT_(name, PRIM_TAG)

typedef struct {
    const XENT_T *x;
    XENT_T *work, *outv, *lse, *ent;
    const int64_t *t;
    double *loss;
    int64_t R, C;
} kctx;

enum { K_READ, K_COPY, K_LSE, K_CE, K_CE_FUSED, K_SCORES, K_COUNT };

/* ---------------------------------------------------------------- primitives */

/* The yardstick: a read-only pass (four vector sums). */
NOINLINE double bench_read_sum(const XENT_T *x, int64_t n)
{
    xv a0 = xv_zero(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 4 * XV_N <= n; i += 4 * XV_N) {
        a0 = xv_add(a0, xv_loadu(x + i));
        a1 = xv_add(a1, xv_loadu(x + i + XV_N));
        a2 = xv_add(a2, xv_loadu(x + i + 2 * XV_N));
        a3 = xv_add(a3, xv_loadu(x + i + 3 * XV_N));
    }
    for (; i < n; ++i) a0 = xv_add(a0, xv_load_part(x + i, 1, 0));
    return xv_hsum(xv_add(xv_add(a0, a1), xv_add(a2, a3)));
}

NOINLINE double bench_row_max(const XENT_T *x, int64_t n) { return row_max(x, n); }

NOINLINE double bench_exp_store(const XENT_T *x, int64_t n, XENT_T *out)
{
    xent_vmath_call v = {x, n, XENT_VMATH_EXP, out};
    XENT_FN(xent_vmath_array)(&v);
    return out[0];
}

/* xv_exp over the array, summed (the loop of row_sumexp without its bookkeeping). */
NOINLINE double bench_exp_sum(const XENT_T *x, int64_t n, XENT_T m)
{
    const xv vm = xv_set1(m);
    xv a0 = xv_zero(), a1 = a0;
    int64_t i = 0;
    for (; i + 2 * XV_N <= n; i += 2 * XV_N) {
        a0 = xv_add(a0, xv_exp(xv_sub(xv_loadu(x + i), vm)));
        a1 = xv_add(a1, xv_exp(xv_sub(xv_loadu(x + i + XV_N), vm)));
    }
    return xv_hsum(xv_add(a0, a1));
}

#ifdef XENT_EXP_NFAST /* primitives of this tree (absent from older kernels) */
NOINLINE double bench_exp_le0_sum(const XENT_T *x, int64_t n, XENT_T m)
{
    const xv vm = xv_set1(m);
    xv a0 = xv_zero(), a1 = a0;
    int64_t i = 0;
    for (; i + 2 * XV_N <= n; i += 2 * XV_N) {
        a0 = xv_add(a0, xv_exp_le0(xv_sub(xv_loadu(x + i), vm)));
        a1 = xv_add(a1, xv_exp_le0(xv_sub(xv_loadu(x + i + XV_N), vm)));
    }
    return xv_hsum(xv_add(a0, a1));
}

/* Lower bound: the polynomial alone. */
#ifdef XENT_MAGIC_BIASED
#define PRIM_POLY(r) xv_expm1_poly_(r)
#else
#define PRIM_POLY(r) xv_exp_poly(r)
#endif
NOINLINE double bench_poly_sum(const XENT_T *x, int64_t n, XENT_T m)
{
    const xv vm = xv_set1(m);
    xv a0 = xv_zero(), a1 = a0;
    int64_t i = 0;
    for (; i + 2 * XV_N <= n; i += 2 * XV_N) {
        a0 = xv_add(a0, PRIM_POLY(xv_sub(xv_loadu(x + i), vm)));
        a1 = xv_add(a1, PRIM_POLY(xv_sub(xv_loadu(x + i + XV_N), vm)));
    }
    return xv_hsum(xv_add(a0, a1));
}
#endif

NOINLINE double bench_row_sumexp(const XENT_T *x, int64_t n, XENT_T m)
{
    return row_sumexp(x, n, m, NULL, NULL, NULL);
}

NOINLINE double bench_row_sumexp_store(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e)
{
    return row_sumexp(x, n, m, e, NULL, NULL);
}

#ifdef XENT_MAX_CHUNK_MAXIMA
#define CE_SPLIT(x, n, m, e, rest, cm) ce_sumexp_split(x, n, m, e, NULL, NULL, 0, NULL, 0, rest, NULL, cm)
#else
#define CE_SPLIT(x, n, m, e, rest, cm) ce_sumexp_split(x, n, m, e, NULL, NULL, 0, NULL, 0, rest, NULL)
#endif

/* The chunk holding the row's maximum (its 1 is set apart). */
NOINLINE double bench_sumexp_split(const XENT_T *x, int64_t n, XENT_T m)
{
    double rest;
    return CE_SPLIT(x, n, m, NULL, &rest, NULL) + rest;
}

NOINLINE double bench_sumexp_split_store(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e)
{
    double rest;
    return CE_SPLIT(x, n, m, e, &rest, NULL) + rest;
}

/* A chunk below the row's maximum (all of a row's chunks but about one). */
NOINLINE double bench_sumexp_other(const XENT_T *x, int64_t n, XENT_T m)
{
    XENT_T cm[1] = {m - 1};
    double rest;
    (void)cm;
    return CE_SPLIT(x, n, m, NULL, &rest, cm) + rest;
}

NOINLINE double bench_sumexp_other_store(const XENT_T *x, int64_t n, XENT_T m, XENT_T *e)
{
    XENT_T cm[1] = {m - 1};
    double rest;
    (void)cm;
    return CE_SPLIT(x, n, m, e, &rest, cm) + rest;
}

NOINLINE double bench_max_sumexp(const XENT_T *x, int64_t n)
{
    XENT_T m;
    double s;
    row_max_sumexp(x, n, &m, &s);
    return s + m;
}

NOINLINE double bench_lse_row(const XENT_T *x, int64_t n) { return xent_lse_row(x, n); }

/* token_scores' pass B over the chunk holding the running maximum, and over another. */
#ifdef XS_HAS_MAX_FLAG
#define XS_ENT(x, n, m, Q, E, W, has) xs_sumexp_ent(x, n, m, Q, E, W, has)
#else
#define XS_ENT(x, n, m, Q, E, W, has) xs_sumexp_ent(x, n, m, Q, E, W)
#endif
NOINLINE double bench_sumexp_ent(const XENT_T *x, int64_t n, XENT_T m)
{
    double Q = 0, E = 0, W = 0;
    XS_ENT(x, n, m, &Q, &E, &W, 1);
    return Q + E + W;
}

NOINLINE double bench_sumexp_ent_other(const XENT_T *x, int64_t n, XENT_T m)
{
    double Q = 0, E = 0, W = 0;
    XS_ENT(x, n, m, &Q, &E, &W, 0);
    return Q + E + W;
}

NOINLINE double bench_axpb(const XENT_T *e, int64_t n, XENT_T *out)
{
    row_axpb(e, n, 0, 0, (XENT_T)0.5, (XENT_T)-0.25, NULL, out, 0, NULL, 0);
    return out[1];
}

NOINLINE double bench_axpb_exp(const XENT_T *x, int64_t n, XENT_T m, XENT_T *out)
{
    row_axpb(x, n, 1, m, (XENT_T)0.5, (XENT_T)-0.25, NULL, out, 0, NULL, 0);
    return out[1];
}

NOINLINE double bench_log(const XENT_T *x, int64_t n, XENT_T *out)
{
    xent_vmath_call v = {x, n, XENT_VMATH_LOG, out};
    XENT_FN(xent_vmath_array)(&v);
    return out[0];
}

NOINLINE double bench_log1p(const XENT_T *x, int64_t n, XENT_T *out)
{
    int64_t i = 0;
    for (; i + XV_N <= n; i += XV_N) xv_storeu(out + i, xv_log1p(xv_loadu(x + i)));
    return out[0];
}

enum { P_READ, P_MAX, P_EXP_STORE, P_EXP_SUM, P_LE0_SUM, P_POLY_SUM, P_SUMEXP, P_SUMEXP_STORE,
       P_SPLIT, P_SPLIT_STORE, P_OTHER, P_OTHER_STORE, P_MAX_SUMEXP, P_LSE_ROW, P_ENT, P_ENT_OTHER,
       P_AXPB, P_AXPB_EXP, P_LOG, P_LOG1P, P_COUNT };

double PRIM_SYM(prim_run)(int p, const XENT_T *x, int64_t n, XENT_T m, XENT_T *out, const XENT_T *pos);
double PRIM_SYM(prim_run)(int p, const XENT_T *x, int64_t n, XENT_T m, XENT_T *out, const XENT_T *pos)
{
    switch (p) {
    case P_READ: return bench_read_sum(x, n);
    case P_MAX: return bench_row_max(x, n);
    case P_EXP_STORE: return bench_exp_store(x, n, out);
    case P_EXP_SUM: return bench_exp_sum(x, n, m);
#ifdef XENT_EXP_NFAST
    case P_LE0_SUM: return bench_exp_le0_sum(x, n, m);
    case P_POLY_SUM: return bench_poly_sum(x, n, m);
#else
    case P_LE0_SUM: case P_POLY_SUM: return -1; /* not in this tree */
#endif
    case P_SUMEXP: return bench_row_sumexp(x, n, m);
    case P_SUMEXP_STORE: return bench_row_sumexp_store(x, n, m, out);
    case P_SPLIT: return bench_sumexp_split(x, n, m);
    case P_SPLIT_STORE: return bench_sumexp_split_store(x, n, m, out);
    case P_OTHER: return bench_sumexp_other(x, n, m);
    case P_OTHER_STORE: return bench_sumexp_other_store(x, n, m, out);
    case P_MAX_SUMEXP: return bench_max_sumexp(x, n);
    case P_LSE_ROW: return bench_lse_row(x, n);
    case P_ENT: return bench_sumexp_ent(x, n, m);
    case P_ENT_OTHER: return bench_sumexp_ent_other(x, n, m);
    case P_AXPB: return bench_axpb(x, n, out);
    case P_AXPB_EXP: return bench_axpb_exp(x, n, m, out);
    case P_LOG: return bench_log(pos, n, out);
    default: return bench_log1p(pos, n, out);
    }
}

/* ---------------------------------------------------------------- whole kernels */

NOINLINE void bench_pass_read(const XENT_T *x, int64_t n, int nt)
{
    double tot = 0;
    int64_t b;
    const int64_t nb = 256, bs = (n + nb - 1) / nb;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt) reduction(+:tot))
    for (b = 0; b < nb; ++b) {
        const int64_t lo = b * bs, hi = lo + bs < n ? lo + bs : n;
        if (hi > lo) tot += bench_read_sum(x + lo, hi - lo);
    }
    if (tot == 1.2345) puts("");
}

NOINLINE void bench_pass_copy(const XENT_T *x, int64_t n, XENT_T *y, int nt)
{
    int64_t b;
    const int64_t nb = 256, bs = (n + nb - 1) / nb;
    XENT_PRAGMA_OMP(parallel for schedule(static) num_threads(nt))
    for (b = 0; b < nb; ++b) {
        const int64_t lo = b * bs, hi = lo + bs < n ? lo + bs : n;
        if (hi > lo) memcpy(y + lo, x + lo, (size_t)(hi - lo) * sizeof(XENT_T));
    }
}

void PRIM_SYM(kern_run)(int k, kctx *c, int nt);
void PRIM_SYM(kern_run)(int k, kctx *c, int nt)
{
    xent_rows_call r;
    xent_ce_call ce;
    xent_scores_call s;
    memset(&r, 0, sizeof r);
    memset(&ce, 0, sizeof ce);
    memset(&s, 0, sizeof s);
    r.x = ce.x = s.x = k == K_CE_FUSED ? c->work : c->x;
    r.n_rows = ce.n_rows = s.n_rows = c->R;
    r.n_cols = ce.n_cols = s.n_cols = c->C;
    r.n_threads = ce.n_threads = s.n_threads = nt;
    switch (k) {
    case K_READ: bench_pass_read(c->x, c->R * c->C, nt); break;
    case K_COPY: bench_pass_copy(c->x, c->R * c->C, c->work, nt); break;
    case K_LSE:
        r.out = c->outv;
        XENT_FN(xent_logsumexp_rows)(&r);
        break;
    case K_CE:
    case K_CE_FUSED:
        ce.target = c->t;
        ce.opt.ignore_index = -100;
        ce.opt.reduction = XENT_REDUCE_MEAN;
        ce.opt.grad_scale = 1.0;
        ce.loss_rows = c->loss;
        ce.grad = k == K_CE_FUSED ? c->work : NULL;
        XENT_FN(xent_ce_rows)(&ce);
        break;
    default:
        s.opt.ignore_index = -100;
        s.opt.temperature = 1.0;
        s.lse = c->lse;
        s.entropy = c->ent;
        XENT_FN(xent_token_scores_rows)(&s);
    }
}

/* ---------------------------------------------------------------- harness */
#ifndef PRIM_NO_MAIN

typedef double (*prim_fn)(int, const XENT_T *, int64_t, XENT_T, XENT_T *, const XENT_T *);
typedef void (*kern_fn)(int, kctx *, int);
#ifdef PRIM_AB
double prim_run_old(int p, const XENT_T *x, int64_t n, XENT_T m, XENT_T *out, const XENT_T *pos);
void kern_run_old(int k, kctx *c, int nt);
static const char *V_NAMES[] = {"old", "new"};
static const prim_fn V_PRIM[] = {prim_run_old, PRIM_SYM(prim_run)};
static const kern_fn V_KERN[] = {kern_run_old, PRIM_SYM(kern_run)};
#define NV 2
#else
static const char *V_NAMES[] = {"this tree"};
static const prim_fn V_PRIM[] = {PRIM_SYM(prim_run)};
static const kern_fn V_KERN[] = {PRIM_SYM(kern_run)};
#define NV 1
#endif

static const char *P_NAMES[P_COUNT] = {
    "read_sum (yardstick)", "row_max", "xv_exp + store", "xv_exp + sum", "xv_exp_le0 + sum",
    "exp polynomial alone + sum", "row_sumexp", "row_sumexp + store e",
    "ce_sumexp_split, max chunk", "ce_sumexp_split, max chunk, e", "ce_sumexp_split, other chunk",
    "ce_sumexp_split, other, e", "row_max_sumexp", "xent_lse_row", "xs_sumexp_ent, max chunk",
    "xs_sumexp_ent, other chunk", "row_axpb (from e)", "row_axpb (exp again)", "xv_log + store",
    "xv_log1p + store"};
static const char *K_NAMES[K_COUNT] = {"read pass", "copy", "logsumexp", "ce loss only",
                                       "ce fused in place", "token_scores"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile double sink;

/* N(0, 3^2) values (Box-Muller over a xorshift generator), as benchmarks/providers.py. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static void fill_normal(XENT_T *x, int64_t n, double sd)
{
    int64_t i;
    for (i = 0; i < n; ++i) {
        const double u = urand(), v = urand();
        x[i] = (XENT_T)(sd * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
}

static int cmp_d(const void *a, const void *b)
{
    const double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

static double median(const double *v0, int n)
{
    double v[256];
    int i;
    for (i = 0; i < n && i < 256; ++i) v[i] = v0[i];
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double minimum(const double *v, int n)
{
    double m = v[0];
    int i;
    for (i = 1; i < n; ++i) m = v[i] < m ? v[i] : m;
    return m;
}

static void bench_l1(int reps, int one)
{
    enum { N = XENT_CHUNK, MAXR = 256 };
    static XENT_T x[N], pos[N], out[N];
    static double ns[NV][P_COUNT][MAXR];
    const int inner = one ? 1 : 200;
    XENT_T m;
    int p, r, k, v;
    fill_normal(x, N, 3.0);
    for (k = 0; k < N; ++k) pos[k] = (XENT_T)(fabs((double)x[k]) * 0.3);
    m = row_max(x, (int64_t)(N + 0 * sink));
    if (reps > MAXR) reps = MAXR;
    /* everything alternates within each round; the minimum is the least disturbed sample */
    for (r = 0; r < reps; ++r)
        for (p = 0; p < P_COUNT; ++p)
            for (v = 0; v < NV; ++v) {
                const double t0 = now_s();
                double acc = 0;
                for (k = 0; k < inner; ++k) acc += V_PRIM[v](p, x, N, m, out, pos);
                ns[v][p][r] = acc == -inner ? -1 : (now_s() - t0) * 1e9 / ((double)inner * N);
                sink = acc;
            }
    printf("L1-resident row of %d elements, %s %s, %d rounds of %d calls; ns per element, min (median):\n",
           N, ISA_NAME, XENT_F32 ? "float32" : "float64", reps, inner);
    printf("  %-32s", "primitive");
    for (v = 0; v < NV; ++v) printf(" %17s", V_NAMES[v]);
    printf(NV == 2 ? "  new/old (min)\n" : "\n");
    for (p = 0; p < P_COUNT; ++p) {
        printf("  %-32s", P_NAMES[p]);
        for (v = 0; v < NV; ++v) {
            if (ns[v][p][0] < 0) printf(" %17s", "-");
            else printf("    %6.3f (%6.3f)", minimum(ns[v][p], reps), median(ns[v][p], reps));
        }
        if (NV == 2 && ns[0][p][0] > 0 && ns[1][p][0] > 0)
            printf("  %6.2f", minimum(ns[1][p], reps) / minimum(ns[0][p], reps));
        printf("\n");
    }
}

static void bench_mem(int reps, int one, int64_t R, int64_t C)
{
    enum { MAXR = 64 };
    static double t[NV][K_COUNT][MAXR];
    kctx c;
    int64_t i;
    int k, r, nt, v;
    c.R = R;
    c.C = C;
    c.x = malloc((size_t)(R * C) * sizeof(XENT_T));
    c.work = malloc((size_t)(R * C) * sizeof(XENT_T));
    c.outv = malloc((size_t)R * sizeof(XENT_T));
    c.lse = malloc((size_t)R * sizeof(XENT_T));
    c.ent = malloc((size_t)R * sizeof(XENT_T));
    c.loss = malloc((size_t)R * sizeof(double));
    c.t = malloc((size_t)R * sizeof(int64_t));
    fill_normal((XENT_T *)c.x, R * C, 3.0);
    for (i = 0; i < R; ++i) ((int64_t *)c.t)[i] = (int64_t)(urand() * C);
    memcpy(c.work, c.x, (size_t)(R * C) * sizeof(XENT_T));
    if (reps > MAXR) reps = MAXR;
    printf("\n%lld x %lld %s %s (%.0f MB), %d rounds, kernels alternating; median ms, ratio to the "
           "read pass / the copy (1 thread: x 1-thread speed / 2-thread speed):\n",
           (long long)R, (long long)C, ISA_NAME, XENT_F32 ? "float32" : "float64",
           R * C * sizeof(XENT_T) / 1e6, reps);
    for (nt = 1; nt <= 2; ++nt) {
        static double med1[NV][K_COUNT];
        for (v = 0; v < NV; ++v)
            for (k = 0; k < K_COUNT; ++k) V_KERN[v](k, &c, nt); /* warm-up */
        for (r = 0; r < reps; ++r)
            for (k = 0; k < K_COUNT; ++k)
                for (v = 0; v < NV; ++v) {
                    double t0;
                    if (v > 0 && k <= K_COPY) { /* the yardsticks do not depend on the tree */
                        t[v][k][r] = t[0][k][r];
                        continue;
                    }
                    /* the fused kernel overwrites its input: restore it (untimed) */
                    if (k == K_CE_FUSED) memcpy(c.work, c.x, (size_t)(R * C) * sizeof(XENT_T));
                    t0 = now_s();
                    V_KERN[v](k, &c, nt);
                    t[v][k][r] = (now_s() - t0) * 1e3;
                }
        printf("  threads=%d\n", nt);
        for (k = 0; k < K_COUNT; ++k) {
            if (k <= K_COPY) {
                printf("    %-20s %8.2f ms\n", K_NAMES[k], median(t[0][k], reps));
                continue;
            }
            for (v = 0; v < NV; ++v) {
                const double md = median(t[v][k], reps);
                printf("    %-20s %8.2f ms  %5.2fx read  %5.2fx copy", NV == 2 ? V_NAMES[v] : K_NAMES[k], md,
                       md / median(t[0][K_READ], reps), md / median(t[0][K_COPY], reps));
                if (NV == 2 && v == 0) printf("  (%s)", K_NAMES[k]);
                if (nt == 1) med1[v][k] = md;
                else printf("  1 thread at %.2fx the 2-thread speed", md / med1[v][k]);
                printf("\n");
            }
        }
    }
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    const int reps = argc > 2 ? atoi(argv[2]) : 9;
    const int one = strcmp(what, "one") == 0;
    /* optional shape of the whole-kernel runs (default 4096 x 32000, float64 2048 x 32000) */
    const int64_t R = argc > 3 ? atoll(argv[3]) : one ? 64 : (XENT_F32 ? 4096 : 2048);
    const int64_t C = argc > 4 ? atoll(argv[4]) : 32000;
    if (one || strcmp(what, "l1") == 0 || strcmp(what, "all") == 0) bench_l1(one ? 1 : reps, one);
    if (one || strcmp(what, "mem") == 0 || strcmp(what, "all") == 0) bench_mem(one ? 1 : reps, one, R, C);
    return 0;
}
#endif /* PRIM_NO_MAIN */
