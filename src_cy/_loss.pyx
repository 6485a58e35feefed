# cython: language_level=3
"""The losses' kernels, float32 and float64, one pass over each row:

    softmax_xent  loss = sum_r keep_r * (logsumexp(z_r) - z_r[t_r])
                  dz_r = scale * keep_r * (softmax(z_r) - onehot(t_r))
    mse           loss = sum_r keep_r * sum_f (p_rf - y_rf)^2
                  dp_r = 2 * scale * keep_r * (p_r - y_r)

z (M, V) logits, t (M,) targets, keep (M,) 0/1 or None (every row), p, y (M, F).
The loss is returned as a float64 sum; the caller divides by the rows kept.
Same numbers as the functions of the same names in fastlstm.reference; the rows
are split across the cells' OpenMP threads.
"""
from cython cimport floating
from cython.parallel cimport prange

cdef extern from "simd_math.h" nogil:
    float expf(float)
    float logf(float)
    double exp(double)
    double log(double)

cdef enum:
    PARALLEL_MIN = 65536   # elements: below this, one thread (a region costs more)

from fastlstm._threads import team_size


def softmax_xent(const floating[:, ::1] z, const Py_ssize_t[::1] t,
                 const unsigned char[::1] keep, double scale, floating[:, ::1] dz):
    """Returns the loss summed over the kept rows and writes dz (M, V); dz may be z
    itself (each row is read before it is written)."""
    cdef Py_ssize_t M = z.shape[0], V = z.shape[1], r
    cdef const unsigned char* kp = NULL if keep is None else &keep[0]
    cdef int nt = team_size(M * V) if M * V >= PARALLEL_MIN else 1
    cdef double total = 0
    with nogil:
        for r in prange(M, schedule='static', num_threads=nt):
            total += _xent_row(&z[r, 0], t[r], 1 if kp == NULL else kp[r], scale,
                               &dz[r, 0], V)
    return total


cdef inline double _xent_row(const floating* z, Py_ssize_t t, unsigned char keep,
                             double scale, floating* dz, Py_ssize_t V) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating zmax, zt, s = 0, w
    if not keep:
        for j in range(V):
            dz[j] = 0
        return 0.0
    zmax = z[0]
    for j in range(1, V):
        if z[j] > zmax:
            zmax = z[j]
    zt = z[t]
    # exp in a loop of its own, which vectorises (simd_math.h)
    for j in range(V):
        if floating is float:
            dz[j] = expf(z[j] - zmax)
        else:
            dz[j] = exp(z[j] - zmax)
    for j in range(V):
        s += dz[j]
    w = <floating>(scale / s)
    for j in range(V):
        dz[j] *= w
    dz[t] -= <floating>scale
    if floating is float:
        return <double>(logf(s) - (zt - zmax))
    else:
        return log(s) - (zt - zmax)


def mse(const floating[:, ::1] p, const floating[:, ::1] y,
        const unsigned char[::1] keep, double scale, floating[:, ::1] dp):
    """Returns the loss summed over the kept rows and writes dp (M, F)."""
    cdef Py_ssize_t M = p.shape[0], F = p.shape[1], r, f
    cdef const unsigned char* kp = NULL if keep is None else &keep[0]
    cdef int nt = team_size(M * F) if M * F >= PARALLEL_MIN else 1
    cdef double total = 0, row
    cdef floating d, two_scale = <floating>(2 * scale)
    with nogil:
        for r in prange(M, schedule='static', num_threads=nt):
            row = 0
            for f in range(F):
                d = p[r, f] - y[r, f]
                if kp != NULL and not kp[r]:
                    d = 0
                row = row + <double>d * d
                dp[r, f] = two_scale * d
            total += row
    return total
