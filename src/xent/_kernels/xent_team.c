/*
 * xent_team.c -- process-level care of xent's OpenMP teams: optional worker
 * placement, and fork safety (below).
 *
 * Worker placement (opt-in: XENT_PIN_THREADS=1).  On the development VM (Linux
 * 6.18 under KVM, 2 vCPUs) a worker woken after its thread had slept was often
 * placed on the CPU of the thread that woke it, the caller, and ran only once
 * the caller blocked at the closing barrier, so a two-thread region after an
 * idle pause took as long as one thread.  With placement on, before a team of
 * nt threads starts, the caller compares its current CPU with the CPU the team
 * was last placed for; if it moved (or on first use), a short region lets each
 * worker restrict itself to the caller's allowed CPUs minus the caller's CPU.
 * The caller itself is never pinned; with more threads than allowed CPUs,
 * workers get all of them.  It is opt-in because the workers belong to the
 * OpenMP runtime, which other libraries in the process (PyTorch) share: their
 * regions would run on the restricted workers too.
 *
 * State is per calling thread (thread-local, like libgomp's thread pools), so
 * concurrent callers never share it.  The switch is set once at import
 * (xent_team_placement_select) and only read afterwards.  Linux with OpenMP
 * only; elsewhere xent_team_prepare does nothing.
 */
#if defined(__linux__)
#define _GNU_SOURCE
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#include "xent_common.h"

static int xent_placement_on = 0;

int xent_team_placement_select(int on)
{
#if defined(__linux__) && defined(_OPENMP)
    xent_placement_on = on != 0;
#else
    (void)on;
    xent_placement_on = 0;
#endif
    return xent_placement_on;
}

int xent_team_placement_active(void) { return xent_placement_on; }

#if defined(__linux__) && defined(_OPENMP)
static _Thread_local int tl_cpu = -1;  /* caller's CPU the team was last placed for */
static _Thread_local int tl_size = 0;  /* team size placed */
static _Thread_local int tl_ncpu = 0;  /* caller's allowed CPUs at that time */
static _Thread_local int tl_excluded;  /* 1: workers exclude tl_cpu; 0: they may run anywhere allowed */

static void xent_team_forget(void)
{
    tl_cpu = -1;
    tl_size = 0;
    tl_excluded = 0;
}

void xent_team_prepare(int nt)
{
    cpu_set_t set;
    int cpu, exclude;
    if (!xent_placement_on || nt <= 1) return;
    cpu = sched_getcpu();
    if (cpu < 0) return;
    if (cpu == tl_cpu && nt <= tl_size && (nt <= tl_ncpu) == tl_excluded) return; /* nothing moved */
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    exclude = CPU_ISSET(cpu, &set) && CPU_COUNT(&set) >= nt;
    tl_ncpu = CPU_COUNT(&set);
    if (exclude) CPU_CLR(cpu, &set);
    if (exclude || tl_excluded) { /* (workers never restricted need no reset) */
        XENT_PRAGMA_OMP(parallel num_threads(nt))
        {
            if (xent_thread_id() > 0) (void)sched_setaffinity(0, sizeof set, &set);
        }
    }
    tl_cpu = cpu;
    tl_size = nt;
    tl_excluded = exclude;
}
#else
static void xent_team_forget(void) {}
void xent_team_prepare(int nt) { (void)nt; }
#endif

/*
 * Fork safety.  GNU OpenMP keeps each thread's team of workers in a pool that a
 * forked child inherits without the worker threads: the child's first parallel
 * region from the forking thread then waits for them forever.  Before every
 * fork the forking thread's pool is released (omp_pause_resource_all, OpenMP
 * 5.0), so the child starts a fresh pool; the parent re-creates its workers on
 * its next region (a one-off cost of starting threads).  Weak, so a runtime
 * without the call (older libgomp, or none) is simply left alone; LLVM's and
 * Intel's runtimes handle fork themselves.
 */
#if defined(_OPENMP) && (defined(__unix__) || defined(__APPLE__)) && defined(__GNUC__)
#pragma weak omp_pause_resource_all
static void xent_before_fork(void)
{
    if (omp_pause_resource_all != NULL && !omp_in_parallel()) (void)omp_pause_resource_all(omp_pause_soft);
    xent_team_forget(); /* the workers placed for this thread are gone */
}

int xent_fork_guard_install(void)
{
    static int installed = 0;
    if (!installed) installed = pthread_atfork(xent_before_fork, NULL, NULL) == 0;
    return installed;
}
#else
int xent_fork_guard_install(void) { return 0; }
#endif
