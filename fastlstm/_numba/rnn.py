"""tanh RNN forward and BPTT kernels in Numba; the schedule of src_cy/_rnn.pyx."""
import numpy as np
from numba import njit, prange

from .common import JIT, dh_units, one_of, recurrent_units, span_lo, start_forward, \
    step_threads


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, b, h0, y, n_threads):
    """Writes y (T, B, H)."""
    T, B, _ = x.shape
    H = Wh.shape[0]
    # 1. A = X Wx + b (into y); Wh packed into per-thread panels
    P, Whp, S = start_forward(x, Wx, b, Wh, y, 1, n_threads)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        for p in prange(P):
            j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
            # 2. h_t = tanh(A_t + h_{t-1} Wh) for units j0:j1
            Sp = recurrent_units(h_prev, Whp, S, 1, j0, j1)
            for r in range(B):
                for j in range(j1 - j0):
                    y[t, r, j0 + j] = np.tanh(y[t, r, j0 + j] + Sp[r, j])


@njit(parallel=True, **JIT)
def backward(Wh, y, dy, dA, dh, n_threads):
    """Writes dA (T, B, H); dh (B, H) goes from dhT to dh0."""
    T, B, H = dy.shape
    one = one_of(dy)
    P = step_threads(B, H, n_threads)
    D = np.empty(B * H, dtype=dy.dtype)
    for t in range(T, -1, -1):
        for p in prange(P):
            j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
            if t < T:
                dh_units(dA[t], Wh, D, dh, j0, j1, False)
            if t > 0:
                s = t - 1
                for r in range(B):
                    for u in range(j0, j1):
                        h = y[s, r, u]
                        dA[s, r, u] = (dh[r, u] + dy[s, r, u]) * (one - h * h)
