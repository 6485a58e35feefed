"""LSTM forward and BPTT kernels in Numba (gate blocks i, f, g, o), on the Numba
schedule (common.py): 1. A = X Wx + b hoisted, rows split across threads; per
step, thread p owns the unit blocks [q0, q1): 2. S_p = h_{t-1} Wh_p, the panel
kernel on its packed panels, 3. the gate pass, as loops LLVM vectorises;
backward per step 4. dA_t for the thread's units, then 5. dh_{t-1}[:, its
blocks] = dA_t Wh.T on its panels of Wh's rows; 6. the weight gradients as
partial products over rows after the loop.
"""
import numpy as np
from numba import njit, prange, types

from .common import add_into, copy_into, dh_units, finish_cell, finish_step, one_of, \
    own_panels, own_unit_blocks, recurrent_units, sigmoid, start_backward, start_forward, tanh, \
    thread_blocks, zero_ended
from .jit import JIT
from .panels import START_ZERO, blocks
from .simd import lanes
from .symbols import Shared, array
from .team import barrier, meet, team_state, went_alone


@njit(**JIT)
def forward_units(t, q0, q1, h_prev, c_prev, Whp, S, gates, c, y, Bt):
    """Step t for the unit blocks [q0, q1) of the Bt rows still running: S_p =
    h_{t-1} Wh_p, then the fused gate pass."""
    H = y.shape[2]
    U = lanes(S)
    n = (q1 - q0) * U             # S_p's gate blocks are n apart
    j0 = q0 * U
    m = min(q1 * U, H) - j0       # the thread's units
    # 2. S_p = h_{t-1} Wh_p on the thread's panels
    Sp = recurrent_units(h_prev, Whp, S, 4, q0, q1, Bt)
    for r in range(Bt):
        gate_pass(gates[t, r], Sp[r], n, m, j0, H, c_prev[r], c[t, r], y[t, r])


@njit(**JIT)
def gate_pass(a, s, n, m, j0, H, cp, ct, yt):
    """3. The gate pass over the m units from j0 of one row: a (4H,) holds A_t
    (blocks H apart), s the thread's S_p (blocks n apart); a gets the activations
    [i, f, g, o], ct and yt (H,) get c_t and h_t from cp, c_{t-1}.

    Loops over two or three arrays each, on slices: LLVM vectorised neither one
    loop over all the arrays (too many that might alias) nor indices it could
    not prove non-negative (Numba's negative-index check)."""
    for k in range(4):
        add_into(s[k * n:k * n + m], a[k * H + j0:k * H + j0 + m])
    s_if, s_g, s_o = s[:2 * n], s[2 * n:3 * n], s[3 * n:4 * n]
    for j in range(2 * n):
        s_if[j] = sigmoid(s_if[j])
    for j in range(n):
        s_g[j] = tanh(s_g[j])
    for j in range(n):
        s_o[j] = sigmoid(s_o[j])
    for k in range(4):
        copy_into(a[k * H + j0:k * H + j0 + m], s[k * n:k * n + m])
    i_, f_, g_, o_ = s[:m], s[n:n + m], s[2 * n:2 * n + m], s[3 * n:3 * n + m]
    cp, ct, yt = cp[j0:j0 + m], ct[j0:j0 + m], yt[j0:j0 + m]
    for j in range(m):
        ct[j] = f_[j] * cp[j] + i_[j] * g_[j]
    for j in range(m):
        yt[j] = o_[j] * tanh(ct[j])


def _forward_units_c(t, q0, q1, h_prev, c_prev, Whp, S, gates, c, y, Bt):
    forward_units(t, q0, q1, h_prev[0], c_prev[0], Whp[0], S[0], gates[0], c[0], y[0], Bt)


def _forward_units_args(dtype):
    n = types.intp
    return (n, n, n, array(dtype, 2), array(dtype, 2), array(dtype, 1), array(dtype, 1),
            array(dtype, 3), array(dtype, 3), array(dtype, 3), n)


# forward_units compiled once per dtype, called by name (symbols.py) from both paths
shared_forward_units = Shared(_forward_units_c, "lstm_forward_units",
                              _forward_units_args).caller()


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, b, h0, c0, y, c, gates, hT, cT, active, n_threads):
    """Writes y, c (T, B, H), gates (T, B, 4H) = [i, f, g, o] and each row's final
    state hT, cT (B, H); active (T,): the rows running at each step."""
    T = x.shape[0]
    H = Wh.shape[0]
    # 1. A = X Wx + b (into gates); each thread packs its panels of Wh at step 0
    P, Whp, S = start_forward(x, Wx, b, Wh, gates, 4, n_threads)
    U = lanes(S)
    state = team_state()
    if P > 1:
        # one region for the loop (team.py), a barrier per step
        for p in prange(P):
            if meet(state, P):
                q0, q1 = thread_blocks(H, U, P, p)
                for t in range(T):
                    own_panels(t, Wh, Whp, 4, q0, q1)
                    shared_forward_units(t, q0, q1, h0 if t == 0 else y[t - 1],
                                         c0 if t == 0 else c[t - 1], Whp, S, gates, c, y,
                                         active[t])
                    barrier(state, P)
                    if p == 0:
                        finish_step(active, t, y[t], hT)
                        finish_cell(active, t, c[t], cT)
    if P == 1 or went_alone(state):
        q0, q1 = thread_blocks(H, U, 1, 0)
        for t in range(T):
            own_panels(t, Wh, Whp, 4, q0, q1)
            shared_forward_units(t, q0, q1, h0 if t == 0 else y[t - 1],
                                 c0 if t == 0 else c[t - 1], Whp, S, gates, c, y, active[t])
            finish_step(active, t, y[t], hT)
            finish_cell(active, t, c[t], cT)


@njit(**JIT)
def step(x, Wx, Whp, b, h, c, h_next):
    """One step on one thread, on Wh packed by common.step_panels: step 0 of the
    forward, over (1, B, ...) views. c goes to c_t in place."""
    B, H = h.shape
    U = lanes(x)
    gates = np.empty((1, B, 4 * H), dtype=x.dtype)
    np.dot(x, Wx, gates[0])
    for r in range(B):
        add_into(gates[0, r], b)
    shared_forward_units(0, 0, blocks(H, U), h, c, Whp,
                         np.empty(B * 4 * (blocks(H, U)) * U, dtype=x.dtype), gates,
                         c.reshape(1, B, H), h_next.reshape(1, B, H), B)


@njit(**JIT)
def backward_units(t, q0, q1, WhTp, c0, c, gates, dy, dA, dh, dc, Tc, active):
    """Region t for the unit blocks [q0, q1): dh_{t-1} of step t, then dA_{t-1} of
    step t-1, of the rows that ran them (the others' dh and dc pass their end
    unchanged). dh (B, Hp) is padded to whole blocks."""
    T, _, H = dy.shape
    U = lanes(dy)
    j0, j1 = q0 * U, min(q1 * U, H)
    if t < T:
        # 5. dh_{t-1} = dA_t Wh.T for the thread's blocks
        dh_units(dA, t, active[t], WhTp, dh, q0, q1, START_ZERO)
    if t > 0:
        s = t - 1
        c_prev = c0 if s == 0 else c[s - 1]
        tc = Tc[active[s] * j0:active[s] * j1].reshape(active[s], j1 - j0)
        for r in range(active[s]):
            gate_pass_backward(gates[s, r], c[s, r], c_prev[r], dy[s, r], dA[s, r], dh[r],
                               dc[r], tc[r], j0, j1 - j0, H)


@njit(**JIT)
def gate_pass_backward(a, c, c_prev, dy, da, dh, dc, tc, j0, m, H):
    """4. The gate pass backwards over the m units from j0 of one row: from the
    activations a (4H,) = [i, f, g, o], c_t, c_{t-1}, dy_t (H,), dh_t and dc_t,
    write dA_t into da (4H,); dh and dc go to dh_t + dy_t and dc_{t-1}. tc (m,)
    is scratch for tanh(c_t). Loops of at most four arrays on slices, as in
    gate_pass; the names are the reference's."""
    one = one_of(dy)
    i_, f_, g_, o_ = (a[j0:j0 + m], a[H + j0:H + j0 + m], a[2 * H + j0:2 * H + j0 + m],
                      a[3 * H + j0:3 * H + j0 + m])
    di, df, dg, do = (da[j0:j0 + m], da[H + j0:H + j0 + m], da[2 * H + j0:2 * H + j0 + m],
                      da[3 * H + j0:3 * H + j0 + m])
    c, c_prev, dy = c[j0:j0 + m], c_prev[j0:j0 + m], dy[j0:j0 + m]
    dh, dc = dh[j0:j0 + m], dc[j0:j0 + m]
    copy_into(tc, c)
    for j in range(m):
        tc[j] = tanh(tc[j])
    add_into(dh, dy)
    for j in range(m):
        dc[j] += dh[j] * o_[j] * (one - tc[j] * tc[j])
    for j in range(m):
        do[j] = dh[j] * tc[j] * o_[j] * (one - o_[j])
    for j in range(m):
        di[j] = dc[j] * g_[j] * i_[j] * (one - i_[j])
    for j in range(m):
        df[j] = dc[j] * c_prev[j] * f_[j] * (one - f_[j])
    for j in range(m):
        dg[j] = dc[j] * i_[j] * (one - g_[j] * g_[j])
    for j in range(m):
        dc[j] *= f_[j]


def _backward_units_c(t, q0, q1, WhTp, c0, c, gates, dy, dA, dh, dc, Tc, active):
    backward_units(t, q0, q1, WhTp[0], c0[0], c[0], gates[0], dy[0], dA[0], dh[0], dc[0], Tc[0],
                   active[0])


def _backward_units_args(dtype):
    n = types.intp
    return (n, n, n, array(dtype, 1), array(dtype, 2), array(dtype, 3), array(dtype, 3),
            array(dtype, 3), array(dtype, 3), array(dtype, 2), array(dtype, 2), array(dtype, 1),
            array(n, 1))


# backward_units compiled once per dtype, called by name (symbols.py) from both paths
shared_backward_units = Shared(_backward_units_c, "lstm_backward_units",
                               _backward_units_args).caller()


@njit(parallel=True, **JIT)
def backward(Wh, c0, c, gates, dy, dA, dh, dc, active, n_threads):
    """Writes dA (T, B, 4H), 0 past each row's end; dh (B, Hp), padded to whole
    blocks, and dc (B, H) go from dhT, dcT to dh0, dc0; active (T,): the rows
    running at each step."""
    T, B, H = dy.shape
    U = lanes(dy)
    P, WhTp = start_backward(Wh, dy, 4, n_threads)
    Tc = np.empty(B * H, dtype=dy.dtype)
    # Region t finishes step t (dh_{t-1} for the thread's units) and starts step
    # t-1, which needs only those units: one barrier per step.
    state = team_state()
    if P > 1:
        for p in prange(P):
            if meet(state, P):
                q0, q1 = thread_blocks(H, U, P, p)
                for t in range(T, -1, -1):
                    own_unit_blocks(t, T, Wh, WhTp, q0, q1)
                    shared_backward_units(t, q0, q1, WhTp, c0, c, gates, dy, dA, dh, dc, Tc,
                                          active)
                    barrier(state, P)
                    if p == 0 and t > 0:
                        zero_ended(dA, active, t - 1)
    if P == 1 or went_alone(state):
        q0, q1 = thread_blocks(H, U, 1, 0)
        for t in range(T, -1, -1):
            own_unit_blocks(t, T, Wh, WhTp, q0, q1)
            shared_backward_units(t, q0, q1, WhTp, c0, c, gates, dy, dA, dh, dc, Tc, active)
            if t > 0:
                zero_ended(dA, active, t - 1)
