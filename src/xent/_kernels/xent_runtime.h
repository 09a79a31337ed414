/* xent_runtime.h -- build and OpenMP facts for the Cython boundary. */
#ifndef XENT_RUNTIME_H
#define XENT_RUNTIME_H
#ifdef _OPENMP
#include <omp.h>
#endif
#ifndef XENT_HAVE_OPENMP
#define XENT_HAVE_OPENMP 0
#endif
#ifndef XENT_BUILD_CC
#define XENT_BUILD_CC "unknown"
#endif
#ifndef XENT_BUILD_FLAGS
#define XENT_BUILD_FLAGS "unknown"
#endif

static int xent_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static int xent_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static const char *xent_build_cc(void) { return XENT_BUILD_CC; }
static const char *xent_build_flags(void) { return XENT_BUILD_FLAGS; }
#endif
