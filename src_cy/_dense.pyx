# cython: language_level=3
"""The Dense layer's and the embedding's kernels, float32 and float64:

    dense_forward       y = x W + b                     x (M, K), W (K, N), b (N,)
    dense_backward      dW = x.T dy;  db = dy summed over rows;  dx = dy W.T
    embedding_backward  dW = 0;  dW[ids[m]] += dy[m]    ids (M,), dy (M, E), dW (V, E)

Same numbers as the functions of the same names in fastlstm.reference. They run
on the cells' OpenMP threads and the panel kernel (_common.pxd), so that a
training step starts no other thread pool: NumPy's threaded GEMMs for the head
left OpenBLAS's workers spinning, and the next LSTM kernel ran at half speed on
2 threads (bench/RESULTS.md, 2026-12-01).

The panel kernel writes whole vectors of columns. Where N is not a multiple of
them (a vocabulary of 33 characters), the products run on copies of W, b and dy
padded with zero columns to Np, and y is copied out of an (M, Np) result.
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport parallel

from _common cimport (span_lo, fl_team_size, fl_team_rank, input_projection,
                      weight_grads, backward_scratch, panel_units, padded_units,
                      rows_times_panels)

from fastlstm._buffers import empty, zeros
from fastlstm._cy import sibling
from fastlstm._threads import single_threaded_blas, team_size

columns = sibling(__name__, "_panels").columns

cdef enum:
    # Elements below which one thread does a loop (a parallel region costs more).
    PARALLEL_MIN = 65536


def _padded_columns(const floating[:, ::1] a, Py_ssize_t Np):
    """a (R, N) copied into a new (R, Np) array whose columns past N are zero."""
    dtype = np.float32 if floating is float else np.float64
    out = empty((a.shape[0], Np), dtype)
    out[:, :a.shape[1]] = a
    out[:, a.shape[1]:] = 0
    return out


def dense_forward(const floating[:, ::1] x, const floating[:, ::1] W,
                  const floating[::1] b):
    """x (M, K), W (K, N), b (N,) -> y (M, N) = x W + b."""
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = W.shape[1]
    cdef Py_ssize_t Np = padded_units(N, panel_units(&x[0, 0]))
    dtype = np.float32 if floating is float else np.float64
    cdef const floating[:, ::1] Wn = W
    cdef const floating[::1] bn = b
    if Np != N:
        Wn = _padded_columns(W, Np)
        bn = _padded_columns(np.asarray(b)[None], Np)[0]
    y = empty((M, Np), dtype)
    cdef floating[:, ::1] y_v = y
    cdef floating[::1] Wp = empty(K * Np, dtype)
    cdef int nt = team_size(M * K * Np)
    with single_threaded_blas(), nogil:
        # y = x @ W + b
        input_projection(&x[0, 0], &Wn[0, 0], &bn[0], &y_v[0, 0], &Wp[0], 1, M, K, Np,
                         NULL, nt)
    return y if Np == N else np.ascontiguousarray(y[:, :N])


def dense_backward(const floating[:, ::1] x, const floating[:, ::1] W,
                   const floating[:, ::1] dy, bint need_dx=True):
    """x (M, K), W (K, N), dy (M, N) -> dx (M, K) (None without need_dx), dW (K, N),
    db (N,)."""
    cdef Py_ssize_t M = x.shape[0], K = x.shape[1], N = W.shape[1]
    cdef Py_ssize_t Np = padded_units(N, panel_units(&x[0, 0]))
    dtype = np.float32 if floating is float else np.float64
    cdef const floating[:, ::1] Wn = W
    cdef const floating[:, ::1] dyn = dy
    if Np != N:
        Wn = _padded_columns(W, Np)
        dyn = _padded_columns(dy, Np)
    dW = empty((K, Np), dtype)
    db = empty(N, dtype)
    dx = empty((M, K), dtype) if need_dx else None
    cdef floating[:, ::1] dW_v = dW
    cdef floating[::1] db_v = db
    cdef floating[:, ::1] dx_v
    cdef floating* dx_p = NULL
    if need_dx:
        dx_v = dx
        dx_p = &dx_v[0, 0]
    cdef floating[::1] WT = empty(backward_scratch(K, 0, Np), dtype)
    cdef int nt = team_size((2 if need_dx else 1) * M * K * Np)
    with single_threaded_blas(), nogil:
        # dW = x.T @ dy;  dx = dy @ W.T
        weight_grads(&x[0, 0], NULL, NULL, &Wn[0, 0], &dyn[0, 0], NULL, &dW_v[0, 0], NULL,
                     dx_p, &WT[0], 1, M, K, 0, Np, NULL, nt)
        # db = dy.sum(axis=0)
        _column_sums(&dyn[0, 0], M, N, Np, &db_v[0], nt if M * N >= PARALLEL_MIN else 1)
    return dx, (dW if Np == N else np.ascontiguousarray(dW[:, :N])), db


def dense_step_weights(const floating[:, ::1] W, const floating[::1] b):
    """W (K, N), b (N,) packed once for dense_step."""
    return columns(W, b) + (W.shape[1],)


def dense_step(tuple weights, const floating[:, ::1] x):
    """y (B, N) = x W + b for a few rows x (B, K), on the calling thread, from the
    weights of dense_step_weights."""
    cdef const floating[::1] Wp = weights[0], bp = weights[1]
    cdef Py_ssize_t N = weights[2], B = x.shape[0], K = x.shape[1], Np = bp.shape[0]
    dtype = np.float32 if floating is float else np.float64
    y = np.empty((B, Np), dtype)
    cdef floating[:, ::1] y_v = y
    with nogil:
        rows_times_panels(&x[0, 0], K, 0, B, K, &Wp[0], Np, &y_v[0, 0], &bp[0])
    return y if Np == N else y[:, :N]


cdef void _column_sums(const floating* D, Py_ssize_t M, Py_ssize_t N, Py_ssize_t ldd,
                       floating* out, int n_threads) noexcept nogil:
    """out (N,) := D (M, N), rows ldd apart, summed over its rows, row after row;
    threads split the columns in whole vectors."""
    cdef Py_ssize_t U = panel_units(D), nb = (N + U - 1) // U, j0, j1, r, j
    with parallel(num_threads=n_threads):
        j0 = min(N, span_lo(nb, fl_team_size(), fl_team_rank()) * U)
        j1 = min(N, span_lo(nb, fl_team_size(), fl_team_rank() + 1) * U)
        for j in range(j0, j1):
            out[j] = 0
        for r in range(M):
            for j in range(j0, j1):
                out[j] += D[r * ldd + j]


def embedding_backward(const Py_ssize_t[::1] ids, const floating[:, ::1] dy,
                       Py_ssize_t V):
    """ids (M,) in [0, V), dy (M, E) -> dW (V, E): row v sums the rows of dy whose id
    is v, in the order of m."""
    cdef Py_ssize_t M = dy.shape[0], E = dy.shape[1]
    dtype = np.float32 if floating is float else np.float64
    dW = zeros((V, E), dtype)
    cdef floating[:, ::1] dW_v = dW
    cdef int nt = team_size(M * E) if M * E >= PARALLEL_MIN else 1
    with nogil:
        _scatter_add(&ids[0], &dy[0, 0], M, E, V, &dW_v[0, 0], nt)
    return dW


cdef void _scatter_add(const Py_ssize_t* ids, const floating* dy, Py_ssize_t M,
                       Py_ssize_t E, Py_ssize_t V, floating* dW,
                       int n_threads) noexcept nogil:
    """dW[ids[m]] += dy[m] for m < M. Threads split the rows of dW, each reads every
    id and adds the rows that are its own: no two threads write one row."""
    cdef Py_ssize_t v0, v1, m, k, e
    with parallel(num_threads=n_threads):
        v0 = span_lo(V, fl_team_size(), fl_team_rank())
        v1 = span_lo(V, fl_team_size(), fl_team_rank() + 1)
        for m in range(M):
            k = ids[m]
            if v0 <= k < v1:
                for e in range(E):
                    dW[k * E + e] += dy[m * E + e]
