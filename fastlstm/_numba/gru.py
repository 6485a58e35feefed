"""GRU forward and BPTT kernels in Numba (PyTorch semantics, gates r, z, n), on the
Numba schedule (common.py), with the steps of lstm.py; the recurrent product S
has a buffer of its own, as the reset gate scales only its n block."""
import numpy as np
from numba import njit, prange

from .common import JIT, dh_units, finish_step, one_of, recurrent_units, sigmoid, span_lo, \
    start_forward, step_threads, tanh


@njit(**JIT)
def forward_units(t, j0, j1, h_prev, bh, Whp, S, gates, hn, y, Bt):
    """Step t for units [j0, j1) of the Bt rows still running: S_p = h_{t-1} Wh_p,
    then the fused gate pass."""
    H = y.shape[2]
    one = one_of(y)
    n = j1 - j0
    # 2. S_p = h_{t-1} Wh[:, units j0:j1], one GEMM on the panel
    Sp = recurrent_units(h_prev[:Bt], Whp, S, 3, j0, j1)
    # 3. The gate pass as loops over one or two arrays each, which LLVM vectorises
    # (lstm.forward_units).
    for r in range(Bt):
        a, s, hp = gates[t, r], Sp[r], h_prev[r]
        hn_t, y_t = hn[t, r], y[t, r]
        for k in range(2):
            for j in range(n):
                s[k * n + j] += a[k * H + j0 + j] + bh[k * H + j0 + j]
        for j in range(2 * n):
            s[j] = sigmoid(s[j])
        for j in range(n):
            hn_t[j0 + j] = s[2 * n + j] + bh[2 * H + j0 + j]
        for j in range(n):
            a[2 * H + j0 + j] += s[j] * hn_t[j0 + j]
        for j in range(n):
            a[2 * H + j0 + j] = tanh(a[2 * H + j0 + j])
        for k in range(2):
            for j in range(n):
                a[k * H + j0 + j] = s[k * n + j]
        for j in range(n):
            z_, n_ = s[n + j], a[2 * H + j0 + j]
            y_t[j0 + j] = (one - z_) * n_ + z_ * hp[j0 + j]


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, bx, bh, h0, y, gates, hn, hT, active, n_threads):
    """Writes y, hn (T, B, H), gates (T, B, 3H) = [r, z, n] and each row's final
    state hT (B, H); active (T,): the rows running at each step."""
    T = x.shape[0]
    H = Wh.shape[0]
    # 1. AX = X Wx + bx (into gates); Wh packed into per-thread panels
    P, Whp, S = start_forward(x, Wx, bx, Wh, gates, 3, n_threads)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        Bt = active[t]
        if P == 1:
            forward_units(t, 0, H, h_prev, bh, Whp, S, gates, hn, y, Bt)
        else:
            for p in prange(P):
                forward_units(t, span_lo(H, P, p), span_lo(H, P, p + 1), h_prev, bh, Whp, S,
                              gates, hn, y, Bt)
        finish_step(active, t, y[t], hT)


@njit(**JIT)
def step(x, Wx, Wh, bx, bh, h, h_next):
    """One step on one thread: step 0 of the forward, over (1, B, ...) views; the
    panel of all H units is Wh itself."""
    B, H = h.shape
    gates = np.empty((1, B, 3 * H), dtype=x.dtype)
    np.dot(x, Wx, gates[0])
    gates[0] += bx
    forward_units(0, 0, H, h, bh, Wh.reshape(-1), np.empty(B * 3 * H, dtype=x.dtype), gates,
                  np.empty((1, B, H), dtype=x.dtype), h_next.reshape(1, B, H), B)


@njit(**JIT)
def backward_units(t, j0, j1, Wh, h0, y, gates, hn, dy, dAX, dAH, dh, D, active):
    """Region t for units [j0, j1): dh_{t-1} of step t, then step t-1's pass, of
    the rows that ran them (the others' dh passes their end unchanged)."""
    T, _, H = dy.shape
    one = one_of(dy)
    if t < T:
        # dh_{t-1} = z * dh_t (written below at step t) + dAH_t Wh[j0:j1].T
        dh_units(dAH[t, :active[t]], Wh, D, dh[:active[t]], j0, j1, True)
    if t > 0:
        s = t - 1
        h_prev = h0 if s == 0 else y[s - 1]
        for r in range(active[s]):
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


@njit(parallel=True, **JIT)
def backward(Wh, h0, y, gates, hn, dy, dAX, dAH, dh, active, n_threads):
    """Writes dAX, dAH (T, B, 3H), 0 past each row's end; dh (B, H) goes from dhT to
    dh0; active (T,): the rows running at each step."""
    T, B, H = dy.shape
    P = step_threads(B, H, n_threads)
    D = np.empty(B * H, dtype=dy.dtype)
    for t in range(T, -1, -1):
        if P == 1:
            backward_units(t, 0, H, Wh, h0, y, gates, hn, dy, dAX, dAH, dh, D, active)
        else:
            for p in prange(P):
                backward_units(t, span_lo(H, P, p), span_lo(H, P, p + 1), Wh, h0, y, gates,
                               hn, dy, dAX, dAH, dh, D, active)
        if t > 0:
            dAX[t - 1, active[t - 1]:] = 0
            dAH[t - 1, active[t - 1]:] = 0
