"""GRU forward and BPTT kernels in Numba (PyTorch semantics, gates r, z, n), on the
Numba schedule (common.py), with the steps of lstm.py; the recurrent product S
has a buffer of its own, as the reset gate scales only its n block."""
import numpy as np
from numba import njit, prange, types

from .common import add_into, copy_into, dh_units, finish_step, one_of, own_panels, \
    own_unit_blocks, recurrent_units, sigmoid, start_backward, start_forward, tanh, \
    thread_blocks, zero_ended
from .jit import JIT
from .panels import START_C, blocks
from .simd import lanes
from .symbols import Shared, array
from .team import barrier, meet, team_state, went_alone


@njit(**JIT)
def forward_units(t, q0, q1, h_prev, bh, Whp, S, gates, hn, y, Bt):
    """Step t for the unit blocks [q0, q1) of the Bt rows still running: S_p =
    h_{t-1} Wh_p, then the fused gate pass."""
    H = y.shape[2]
    U = lanes(S)
    n = (q1 - q0) * U             # S_p's gate blocks are n apart
    j0 = q0 * U
    m = min(q1 * U, H) - j0       # the thread's units
    # 2. S_p = h_{t-1} Wh_p on the thread's panels
    Sp = recurrent_units(h_prev, Whp, S, 3, q0, q1, Bt)
    for r in range(Bt):
        gate_pass(gates[t, r], Sp[r], bh, h_prev[r], hn[t, r], y[t, r], n, m, j0, H)


@njit(**JIT)
def gate_pass(a, s, bh, hp, hn, yt, n, m, j0, H):
    """3. The gate pass over the m units from j0 of one row: a (3H,) holds AX_t =
    x_t Wx + bx (blocks H apart), s the thread's S_p (blocks n apart); a gets the
    activations [r, z, n], hn and yt (H,) get h_{t-1} Wh_n + bh_n and h_t from hp,
    h_{t-1}. Loops of few arrays on slices, as in lstm.gate_pass."""
    one = one_of(a)
    for k in range(2):
        add_into(s[k * n:k * n + m], a[k * H + j0:k * H + j0 + m])
        add_into(s[k * n:k * n + m], bh[k * H + j0:k * H + j0 + m])
    s_rz = s[:2 * n]
    for j in range(2 * n):
        s_rz[j] = sigmoid(s_rz[j])
    r_, z_ = s[:m], s[n:n + m]
    a_n, hn, yt, hp = a[2 * H + j0:2 * H + j0 + m], hn[j0:j0 + m], yt[j0:j0 + m], hp[j0:j0 + m]
    copy_into(hn, s[2 * n:2 * n + m])
    add_into(hn, bh[2 * H + j0:2 * H + j0 + m])
    for j in range(m):
        a_n[j] += r_[j] * hn[j]
    for j in range(m):
        a_n[j] = tanh(a_n[j])
    for k in range(2):
        copy_into(a[k * H + j0:k * H + j0 + m], s[k * n:k * n + m])
    for j in range(m):
        yt[j] = (one - z_[j]) * a_n[j] + z_[j] * hp[j]


def _forward_units_c(t, q0, q1, h_prev, bh, Whp, S, gates, hn, y, Bt):
    forward_units(t, q0, q1, h_prev[0], bh[0], Whp[0], S[0], gates[0], hn[0], y[0], Bt)


def _forward_units_args(dtype):
    n = types.intp
    return (n, n, n, array(dtype, 2), array(dtype, 1), array(dtype, 1), array(dtype, 1),
            array(dtype, 3), array(dtype, 3), array(dtype, 3), n)


# forward_units compiled once per dtype, called by name (symbols.py) from both paths
shared_forward_units = Shared(_forward_units_c, "gru_forward_units",
                              _forward_units_args).caller()


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, bx, bh, h0, y, gates, hn, hT, active, n_threads):
    """Writes y, hn (T, B, H), gates (T, B, 3H) = [r, z, n] and each row's final
    state hT (B, H); active (T,): the rows running at each step."""
    T = x.shape[0]
    H = Wh.shape[0]
    # 1. AX = X Wx + bx (into gates); each thread packs its panels of Wh at step 0
    P, Whp, S = start_forward(x, Wx, bx, Wh, gates, 3, n_threads)
    U = lanes(S)
    state = team_state()
    if P > 1:
        # one region for the loop (team.py), a barrier per step
        for p in prange(P):
            if meet(state, P):
                q0, q1 = thread_blocks(H, U, P, p)
                for t in range(T):
                    own_panels(t, Wh, Whp, 3, q0, q1)
                    shared_forward_units(t, q0, q1, h0 if t == 0 else y[t - 1], bh, Whp, S,
                                         gates, hn, y, active[t])
                    barrier(state, P)
                    if p == 0:
                        finish_step(active, t, y[t], hT)
    if P == 1 or went_alone(state):
        q0, q1 = thread_blocks(H, U, 1, 0)
        for t in range(T):
            own_panels(t, Wh, Whp, 3, q0, q1)
            shared_forward_units(t, q0, q1, h0 if t == 0 else y[t - 1], bh, Whp, S, gates,
                                 hn, y, active[t])
            finish_step(active, t, y[t], hT)


@njit(**JIT)
def step(x, Wx, Whp, bx, bh, h, h_next):
    """One step on one thread, on Wh packed by common.step_panels: step 0 of the
    forward, over (1, B, ...) views."""
    B, H = h.shape
    U = lanes(x)
    gates = np.empty((1, B, 3 * H), dtype=x.dtype)
    np.dot(x, Wx, gates[0])
    for r in range(B):
        add_into(gates[0, r], bx)
    shared_forward_units(0, 0, blocks(H, U), h, bh, Whp,
                         np.empty(B * 3 * blocks(H, U) * U, dtype=x.dtype), gates,
                         np.empty((1, B, H), dtype=x.dtype), h_next.reshape(1, B, H), B)


@njit(**JIT)
def backward_units(t, q0, q1, WhTp, h0, y, gates, hn, dy, dAX, dAH, dh, active):
    """Region t for the unit blocks [q0, q1): dh_{t-1} of step t, then step t-1's
    pass, of the rows that ran them (the others' dh passes their end unchanged).
    dh (B, Hp) is padded to whole blocks."""
    T, _, H = dy.shape
    U = lanes(dy)
    if t < T:
        # dh_{t-1} = z * dh_t (written below at step t) + dAH_t Wh.T
        dh_units(dAH, t, active[t], WhTp, dh, q0, q1, START_C)
    if t > 0:
        s = t - 1
        h_prev = h0 if s == 0 else y[s - 1]
        for r in range(active[s]):
            gate_pass_backward(gates[s, r], hn[s, r], h_prev[r], dy[s, r], dAX[s, r],
                               dAH[s, r], dh[r], q0 * U, min(q1 * U, H) - q0 * U, H)


@njit(**JIT)
def gate_pass_backward(a, hn, hp, dy, dax, dah, dh, j0, m, H):
    """4. The gate pass backwards over the m units from j0 of one row: from the
    activations a (3H,) = [r, z, n], hn, h_{t-1}, dy_t (H,) and dh_t, write dAX_t
    and dAH_t into dax, dah (3H,); dh goes to z * (dh_t + dy_t), its part of
    dh_{t-1}. Loops of few arrays on slices, as in lstm.gate_pass; the names are
    the reference's."""
    one = one_of(dy)
    r_, z_, n_ = a[j0:j0 + m], a[H + j0:H + j0 + m], a[2 * H + j0:2 * H + j0 + m]
    dar, daz, dan = dax[j0:j0 + m], dax[H + j0:H + j0 + m], dax[2 * H + j0:2 * H + j0 + m]
    dhr, dhz, dhn = dah[j0:j0 + m], dah[H + j0:H + j0 + m], dah[2 * H + j0:2 * H + j0 + m]
    hn, hp, dy, dh = hn[j0:j0 + m], hp[j0:j0 + m], dy[j0:j0 + m], dh[j0:j0 + m]
    add_into(dh, dy)
    for j in range(m):
        dan[j] = dh[j] * (one - z_[j]) * (one - n_[j] * n_[j])
    for j in range(m):
        dar[j] = dan[j] * hn[j] * r_[j] * (one - r_[j])
    for j in range(m):
        daz[j] = dh[j] * (hp[j] - n_[j]) * z_[j] * (one - z_[j])
    copy_into(dhr, dar)
    copy_into(dhz, daz)
    for j in range(m):
        dhn[j] = dan[j] * r_[j]
    for j in range(m):
        dh[j] *= z_[j]


def _backward_units_c(t, q0, q1, WhTp, h0, y, gates, hn, dy, dAX, dAH, dh, active):
    backward_units(t, q0, q1, WhTp[0], h0[0], y[0], gates[0], hn[0], dy[0], dAX[0], dAH[0], dh[0],
                   active[0])


def _backward_units_args(dtype):
    n = types.intp
    return (n, n, n, array(dtype, 1), array(dtype, 2), array(dtype, 3), array(dtype, 3),
            array(dtype, 3), array(dtype, 3), array(dtype, 3), array(dtype, 3), array(dtype, 2),
            array(n, 1))


# backward_units compiled once per dtype, called by name (symbols.py) from both paths
shared_backward_units = Shared(_backward_units_c, "gru_backward_units",
                               _backward_units_args).caller()


@njit(parallel=True, **JIT)
def backward(Wh, h0, y, gates, hn, dy, dAX, dAH, dh, active, n_threads):
    """Writes dAX, dAH (T, B, 3H), 0 past each row's end; dh (B, Hp), padded to
    whole blocks, goes from dhT to dh0; active (T,): the rows running at each step."""
    T, B, H = dy.shape
    U = lanes(dy)
    P, WhTp = start_backward(Wh, dy, 3, n_threads)
    state = team_state()
    if P > 1:
        for p in prange(P):
            if meet(state, P):
                q0, q1 = thread_blocks(H, U, P, p)
                for t in range(T, -1, -1):
                    own_unit_blocks(t, T, Wh, WhTp, q0, q1)
                    shared_backward_units(t, q0, q1, WhTp, h0, y, gates, hn, dy, dAX, dAH, dh,
                                          active)
                    barrier(state, P)
                    if p == 0 and t > 0:
                        zero_ended(dAX, active, t - 1)
                        zero_ended(dAH, active, t - 1)
    if P == 1 or went_alone(state):
        q0, q1 = thread_blocks(H, U, 1, 0)
        for t in range(T, -1, -1):
            own_unit_blocks(t, T, Wh, WhTp, q0, q1)
            shared_backward_units(t, q0, q1, WhTp, h0, y, gates, hn, dy, dAX, dAH, dh, active)
            if t > 0:
                zero_ended(dAX, active, t - 1)
                zero_ended(dAH, active, t - 1)
