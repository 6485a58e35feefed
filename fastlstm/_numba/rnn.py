"""tanh RNN forward and BPTT kernels in Numba, on the Numba schedule (common.py),
with the steps of lstm.py and one gate block."""
import numpy as np
from numba import njit, prange, types

from .common import add_into, dh_units, finish_step, one_of, own_panels, own_unit_blocks, \
    recurrent_units, start_backward, start_forward, tanh, thread_blocks, zero_ended
from .jit import JIT
from .panels import START_ZERO, blocks
from .simd import lanes
from .symbols import Shared, array
from .team import barrier, meet, team_state, went_alone


@njit(**JIT)
def forward_units(t, q0, q1, h_prev, Whp, S, y, Bt):
    """Step t for the unit blocks [q0, q1) of the Bt rows still running: h_t =
    tanh(A_t + h_{t-1} Wh)."""
    H = y.shape[2]
    U = lanes(S)
    j0 = q0 * U
    m = min(q1 * U, H) - j0
    Sp = recurrent_units(h_prev, Whp, S, 1, q0, q1, Bt)
    for r in range(Bt):
        # slices, as in lstm.gate_pass
        yt = y[t, r, j0:j0 + m]
        add_into(yt, Sp[r, :m])
        for j in range(m):
            yt[j] = tanh(yt[j])


def _forward_units_c(t, q0, q1, h_prev, Whp, S, y, Bt):
    forward_units(t, q0, q1, h_prev[0], Whp[0], S[0], y[0], Bt)


def _forward_units_args(dtype):
    n = types.intp
    return (n, n, n, array(dtype, 2), array(dtype, 1), array(dtype, 1), array(dtype, 3), n)


# forward_units compiled once per dtype, called by name (symbols.py) from both paths
shared_forward_units = Shared(_forward_units_c, "rnn_forward_units",
                              _forward_units_args).caller()


@njit(parallel=True, **JIT)
def forward(x, Wx, Wh, b, h0, y, hT, active, n_threads):
    """Writes y (T, B, H) and each row's final state hT (B, H); active (T,): the rows
    running at each step."""
    T = x.shape[0]
    H = Wh.shape[0]
    # 1. A = X Wx + b (into y); each thread packs its panels of Wh at step 0
    P, Whp, S = start_forward(x, Wx, b, Wh, y, 1, n_threads)
    U = lanes(S)
    state = team_state()
    if P > 1:
        # one region for the loop (team.py), a barrier per step
        for p in prange(P):
            if meet(state, P):
                q0, q1 = thread_blocks(H, U, P, p)
                for t in range(T):
                    own_panels(t, Wh, Whp, 1, q0, q1)
                    shared_forward_units(t, q0, q1, h0 if t == 0 else y[t - 1], Whp, S, y,
                                         active[t])
                    barrier(state, P)
                    if p == 0:
                        finish_step(active, t, y[t], hT)
    if P == 1 or went_alone(state):
        q0, q1 = thread_blocks(H, U, 1, 0)
        for t in range(T):
            own_panels(t, Wh, Whp, 1, q0, q1)
            shared_forward_units(t, q0, q1, h0 if t == 0 else y[t - 1], Whp, S, y, active[t])
            finish_step(active, t, y[t], hT)


@njit(**JIT)
def step(x, Wx, Whp, b, h, h_next):
    """One step on one thread, on Wh packed by common.step_panels: step 0 of the
    forward, over (1, B, H) views."""
    B, H = h.shape
    U = lanes(x)
    y = h_next.reshape(1, B, H)
    np.dot(x, Wx, y[0])
    for r in range(B):
        add_into(y[0, r], b)
    shared_forward_units(0, 0, blocks(H, U), h, Whp,
                         np.empty(B * blocks(H, U) * U, dtype=x.dtype), y, B)


@njit(**JIT)
def backward_units(t, q0, q1, WhTp, y, dy, dA, dh, active):
    """Region t for the unit blocks [q0, q1): dh_{t-1} of step t, then dA_{t-1}, of
    the rows that ran them (the others' dh passes their end unchanged). dh (B, Hp)
    is padded to whole blocks."""
    T, _, H = dy.shape
    U = lanes(dy)
    one = one_of(dy)
    j0, j1 = q0 * U, min(q1 * U, H)
    if t < T:
        dh_units(dA, t, active[t], WhTp, dh, q0, q1, START_ZERO)
    if t > 0:
        s = t - 1
        for r in range(active[s]):
            # slices, as in lstm.gate_pass
            h, da, dh_r = y[s, r, j0:j1], dA[s, r, j0:j1], dh[r, j0:j1]
            add_into(dh_r, dy[s, r, j0:j1])
            for j in range(j1 - j0):
                da[j] = dh_r[j] * (one - h[j] * h[j])


def _backward_units_c(t, q0, q1, WhTp, y, dy, dA, dh, active):
    backward_units(t, q0, q1, WhTp[0], y[0], dy[0], dA[0], dh[0], active[0])


def _backward_units_args(dtype):
    n = types.intp
    return (n, n, n, array(dtype, 1), array(dtype, 3), array(dtype, 3), array(dtype, 3),
            array(dtype, 2), array(n, 1))


# backward_units compiled once per dtype, called by name (symbols.py) from both paths
shared_backward_units = Shared(_backward_units_c, "rnn_backward_units",
                               _backward_units_args).caller()


@njit(parallel=True, **JIT)
def backward(Wh, y, dy, dA, dh, active, n_threads):
    """Writes dA (T, B, H), 0 past each row's end; dh (B, Hp), padded to whole
    blocks, goes from dhT to dh0; active (T,): the rows running at each step."""
    T, B, H = dy.shape
    U = lanes(dy)
    P, WhTp = start_backward(Wh, dy, 1, n_threads)
    state = team_state()
    if P > 1:
        for p in prange(P):
            if meet(state, P):
                q0, q1 = thread_blocks(H, U, P, p)
                for t in range(T, -1, -1):
                    own_unit_blocks(t, T, Wh, WhTp, q0, q1)
                    shared_backward_units(t, q0, q1, WhTp, y, dy, dA, dh, active)
                    barrier(state, P)
                    if p == 0 and t > 0:
                        zero_ended(dA, active, t - 1)
    if P == 1 or went_alone(state):
        q0, q1 = thread_blocks(H, U, 1, 0)
        for t in range(T, -1, -1):
            own_unit_blocks(t, T, Wh, WhTp, q0, q1)
            shared_backward_units(t, q0, q1, WhTp, y, dy, dA, dh, active)
            if t > 0:
                zero_ended(dA, active, t - 1)
