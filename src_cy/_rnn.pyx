# cython: language_level=3
"""tanh RNN forward and BPTT kernels, float32 and float64.

Same numbers as fastlstm.reference.rnn_forward / rnn_backward; the schedule is the
one of _lstm.pyx with a single gate block:
  forward  1. A = X Wx + b, one GEMM;  2. per step A_t += h_{t-1} Wh, h_t = tanh(A_t)
  backward 3. per step dA_t = (dh_t + dy_t)(1 - h_t^2), dh_{t-1} = dA_t Wh.T
           4. dWx, dWh, dx single GEMMs after the loop, db a column sum
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport prange

from _common cimport gemm, tanh_, fill_rows, add_column_sums

from fastlstm._threads import get_num_threads


def rnn_forward(const floating[:, :, ::1] x, const floating[:, ::1] Wx,
                const floating[:, ::1] Wh, const floating[::1] b,
                const floating[:, ::1] h0, n_threads=None):
    """x (T, B, I), Wx (I, H), Wh (H, H), b (H,), h0 (B, H) -> y (T, B, H), hT, cache.

    Shapes are trusted (all sizes >= 1): fastlstm.ops checks them.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    y = np.empty((T, B, H), dtype=dtype)
    cdef floating[:, :, ::1] y_ = y
    cdef int nt = get_num_threads() if n_threads is None else n_threads
    _forward(x, Wx, Wh, b, h0, y_, nt)
    cache = dict(x=x.base, Wx=Wx.base, Wh=Wh.base, h0=h0.base, y=y)
    return y, y[T - 1].copy(), cache


cdef void _forward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                   const floating[:, ::1] Wx,        # IN  (I, H)
                   const floating[:, ::1] Wh,        # IN  (H, H)
                   const floating[::1] b,            # IN  (H,)
                   const floating[:, ::1] h0,        # IN  (B, H)
                   floating[:, :, ::1] y,            # OUT (T, B, H), also holds A
                   int n_threads) noexcept nogil:
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t t, r, j
    cdef const floating* h_prev
    # 1. A = X Wx + b, written into y and turned into h in place
    fill_rows(&y[0, 0, 0], &b[0], T * B, H)
    gemm(False, False, T * B, H, I, 1, &x[0, 0, 0], I, &Wx[0, 0], H, 1, &y[0, 0, 0], H)
    for t in range(T):
        h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
        # 2. A_t += h_{t-1} Wh;  h_t = tanh(A_t)
        gemm(False, False, B, H, H, 1, h_prev, H, &Wh[0, 0], H, 1, &y[t, 0, 0], H)
        for r in prange(B, schedule='static', num_threads=n_threads):
            for j in range(H):
                y[t, r, j] = tanh_(y[t, r, j])


def rnn_backward(dict cache, const floating[:, :, ::1] dy, const floating[:, ::1] dhT,
                 n_threads=None):
    """dy (T, B, H), dhT (B, H) -> dx, dWx, dWh, db, dh0."""
    cdef const floating[:, :, ::1] x = cache["x"]
    cdef const floating[:, ::1] Wx = cache["Wx"]
    cdef const floating[:, ::1] Wh = cache["Wh"]
    cdef const floating[:, ::1] h0 = cache["h0"]
    cdef const floating[:, :, ::1] y = cache["y"]
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    dx = np.empty((T, B, I), dtype=dtype)
    dWx = np.empty((I, H), dtype=dtype)
    dWh = np.empty((H, H), dtype=dtype)
    db = np.zeros(H, dtype=dtype)
    dh = np.array(dhT, dtype=dtype)
    dA = np.empty((T, B, H), dtype=dtype)
    cdef floating[:, :, ::1] dA_, dx_
    cdef floating[:, ::1] dh_, dWx_, dWh_
    cdef floating[::1] db_
    dA_, dx_, dh_, dWx_, dWh_, db_ = dA, dx, dh, dWx, dWh, db
    cdef int nt = get_num_threads() if n_threads is None else n_threads
    _backward(x, Wx, Wh, h0, y, dy, dA_, dh_, dx_, dWx_, dWh_, db_, nt)
    return dx, dWx, dWh, db, dh


cdef void _backward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                    const floating[:, ::1] Wx,        # IN  (I, H)
                    const floating[:, ::1] Wh,        # IN  (H, H)
                    const floating[:, ::1] h0,        # IN  (B, H)
                    const floating[:, :, ::1] y,      # IN  (T, B, H)
                    const floating[:, :, ::1] dy,     # IN  (T, B, H)
                    floating[:, :, ::1] dA,           # OUT (T, B, H), scratch
                    floating[:, ::1] dh,              # IN dhT, OUT dh0 (B, H)
                    floating[:, :, ::1] dx,           # OUT (T, B, I)
                    floating[:, ::1] dWx,             # OUT (I, H)
                    floating[:, ::1] dWh,             # OUT (H, H)
                    floating[::1] db,                 # OUT (H,), zeroed
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t t, r, j
    cdef floating one = 1
    for t in range(T - 1, -1, -1):
        # 3. dA_t = (dh_t + dy_t) * (1 - h_t^2);  dh_{t-1} = dA_t Wh.T
        for r in prange(B, schedule='static', num_threads=n_threads):
            for j in range(H):
                dA[t, r, j] = (dh[r, j] + dy[t, r, j]) * (one - y[t, r, j] * y[t, r, j])
        gemm(False, True, B, H, H, 1, &dA[t, 0, 0], H, &Wh[0, 0], H, 0, &dh[0, 0], H)
    # 4. dWx = X.T dA;  dWh = h0.T dA_0 + Y[:-1].T dA[1:];  dx = dA Wx.T;  db = sum dA
    gemm(True, False, I, H, T * B, 1, &x[0, 0, 0], I, &dA[0, 0, 0], H, 0, &dWx[0, 0], H)
    gemm(True, False, H, H, B, 1, &h0[0, 0], H, &dA[0, 0, 0], H, 0, &dWh[0, 0], H)
    if T > 1:
        gemm(True, False, H, H, (T - 1) * B, 1, &y[0, 0, 0], H, &dA[1, 0, 0], H, 1,
             &dWh[0, 0], H)
    gemm(False, True, T * B, I, H, 1, &dA[0, 0, 0], H, &Wx[0, 0], H, 0, &dx[0, 0, 0], I)
    add_column_sums(&db[0], &dA[0, 0, 0], T * B, H)
