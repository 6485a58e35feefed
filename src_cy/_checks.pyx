# cython: language_level=3
"""The input checks' one compiled pass: are all elements finite?

fastlstm.ops checks every array it passes to a kernel. np.isfinite(a).all() ran
on one thread and wrote a temporary as large as a quarter of x; at B=16 H=256
on 2 threads the checks took 3-4% of a train step (bench/RESULTS.md,
"2026-11-23 (2-core VM)"). This pass reads a once, on the kernels' threads.
"""
from cython cimport floating
from cython.parallel cimport prange

cdef enum:
    PARALLEL_MIN = 65536   # elements: below this, one thread (a region costs more)


def all_finite(const floating[::1] a, int n_threads):
    """True when no element of a (n,) is NaN or +-inf."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef int bad = 0
    cdef int nt = n_threads if n >= PARALLEL_MIN else 1
    with nogil:
        for i in prange(n, schedule='static', num_threads=nt):
            # x - x is 0 for every finite x and NaN for NaN and inf; a compare
            # and an OR per element, which gcc vectorises (no -ffinite-math-only
            # here, so it may not fold x - x to 0: tests/test_bad_input.py)
            bad |= (a[i] - a[i]) != 0
    return bad == 0
