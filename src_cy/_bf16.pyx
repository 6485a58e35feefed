# cython: language_level=3
"""The operands of precision="bf16" (docs/DESIGN.md, "bf16") for the kernels of
this level: fp32 arrays rounded to bf16, and bf16 numbers in the pairs the
panel kernel takes (panel_gemm.h)."""
import numpy as np
from cython.parallel cimport prange

from _common cimport (fl_bf2, fl_bf16_round, round_pairs, FL_BF16_DP, FL_BF16_EMULATED,
                      FL_BF16_NATIVE, GRAD_ROWS)

from fastlstm._buffers import empty, zeros
from fastlstm._cy import bf16_kernel
from fastlstm._threads import team_size


cdef enum:
    PARALLEL_MIN = 65536   # elements: below this, one thread (a region costs more)


def rounded(const float[::1] a):
    """a (n,) rounded to bf16 (to nearest, ties to even), as float32 (n,); on the
    kernels' threads."""
    out = empty(a.shape[0], np.float32)
    cdef unsigned int[::1] bits = out.view(np.uint32)
    cdef Py_ssize_t k, n = a.shape[0]
    cdef int nt = team_size(n) if n >= PARALLEL_MIN else 1
    with nogil:
        for k in prange(n, schedule='static', num_threads=nt):
            bits[k] = fl_bf16_round(a[k]) << 16
    return out


def pairs(const float[:, ::1] a):
    """a (M, K) rounded to bf16, as (M, ceil(K/2)) uint32 pairs of consecutive
    columns, the even one in the low half; 0 beside an odd last column. On the
    kernels' threads."""
    cdef Py_ssize_t M = a.shape[0], K = a.shape[1], K2 = (K + 1) // 2, r
    out = empty((M, K2), np.uint32)
    cdef fl_bf2[:, ::1] out_v = out
    cdef int nt = team_size(M * K) if M * K >= PARALLEL_MIN else 1
    with nogil:
        for r in prange(M, schedule='static', num_threads=nt):
            round_pairs(&a[r, 0], &out_v[r, 0], K)
    return out


def mode(precision):
    """The kernels' bf16 mode for precision: 0 (None: the dtype's own precision),
    FL_BF16_NATIVE where this level and CPU run vdpbf16ps, else FL_BF16_EMULATED."""
    if precision is None:
        return 0
    if FL_BF16_DP and bf16_kernel("avx512")[0] == "native":
        return FL_BF16_NATIVE
    return FL_BF16_EMULATED


def operands(precision, x, Wx, Wh, h0):
    """For a forward in precision: (mode, x, Wx, Wh, xb, hb). With bf16, x (T, B,
    I), Wx and Wh rounded to bf16 (float32), xb x's pairs (T, B, ceil(I/2)) and hb
    the state's pairs (2, B, ceil(H/2)), h0's at 1; else x, Wx, Wh as given and
    xb, hb one pair each (unread)."""
    m = mode(precision)
    if m == 0:
        unread = np.zeros(1, np.uint32)
        return 0, x, Wx, Wh, unread, unread
    T, B, I = x.shape
    x = rounded(x.reshape(-1)).reshape(x.shape)
    Wx = rounded(Wx.reshape(-1)).reshape(Wx.shape)
    Wh = rounded(Wh.reshape(-1)).reshape(Wh.shape)
    xb = pairs(x.reshape(T * B, I)).reshape(-1)
    hb = zeros((2, B, (h0.shape[1] + 1) // 2), np.uint32)
    hb[1] = pairs(np.ascontiguousarray(h0, np.float32))
    return m, x, Wx, Wh, xb, hb.reshape(-1)


def grad_operands(dict cache, Py_ssize_t G, int n_threads, bint apart=False):
    """For the backward of a forward whose cache this is, with G gate blocks, on
    n_threads: (mode, h0, y, dAb, dAXb, rows). With bf16, h0 and y rounded to
    bf16 for dWh; dAb room for dA's gate pairs (T, B, G*ceil(H/2)), dAXb the
    same for a dAX apart from dAH (the GRU's), else dAb itself; rows
    weight_grads' scratch. Without, h0, y as cached and one pair each (unread)."""
    m = mode(cache.get("precision"))
    h0, y = cache["h0"], cache["y"]
    if m == 0:
        unread = np.zeros(1, np.uint32)
        return 0, h0, y, unread, unread, unread
    T, B, H = y.shape
    I = cache["x"].shape[2]
    dAb = empty(T * B * G * ((H + 1) // 2), np.uint32)
    return (m, rounded(h0.reshape(-1)).reshape(h0.shape),
            rounded(y.reshape(-1)).reshape(y.shape), dAb,
            empty(dAb.shape, np.uint32) if apart else dAb,
            empty(n_threads * GRAD_ROWS * max(I, H), np.uint32))

