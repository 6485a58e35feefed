# cython: language_level=3
"""The optimizers' kernels over one parameter array (n,), float32 and float64:

    sum_squares  sum_k a_k^2, accumulated in float64
    adam_update  p *= 1 - decay;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
                 p -= lr_t m / (sqrt(v) + eps)      (lr_t bias-corrected by the caller)
    sgd_update   p *= 1 - decay;  v = momentum v + g;  p -= lr v
                                                    (momentum 0: p -= lr g, v unused)
decay is the learning rate times the weight decay (decoupled, as AdamW).

Same numbers as the functions of the same names in fastlstm.reference, in place;
the elements are split across the cells' OpenMP threads.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastlstm._threads import team_size

cdef enum:
    PARALLEL_MIN = 65536   # elements: below this, one thread (a region costs more)


cdef int _threads(Py_ssize_t n):
    return team_size(n) if n >= PARALLEL_MIN else 1


def sum_squares(const floating[::1] a):
    """sum of a_k^2 in float64."""
    cdef Py_ssize_t n = a.shape[0], k
    cdef int nt = _threads(n)
    cdef double total = 0
    with nogil:
        for k in prange(n, schedule='static', num_threads=nt):
            total += <double>a[k] * a[k]
    return total


def adam_update(floating[::1] p, const floating[::1] g, floating[::1] m,
                floating[::1] v, double lr_t, double beta1, double beta2, double eps,
                double decay=0):
    """One Adam step on p, m, v (n,) from g (n,), in place. m and v in p's dtype; the
    step lr_t * m / (sqrt(v) + eps) is taken in float64 and rounded once."""
    cdef Py_ssize_t n = p.shape[0], k
    cdef int nt = _threads(n)
    cdef floating b1 = <floating>beta1, c1 = <floating>(1 - beta1)
    cdef floating b2 = <floating>beta2, c2 = <floating>(1 - beta2)
    cdef floating e = <floating>eps, keep = <floating>(1 - decay), gk, root
    with nogil:
        for k in prange(n, schedule='static', num_threads=nt):
            if decay != 0:
                p[k] *= keep
            gk = g[k]
            m[k] = b1 * m[k] + c1 * gk
            v[k] = b2 * v[k] + c2 * (gk * gk)
            if floating is float:
                root = sqrtf(v[k]) + e
            else:
                root = sqrt(v[k]) + e
            p[k] -= <floating>(lr_t * m[k] / root)


def sgd_update(floating[::1] p, const floating[::1] g, v, double lr, double momentum,
               double decay=0):
    """One SGD step on p (n,) from g (n,), in place; v (n,) is the momentum buffer,
    None without momentum."""
    cdef Py_ssize_t n = p.shape[0], k
    cdef int nt = _threads(n)
    cdef floating mu = <floating>momentum, step = <floating>lr
    cdef floating keep = <floating>(1 - decay)
    cdef floating[::1] v_
    if v is None:
        with nogil:
            for k in prange(n, schedule='static', num_threads=nt):
                if decay != 0:
                    p[k] *= keep
                p[k] -= step * g[k]
        return
    v_ = v
    with nogil:
        for k in prange(n, schedule='static', num_threads=nt):
            if decay != 0:
                p[k] *= keep
            v_[k] = mu * v_[k] + g[k]
            p[k] -= step * v_[k]
