/*
 * xent_team.c -- keep xent's OpenMP workers off the calling thread's CPU.
 *
 * Why: on the development VM (Linux 6.18 under KVM, 2 vCPUs), a worker woken
 * after its thread had slept was often placed on the CPU of the thread that
 * woke it, the caller, and ran only once the caller blocked at the closing
 * barrier.  A two-thread region then took as long as one thread doing all the
 * work: after a 30 ms pause, 32768 x 1000 fused loss+grad took 13.5 ms with the
 * workers left to the scheduler and 8.0 ms with this placement, 262144 x 10 3.4
 * and 2.1 ms.  Without a pause the two are equal.
 *
 * What: before a team of nt threads starts, the caller (the team's master)
 * compares its current CPU with the CPU the team was last placed for.  If it
 * moved (or on first use), a short region lets each worker restrict itself to
 * the caller's allowed CPUs minus the caller's CPU.  The caller itself is never
 * pinned.  With more threads than allowed CPUs, workers get all of them
 * (restricting them would crowd them onto fewer CPUs).
 *
 * State is per calling thread (thread-local, like libgomp's thread pools), so
 * concurrent callers never share it.  The switch is set once at import
 * (xent_team_placement_select, from XENT_PIN_THREADS and the OpenMP binding
 * variables) and only read afterwards.  Linux with OpenMP only; elsewhere
 * xent_team_prepare does nothing.
 */
#if defined(__linux__)
#define _GNU_SOURCE
#include <sched.h>
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
void xent_team_prepare(int nt) { (void)nt; }
#endif
