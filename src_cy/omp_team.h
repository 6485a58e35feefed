/* The OpenMP team of the enclosing parallel region, for time loops that run
 * inside one region (docs/DESIGN.md, "Threads"): the team's size,
 * the calling thread's rank in it, and the team's barrier.
 *
 * The team can be smaller than the threads asked for (nested in another region,
 * or OMP_THREAD_LIMIT), so the kernels split their work by fl_team_size(), never
 * by the number they asked for. Without OpenMP the team is the calling thread.
 */
#ifndef FASTLSTM_OMP_TEAM_H
#define FASTLSTM_OMP_TEAM_H

#ifdef _OPENMP
#include <omp.h>
static inline int fl_team_size(void) { return omp_get_num_threads(); }
static inline int fl_team_rank(void) { return omp_get_thread_num(); }
/* An orphaned barrier: it binds to the region the caller runs in. */
static inline void fl_team_barrier(void) { _Pragma("omp barrier") }
#else
static inline int fl_team_size(void) { return 1; }
static inline int fl_team_rank(void) { return 0; }
static inline void fl_team_barrier(void) {}
#endif

#endif
