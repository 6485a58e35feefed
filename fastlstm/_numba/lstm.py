"""LSTM forward and BPTT kernels in Numba (gate blocks i, f, g, o).

The schedule of src_cy/_lstm.pyx: 1. A = X Wx + b hoisted; 2. per step, thread p
owns units [j0, j1): S_p = h_{t-1} Wh_p on its packed panel, then the fused gate
pass; 3. BPTT per step: fused pass for dA_t, dh_{t-1}[:, j0:j1] = dA_t Wh[j0:j1].T;
4. the weight gradients as GEMMs after the loop.
"""
import numpy as np
from numba import njit, prange

from .common import JIT, dh_units, one_of, recurrent_units, sigmoid, span_lo, \
    start_forward, step_threads


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, b, h0, c0, y, c, gates, n_threads):
    """Writes y, c (T, B, H) and gates (T, B, 4H) = [i, f, g, o]."""
    T, B, _ = x.shape
    H = Wh.shape[0]
    one = one_of(x)
    # 1. A = X Wx + b (into gates); Wh packed into per-thread panels
    P, Whp, S = start_forward(x, Wx, b, Wh, gates, 4, n_threads)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        c_prev = c0 if t == 0 else c[t - 1]
        for p in prange(P):
            j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
            n = j1 - j0
            # 2. S_p = h_{t-1} Wh[:, units j0:j1], one GEMM on the panel
            Sp = recurrent_units(h_prev, Whp, S, 4, j0, j1)
            for r in range(B):
                a, s = gates[t, r], Sp[r]
                for j in range(n):
                    u = j0 + j
                    i_ = sigmoid(a[u] + s[j], one)
                    f_ = sigmoid(a[H + u] + s[n + j], one)
                    g_ = np.tanh(a[2 * H + u] + s[2 * n + j])
                    o_ = sigmoid(a[3 * H + u] + s[3 * n + j], one)
                    a[u], a[H + u], a[2 * H + u], a[3 * H + u] = i_, f_, g_, o_
                    c_t = f_ * c_prev[r, u] + i_ * g_
                    c[t, r, u] = c_t
                    y[t, r, u] = o_ * np.tanh(c_t)


@njit(parallel=True, **JIT)
def backward(Wh, c0, c, gates, dy, dA, dh, dc, n_threads):
    """Writes dA (T, B, 4H); dh, dc (B, H) go from dhT, dcT to dh0, dc0."""
    T, B, H = dy.shape
    one = one_of(dy)
    P = step_threads(B, H, n_threads)
    D = np.empty(B * H, dtype=dy.dtype)
    # Region t finishes step t (dh_{t-1} for the thread's units) and starts step
    # t-1, which needs only those units: one barrier per step.
    for t in range(T, -1, -1):
        for p in prange(P):
            j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
            n = j1 - j0
            if t < T:
                dh_units(dA[t], Wh, D, dh, j0, j1, False)
            if t > 0:
                s = t - 1
                c_prev = c0 if s == 0 else c[s - 1]
                for r in range(B):
                    a, da = gates[s, r], dA[s, r]
                    for j in range(n):
                        u = j0 + j
                        i_, f_, g_, o_ = a[u], a[H + u], a[2 * H + u], a[3 * H + u]
                        tanh_c = np.tanh(c[s, r, u])
                        dh_ = dh[r, u] + dy[s, r, u]
                        dc_ = dc[r, u] + dh_ * o_ * (one - tanh_c * tanh_c)
                        da[u] = dc_ * g_ * i_ * (one - i_)
                        da[H + u] = dc_ * c_prev[r, u] * f_ * (one - f_)
                        da[2 * H + u] = dc_ * i_ * (one - g_ * g_)
                        da[3 * H + u] = dh_ * tanh_c * o_ * (one - o_)
                        dc[r, u] = dc_ * f_
