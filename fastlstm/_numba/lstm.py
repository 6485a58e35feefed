"""LSTM forward and BPTT kernels in Numba (gate blocks i, f, g, o), on the Numba
schedule (common.py): 1. A = X Wx + b hoisted, rows split across threads; per
step, thread p owns units [j0, j1): 2. S_p = h_{t-1} Wh_p with np.dot on its
copied slice of Wh, 3. the gate pass, as loops LLVM vectorises; backward per
step 4. dA_t for the thread's units, then 5. dh_{t-1}[:, j0:j1] = dA_t
Wh[j0:j1].T; 6. the weight gradients as partial products over rows after the
loop.
"""
import numpy as np
from numba import njit, prange

from .common import JIT, dh_units, finish_cell, finish_step, one_of, panel, recurrent_units, \
    sigmoid, span_lo, start_forward, step_threads, tanh


@njit(**JIT)
def forward_units(t, j0, j1, h_prev, c_prev, Whp, S, gates, c, y, Bt):
    """Step t for units [j0, j1) of the Bt rows still running: S_p = h_{t-1} Wh_p,
    then the fused gate pass."""
    H = y.shape[2]
    n = j1 - j0
    # 2. S_p = h_{t-1} Wh[:, units j0:j1], one GEMM on the panel
    Sp = recurrent_units(h_prev[:Bt], Whp, S, 4, j0, j1)
    # 3. The gate pass as loops over one or two arrays each, which LLVM vectorises
    # (one loop over all of them did not: too many arrays that might alias).
    for r in range(Bt):
        a, s = gates[t, r], Sp[r]
        for k in range(4):
            for j in range(n):
                s[k * n + j] += a[k * H + j0 + j]
        for j in range(2 * n):
            s[j] = sigmoid(s[j])
        for j in range(2 * n, 3 * n):
            s[j] = tanh(s[j])
        for j in range(3 * n, 4 * n):
            s[j] = sigmoid(s[j])
        for k in range(4):
            for j in range(n):
                a[k * H + j0 + j] = s[k * n + j]
        cp, ct, yt = c_prev[r], c[t, r], y[t, r]
        for j in range(n):
            ct[j0 + j] = s[n + j] * cp[j0 + j] + s[j] * s[2 * n + j]
        for j in range(n):
            yt[j0 + j] = s[3 * n + j] * tanh(ct[j0 + j])


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, b, h0, c0, y, c, gates, hT, cT, active, n_threads):
    """Writes y, c (T, B, H), gates (T, B, 4H) = [i, f, g, o] and each row's final
    state hT, cT (B, H); active (T,): the rows running at each step."""
    T = x.shape[0]
    H = Wh.shape[0]
    # 1. A = X Wx + b (into gates); Wh packed into per-thread panels
    P, Whp, S = start_forward(x, Wx, b, Wh, gates, 4, n_threads)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        c_prev = c0 if t == 0 else c[t - 1]
        Bt = active[t]
        if P == 1:
            forward_units(t, 0, H, h_prev, c_prev, Whp, S, gates, c, y, Bt)
        else:
            for p in prange(P):
                forward_units(t, span_lo(H, P, p), span_lo(H, P, p + 1), h_prev, c_prev,
                              Whp, S, gates, c, y, Bt)
        finish_step(active, t, y[t], hT)
        finish_cell(active, t, c[t], cT)


@njit(**JIT)
def step(x, Wx, Wh, b, h, c, h_next):
    """One step on one thread: step 0 of the forward, over (1, B, ...) views; the
    panel of all H units is Wh itself. c goes to c_t in place."""
    B, H = h.shape
    gates = np.empty((1, B, 4 * H), dtype=x.dtype)
    np.dot(x, Wx, gates[0])
    gates[0] += b
    forward_units(0, 0, H, h, c, Wh.reshape(-1), np.empty(B * 4 * H, dtype=x.dtype), gates,
                  c.reshape(1, B, H), h_next.reshape(1, B, H), B)


@njit(**JIT)
def backward_units(t, j0, j1, Wh, c0, c, gates, dy, dA, dh, dc, D, Tc, active):
    """Region t for units [j0, j1): dh_{t-1} of step t, then dA_{t-1} of step t-1,
    of the rows that ran them (the others' dh and dc pass their end unchanged)."""
    T, _, H = dy.shape
    one = one_of(dy)
    if t < T:
        dh_units(dA[t, :active[t]], Wh, D, dh[:active[t]], j0, j1, False)
    if t > 0:
        B = active[t - 1]
        s = t - 1
        c_prev = c0 if s == 0 else c[s - 1]
        n = j1 - j0
        # tanh(c_s) first, in a loop of its own that LLVM vectorises (see forward_units)
        tc = panel(Tc, B, 1, j0, j1)
        for r in range(B):
            cr, tr = c[s, r], tc[r]
            for j in range(n):
                tr[j] = cr[j0 + j]
            for j in range(n):
                tr[j] = tanh(tr[j])
        for r in range(B):
            a, da = gates[s, r], dA[s, r]
            for u in range(j0, j1):
                i_, f_, g_, o_ = a[u], a[H + u], a[2 * H + u], a[3 * H + u]
                tanh_c = tc[r, u - j0]
                dh_ = dh[r, u] + dy[s, r, u]
                dc_ = dc[r, u] + dh_ * o_ * (one - tanh_c * tanh_c)
                da[u] = dc_ * g_ * i_ * (one - i_)
                da[H + u] = dc_ * c_prev[r, u] * f_ * (one - f_)
                da[2 * H + u] = dc_ * i_ * (one - g_ * g_)
                da[3 * H + u] = dh_ * tanh_c * o_ * (one - o_)
                dc[r, u] = dc_ * f_


@njit(parallel=True, **JIT)
def backward(Wh, c0, c, gates, dy, dA, dh, dc, active, n_threads):
    """Writes dA (T, B, 4H), 0 past each row's end; dh, dc (B, H) go from dhT, dcT
    to dh0, dc0; active (T,): the rows running at each step."""
    T, B, H = dy.shape
    P = step_threads(B, H, n_threads)
    D = np.empty(B * H, dtype=dy.dtype)
    Tc = np.empty(B * H, dtype=dy.dtype)
    # Region t finishes step t (dh_{t-1} for the thread's units) and starts step
    # t-1, which needs only those units: one barrier per step.
    for t in range(T, -1, -1):
        if P == 1:
            backward_units(t, 0, H, Wh, c0, c, gates, dy, dA, dh, dc, D, Tc, active)
        else:
            for p in prange(P):
                backward_units(t, span_lo(H, P, p), span_lo(H, P, p + 1), Wh, c0, c, gates,
                               dy, dA, dh, dc, D, Tc, active)
        if t > 0:
            dA[t - 1, active[t - 1]:] = 0
