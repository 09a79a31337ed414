/*
 * xent_instantiate.h -- body of each kernel translation unit.
 *
 * xent_<isa>_<dtype>.c defines XENT_ISA and XENT_F32 and includes this file,
 * which switches the compiler's target for the whole unit (no -m flags on the
 * command line, so the extension itself stays baseline x86-64) and then
 * includes every kernel family once.  Run-time dispatch is in xent_dispatch.c.
 */
#if XENT_ISA != 0 && !(defined(__x86_64__) || defined(_M_X64))
/* Not an x86-64 target: only the scalar units are built into the dispatch. */
typedef int xent_empty_translation_unit;
#else

/* Pragmas take literal strings only, hence the repetition. */
#if XENT_ISA == 2
#define XENT_TARGETED 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c,bmi,bmi2,popcnt"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c,bmi,bmi2,popcnt")
#endif
#elif XENT_ISA == 1
#define XENT_TARGETED 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2,popcnt"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,popcnt")
#endif
#endif

#include "xent_kernels.h"
#include "xent_simd.h"
#include "xent_math.h"
#include "xent_rowops.h"
#include "xent_families.h"

#if defined(XENT_TARGETED) && defined(__clang__)
#pragma clang attribute pop
#endif

#endif
