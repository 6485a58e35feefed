"""tanh RNN forward and BPTT kernels in Numba, on the Numba schedule (common.py),
with the steps of lstm.py and one gate block."""
import numpy as np
from numba import njit, prange

from .common import JIT, dh_units, finish_step, one_of, recurrent_units, span_lo, \
    start_forward, step_threads, tanh


@njit(**JIT)
def forward_units(t, j0, j1, h_prev, Whp, S, y, Bt):
    """Step t for units [j0, j1) of the Bt rows still running: h_t = tanh(A_t +
    h_{t-1} Wh)."""
    Sp = recurrent_units(h_prev[:Bt], Whp, S, 1, j0, j1)
    for r in range(Bt):
        for j in range(j1 - j0):
            y[t, r, j0 + j] = tanh(y[t, r, j0 + j] + Sp[r, j])


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, b, h0, y, hT, active, n_threads):
    """Writes y (T, B, H) and each row's final state hT (B, H); active (T,): the rows
    running at each step."""
    T = x.shape[0]
    H = Wh.shape[0]
    # 1. A = X Wx + b (into y); Wh packed into per-thread panels
    P, Whp, S = start_forward(x, Wx, b, Wh, y, 1, n_threads)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        Bt = active[t]
        if P == 1:
            forward_units(t, 0, H, h_prev, Whp, S, y, Bt)
        else:
            for p in prange(P):
                forward_units(t, span_lo(H, P, p), span_lo(H, P, p + 1), h_prev, Whp, S, y,
                              Bt)
        finish_step(active, t, y[t], hT)


@njit(**JIT)
def step(x, Wx, Wh, b, h, h_next):
    """One step on one thread: step 0 of the forward, over (1, B, H) views; the
    panel of all H units is Wh itself."""
    B, H = h.shape
    y = h_next.reshape(1, B, H)
    np.dot(x, Wx, y[0])
    y[0] += b
    forward_units(0, 0, H, h, Wh.reshape(-1), np.empty(B * H, dtype=x.dtype), y, B)


@njit(**JIT)
def backward_units(t, j0, j1, Wh, y, dy, dA, dh, D, active):
    """Region t for units [j0, j1): dh_{t-1} of step t, then dA_{t-1}, of the rows
    that ran them (the others' dh passes their end unchanged)."""
    T = dy.shape[0]
    one = one_of(dy)
    if t < T:
        dh_units(dA[t, :active[t]], Wh, D, dh[:active[t]], j0, j1, False)
    if t > 0:
        s = t - 1
        for r in range(active[s]):
            for u in range(j0, j1):
                h = y[s, r, u]
                dA[s, r, u] = (dh[r, u] + dy[s, r, u]) * (one - h * h)


@njit(parallel=True, **JIT)
def backward(Wh, y, dy, dA, dh, active, n_threads):
    """Writes dA (T, B, H), 0 past each row's end; dh (B, H) goes from dhT to dh0;
    active (T,): the rows running at each step."""
    T, B, H = dy.shape
    P = step_threads(B, H, n_threads)
    D = np.empty(B * H, dtype=dy.dtype)
    for t in range(T, -1, -1):
        if P == 1:
            backward_units(t, 0, H, Wh, y, dy, dA, dh, D, active)
        else:
            for p in prange(P):
                backward_units(t, span_lo(H, P, p), span_lo(H, P, p + 1), Wh, y, dy, dA, dh, D,
                               active)
        if t > 0:
            dA[t - 1, active[t - 1]:] = 0
