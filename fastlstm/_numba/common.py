"""Helpers shared by the Numba cell kernels: gate functions, thread splits, the
hoisted GEMMs.

The Numba schedule (docs/DESIGN.md, "The Numba backend") differs from the Cython
kernels': every GEMM is np.dot, single-threaded BLAS (the wrappers hold
fastlstm._threads.single_threaded_blas) inside Numba's threads, not the panel
kernel; a step's work goes to P = step_threads(B, H, n) threads (at least 16
units and 2048 of B*H each) through a prange per step, or none where P is 1:
the forward's on the columns of Wh for its units, copied once per call, the
backward's on Wh's rows in place; the weight gradients split the T*B rows
across threads, each summing a partial product, added after; db is summed
after the loop."""
from fractions import Fraction

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

# error_model="numpy": division without a zero check (as cdivision in Cython), which
# would otherwise raise ZeroDivisionError and keep LLVM from vectorising the gate loops.
JIT = dict(nogil=True, cache=True, error_model="numpy")


def lambert_tanh(depth):
    """(P, Q), ascending coefficients with Q[0] = 1, such that tanh x ~ x P(x^2) /
    Q(x^2): the depth-th convergent of Lambert's continued fraction
    tanh x = x / (1 + x^2 / (3 + x^2 / (5 + ...))). All coefficients are positive,
    so Horner's rule in float32 does not cancel."""
    num, den = [Fraction(2 * depth + 1)], [Fraction(1)]
    for k in range(depth - 1, -1, -1):
        # K_k = (2k + 1) + z / K_{k+1}, with K_{k+1} = num / den
        new = [Fraction(0)] * max(len(num), len(den) + 1)
        for i, q in enumerate(num):
            new[i] += (2 * k + 1) * q
        for i, q in enumerate(den):
            new[i + 1] += q
        num, den = new, num
    return [float(q / num[0]) for q in den], [float(q / num[0]) for q in num]


# Depth 11: |error| < 7e-7 on [-9, 9] in float32 (tests/test_numba_math.py); beyond
# 9, tanh rounds to +-1 in float32.
_P, _Q = (tuple(np.float32(q) for q in c) for c in lambert_tanh(11))
_CLAMP = np.float32(9.0)
_HALF = np.float32(0.5)


@njit(**JIT)
def _tanh32(a):
    # Comparisons, not min/max, so that NaN passes through.
    x = _CLAMP if a > _CLAMP else (-_CLAMP if a < -_CLAMP else a)
    z = x * x
    p = ((((_P[5] * z + _P[4]) * z + _P[3]) * z + _P[2]) * z + _P[1]) * z + _P[0]
    q = (((((_Q[6] * z + _Q[5]) * z + _Q[4]) * z + _Q[3]) * z + _Q[2]) * z
         + _Q[1]) * z + _Q[0]
    return x * p / q


def tanh(a):
    """tanh in a's precision. float64 calls libm. float32 uses a rational function
    (lambert_tanh), plain arithmetic that LLVM vectorises: Numba has no vector
    tanh or exp, and the scalar libm calls made the gate passes 1.35-2.2x slower
    than the Cython kernels' (bench/RESULTS.md)."""
    return np.tanh(a)


def sigmoid(a):
    """1 / (1 + exp(-a)) in a's precision; float32 as 0.5 + 0.5 tanh(a / 2)."""
    return 1.0 / (1.0 + np.exp(-a))


@overload(tanh, inline="always", jit_options=JIT)
def _tanh_overload(a):
    if a == types.float32:
        return lambda a: _tanh32(a)
    return lambda a: np.tanh(a)


@overload(sigmoid, inline="always", jit_options=JIT)
def _sigmoid_overload(a):
    if a == types.float32:
        return lambda a: _HALF + _HALF * _tanh32(_HALF * a)
    return lambda a: 1.0 / (1.0 + np.exp(-a))


@njit(inline="always", **JIT)
def one_of(a):
    """1 in a's dtype: a bare literal 1 is int64 in Numba and would turn float32
    gate arithmetic into float64."""
    return np.ones(1, dtype=a.dtype)[0]


@njit(inline="always", **JIT)
def span_lo(n, parts, p):
    """First index of part p when [0, n) is cut into `parts` near-equal parts."""
    return n * p // parts


@njit(**JIT)
def finish_step(active, t, y_t, hT):
    """After step t: the rows that have ended (active[t] run, the rows sorted by
    length) output 0, and the rows whose last step t is hand their state to hT."""
    Bt = active[t]
    ending = 0 if t == active.shape[0] - 1 else active[t + 1]
    y_t[Bt:] = 0
    hT[ending:Bt] = y_t[ending:Bt]


@njit(**JIT)
def finish_cell(active, t, c_t, cT):
    """After step t: the rows whose last step t is hand their c to cT (LSTM)."""
    Bt = active[t]
    ending = 0 if t == active.shape[0] - 1 else active[t + 1]
    cT[ending:Bt] = c_t[ending:Bt]


@njit(**JIT)
def step_threads(B, H, n_threads):
    """Threads for the per-step work: at least 16 units and 2048 of B*H each. With
    one, the kernels run the step outside prange: waking Numba's pool for every
    step cost more than a batch-1 step itself (bench/RESULTS.md)."""
    return max(1, min(n_threads, H // 16, B * H // 2048))


@njit(**JIT)
def pack_units(W, Wp, G, H, j0, j1):
    """Wp (K, G*n) := the G gate columns k*H + j, j in [j0, j1), of W (K, G*H)."""
    n = j1 - j0
    for k in range(G):
        Wp[:, k * n:(k + 1) * n] = W[:, k * H + j0:k * H + j1]


@njit(**JIT)
def panel(flat, K, G, j0, j1):
    """The (K, G*(j1 - j0)) block of a flat per-thread buffer owned by units j0:j1."""
    return flat[K * G * j0:K * G * j1].reshape(K, G * (j1 - j0))


@njit(**JIT)
def recurrent_units(h_prev, Whp, S, G, j0, j1):
    """h_{t-1} @ Wh for units [j0, j1): one GEMM on the thread's packed panel of Wh,
    into its (B, G*n) block of S, which it returns."""
    H = h_prev.shape[1]
    Sp = panel(S, h_prev.shape[0], G, j0, j1)
    np.dot(h_prev, panel(Whp, H, G, j0, j1), Sp)
    return Sp


@njit(**JIT)
def dh_units(dA_t, Wh, D, dh, j0, j1, accumulate):
    """dh[:, j0:j1] (+)= dA_t @ Wh[j0:j1].T, through the thread's block of D (a
    column slice of dh cannot be a GEMM's output)."""
    Dp = panel(D, dh.shape[0], 1, j0, j1)
    np.dot(dA_t, Wh[j0:j1].T, Dp)
    if accumulate:
        dh[:, j0:j1] += Dp
    else:
        dh[:, j0:j1] = Dp


@njit(parallel=True, **JIT)
def pack_panels(Wh, Whp, G, P):
    H = Wh.shape[0]
    for p in prange(P):
        j0, j1 = span_lo(H, P, p), span_lo(H, P, p + 1)
        pack_units(Wh, panel(Whp, H, G, j0, j1), G, H, j0, j1)


@njit(**JIT)
def start_forward(x, Wx, b, Wh, A, G, n_threads):
    """What every forward does before its time loop: A (T, B, G*H) := X Wx + b, and
    Wh packed into per-thread panels. Returns P (threads per step), the panels
    Whp and the scratch S (B*G*H,) for each step's h_{t-1} Wh."""
    T, B, I = x.shape
    H = Wh.shape[0]
    P = step_threads(B, H, n_threads)
    input_projection(x.reshape(T * B, I), Wx, b, A.reshape(T * B, G * H), n_threads)
    Whp = np.empty(H * G * H, dtype=x.dtype)
    pack_panels(Wh, Whp, G, P)
    return P, Whp, np.empty(B * G * H, dtype=x.dtype)


@njit(parallel=True, **JIT)
def input_projection(x2, Wx, b, A2, n_threads):
    """A2 := x2 @ Wx + b for x2 (rows, I), rows split across threads."""
    rows = x2.shape[0]
    for p in prange(n_threads):
        lo, hi = span_lo(rows, n_threads, p), span_lo(rows, n_threads, p + 1)
        if hi > lo:
            np.dot(x2[lo:hi], Wx, A2[lo:hi])
            A2[lo:hi] += b


@njit(parallel=True, **JIT)
def weight_grads(x, h0, y, Wx, dAX, dAH, n_threads):
    """dWx = X.T dAX;  dWh = [h0; Y[:-1]].T dAH;  dx = dAX Wx.T over all T*B rows.

    dAX, dAH (T, B, G*H): gradients of the input and recurrent pre-activations.
    The rows are split across threads (at least 128 each); each sums its partial
    products, then the partial sums are added. One thread writes the results
    directly: allocating and adding partial sums cost more than the GEMMs at
    batch 1 (bench/RESULTS.md).
    """
    T, B, I = x.shape
    H = h0.shape[1]
    GH = dAX.shape[2]
    rows = T * B
    x2, dAX2, dAH2 = x.reshape(rows, I), dAX.reshape(rows, GH), dAH.reshape(rows, GH)
    h_prev = np.empty((rows, H), dtype=x.dtype)
    h_prev[:B] = h0
    h_prev[B:] = y.reshape(rows, H)[:rows - B]
    dx = np.empty((T, B, I), dtype=x.dtype)
    dx2 = dx.reshape(rows, I)
    WxT = Wx.T
    P = max(1, min(n_threads, rows // 128))
    if P == 1:
        dWx = np.empty((I, GH), dtype=x.dtype)
        dWh = np.empty((H, GH), dtype=x.dtype)
        np.dot(x2.T, dAX2, dWx)
        np.dot(h_prev.T, dAH2, dWh)
        np.dot(dAX2, WxT, dx2)
        return dx, dWx, dWh
    part_x = np.zeros((P, I, GH), dtype=x.dtype)
    part_h = np.zeros((P, H, GH), dtype=x.dtype)
    for p in prange(P):
        lo, hi = span_lo(rows, P, p), span_lo(rows, P, p + 1)
        np.dot(x2[lo:hi].T, dAX2[lo:hi], part_x[p])
        np.dot(h_prev[lo:hi].T, dAH2[lo:hi], part_h[p])
        np.dot(dAX2[lo:hi], WxT, dx2[lo:hi])
    return dx, part_x.sum(axis=0), part_h.sum(axis=0)
