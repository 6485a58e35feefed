"""GRU forward and BPTT kernels in Numba (PyTorch semantics, gates r, z, n); the
schedule of src_cy/_gru.pyx."""
import numpy as np
from numba import njit, prange

from .common import JIT, dh_units, one_of, recurrent_units, sigmoid, span_lo, \
    start_forward, step_threads


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, bx, bh, h0, y, gates, hn, n_threads):
    """Writes y, hn (T, B, H) and gates (T, B, 3H) = [r, z, n]."""
    T, B, _ = x.shape
    H = Wh.shape[0]
    one = one_of(x)
    # 1. AX = X Wx + bx (into gates); Wh packed into per-thread panels
    P, Whp, S = start_forward(x, Wx, bx, Wh, gates, 3, n_threads)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        for p in prange(P):
            j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
            n = j1 - j0
            # 2. AH_p = h_{t-1} Wh[:, units j0:j1], then the fused pass
            Sp = recurrent_units(h_prev, Whp, S, 3, j0, j1)
            for r in range(B):
                a, s = gates[t, r], Sp[r]
                for j in range(n):
                    u = j0 + j
                    r_ = sigmoid(a[u] + s[j] + bh[u], one)
                    z_ = sigmoid(a[H + u] + s[n + j] + bh[H + u], one)
                    hn_ = s[2 * n + j] + bh[2 * H + u]
                    n_ = np.tanh(a[2 * H + u] + r_ * hn_)
                    a[u], a[H + u], a[2 * H + u] = r_, z_, n_
                    hn[t, r, u] = hn_
                    y[t, r, u] = (one - z_) * n_ + z_ * h_prev[r, u]


@njit(parallel=True, **JIT)
def backward(Wh, h0, y, gates, hn, dy, dAX, dAH, dh, n_threads):
    """Writes dAX, dAH (T, B, 3H); dh (B, H) goes from dhT to dh0."""
    T, B, H = dy.shape
    one = one_of(dy)
    P = step_threads(B, H, n_threads)
    D = np.empty(B * H, dtype=dy.dtype)
    for t in range(T, -1, -1):
        for p in prange(P):
            j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
            if t < T:
                # dh_{t-1} = z * dh_t (written below at step t) + dAH_t Wh[j0:j1].T
                dh_units(dAH[t], Wh, D, dh, j0, j1, True)
            if t > 0:
                s = t - 1
                h_prev = h0 if s == 0 else y[s - 1]
                for r in range(B):
                    a, dax, dah = gates[s, r], dAX[s, r], dAH[s, r]
                    for u in range(j0, j1):
                        r_, z_, n_ = a[u], a[H + u], a[2 * H + u]
                        dh_ = dh[r, u] + dy[s, r, u]
                        dan = dh_ * (one - z_) * (one - n_ * n_)
                        dar = dan * hn[s, r, u] * r_ * (one - r_)
                        daz = dh_ * (h_prev[r, u] - n_) * z_ * (one - z_)
                        dax[u], dax[H + u], dax[2 * H + u] = dar, daz, dan
                        dah[u], dah[H + u], dah[2 * H + u] = dar, daz, dan * r_
                        dh[r, u] = dh_ * z_
