# cython: language_level=3
"""The kernels' OpenMP team woken: a parallel loop of one iteration per thread,
which returns once every thread of the team has run, for fastlstm._threads._Wake
to time how long the team's sleeping threads take to start. Built at the baseline
level alone: it has no arithmetic, and the kernels of every level share one
OpenMP runtime and its threads."""
from cython.parallel cimport prange


def wake(int n_threads):
    """Run one iteration on each of n_threads (an empty region would be compiled
    away); return when all have run, with the iterations run (n_threads)."""
    cdef int i, ran = 0
    with nogil:
        for i in prange(n_threads, num_threads=n_threads, schedule='static', chunksize=1):
            ran += 1
    return ran
