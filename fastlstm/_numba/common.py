"""Helpers shared by the Numba cell kernels: gate functions, thread splits, the
packed panels of the time loop and the GEMMs over all T*B rows.

The Numba schedule (docs/DESIGN.md, "The Numba backend") is the Cython kernels':
per step, P = step_threads(B, H, G, n) threads (one prange for the whole loop,
with a barrier per step, team.py; none where P is 1) each own whole unit blocks
of U, multiply on their panels of Wh, packed once per call, with the panel
kernel (panels.py), and run the gate pass of their units; the input projection and the weight gradients run on the same kernel,
before and after the loop, where their columns are whole panels (np.dot, on
single-threaded BLAS, otherwise)."""
from fractions import Fraction

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .jit import JIT
from .panels import START_BIAS, START_C, START_ZERO, blocks, pack_gate_panels, pack_unit_blocks, \
    panel_gemm
from .simd import lanes, load, store



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
    gate arithmetic into float64. (Not np.ones: in a parallel function that is a
    parallel loop of its own, compiled as one.)"""
    one = np.empty(1, dtype=a.dtype)
    one[0] = 1
    return one[0]


# add_into, copy_into and zero stand in for the array expressions acc[...] += a,
# dst[...] = src and a[...] = 0 (and np.zeros): in a parallel function Numba makes
# each such expression a parallel loop, compiled as a function of its own, and
# with a broadcast it compiles its shape check's message too. Written as these
# loops, a first LSTM train compiled in 43 s instead of 65 (bench/RESULTS.md).

@njit(**JIT)
def add_into(acc, a):
    """acc += a, elementwise over two (n,) arrays, in a loop LLVM vectorises."""
    for j in range(acc.shape[0]):
        acc[j] += a[j]


@njit(**JIT)
def copy_into(dst, src):
    """dst[:] = src over two (n,) arrays, as add_into."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(**JIT)
def zero(a):
    """a[:] = 0 over a (n,) array, as add_into."""
    for j in range(a.shape[0]):
        a[j] = 0


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
    for r in range(ending, Bt):
        copy_into(hT[r], y_t[r])


@njit(**JIT)
def finish_cell(active, t, c_t, cT):
    """After step t: the rows whose last step t is hand their c to cT (LSTM)."""
    Bt = active[t]
    ending = 0 if t == active.shape[0] - 1 else active[t + 1]
    for r in range(ending, Bt):
        copy_into(cT[r], c_t[r])


@njit(**JIT)
def zero_ended(dA, active, s):
    """dA[s] := 0 in the rows that did not run step s (active[s] ran, the rows
    sorted by length)."""
    for r in range(active[s], dA.shape[1]):
        zero(dA[s, r])


# Multiply-adds of the per-step product each thread of a step must have, as in
# the Cython kernels, whose barrier per step costs about what team.barrier does
# (0.33 us on 2 threads; a Numba parallel region per step took 2.8-3.3 us in the
# same run): bench/RESULTS.md, 2026-12-02 and 2026-12-08.
STEP_MIN_WORK = 32768


@njit(**JIT)
def step_threads(B, H, G, like, n_threads):
    """Threads for a step's work (G gate blocks): at most one per block of U units
    (U = lanes(like)) and at least STEP_MIN_WORK of its B*H*G*H multiply-adds
    each. With one, the kernels run the step outside prange."""
    return max(1, min(n_threads, B * H * G * H // STEP_MIN_WORK, blocks(H, lanes(like))))


@njit(**JIT)
def thread_blocks(H, U, P, p):
    """(q0, q1): the unit blocks of U that thread p of P owns."""
    nb = blocks(H, U)
    return span_lo(nb, P, p), span_lo(nb, P, p + 1)


@njit(**JIT)
def recurrent_units(h_prev, Whp, S, G, q0, q1, Bt):
    """2. h_{t-1} @ Wh for the unit blocks [q0, q1) of the first Bt rows: one call
    of the panel kernel on the thread's panels (pack_gate_panels), into its
    (B, G*n) block of S, which it returns; gate k of the block's unit j is at
    column k*n + j, n = (q1 - q0)*U."""
    B, H = h_prev.shape
    U = lanes(S)
    n = (q1 - q0) * U
    s0 = B * G * q0 * U
    panel_gemm(Bt, H, G * (q1 - q0), h_prev.reshape(-1), 0, H, 1, Whp, G * q0 * H * U, H * U,
               S, s0, G * n, U, START_ZERO, S, 0)
    return S[s0:s0 + B * G * n].reshape(B, G * n)


@njit(**JIT)
def dh_units(dA, t, Bt, WhTp, dh, q0, q1, mode):
    """5. dh[:Bt, blocks q0:q1] := (START_ZERO) or += (START_C) dA_t @ Wh.T on
    Wh's panels (pack_unit_blocks); dA (T, B, N), dh (B, Hp) padded to whole
    blocks."""
    _, B, N = dA.shape
    U = lanes(WhTp)
    panel_gemm(Bt, N, q1 - q0, dA.reshape(-1), t * B * N, N, 1, WhTp, q0 * N * U, N * U,
               dh.reshape(-1), q0 * U, dh.shape[1], U, mode, WhTp, 0)


@njit(**JIT)
def start_forward(x, Wx, b, Wh, A, G, n_threads):
    """What every forward does before its time loop: 1. A (T, B, G*H) := X Wx + b.
    Returns P (threads per step), the room for Wh's panels Whp, which each thread
    packs for its own units at step 0 (own_panels), and the scratch S (B*G*Hp,)
    for each step's h_{t-1} Wh."""
    T, B, I = x.shape
    H = Wh.shape[0]
    U = lanes(x)
    Hp = blocks(H, U) * U
    input_projection(x.reshape(T * B, I), Wx, b, A.reshape(T * B, G * H), n_threads)
    return (step_threads(B, H, G, x, n_threads), np.empty(G * Hp * H, dtype=x.dtype),
            np.empty(B * G * Hp, dtype=x.dtype))


@njit(**JIT)
def own_panels(t, Wh, Whp, G, q0, q1):
    """At step 0, a thread packs the panels of Wh (H, G*H) for its unit blocks
    [q0, q1), which only it reads at every step (pack_gate_panels): one packing per
    forward, split as the steps are, with no parallel loop of its own."""
    if t == 0:
        pack_gate_panels(Wh, Whp, G, q0, q1)


@njit(**JIT)
def step_panels(Wh, G):
    """Wh (H, G*H) packed for the one-step kernels: the panels of one thread that
    owns every unit."""
    H = Wh.shape[0]
    U = lanes(Wh)
    Whp = np.empty(G * blocks(H, U) * U * H, dtype=Wh.dtype)
    pack_gate_panels(Wh, Whp, G, 0, blocks(H, U))
    return Whp


@njit(**JIT)
def start_backward(Wh, like, G, n_threads):
    """What every backward does before its time loop: P (threads per step) and the
    room for Wh's panels of dA @ Wh.T, which each thread packs for its own units
    in the first region (own_unit_blocks)."""
    H = Wh.shape[0]
    B = like.shape[1]
    return (step_threads(B, H, G, like, n_threads),
            np.empty(blocks(H, lanes(like)) * lanes(like) * Wh.shape[1], dtype=like.dtype))


@njit(**JIT)
def own_unit_blocks(t, T, Wh, WhTp, q0, q1):
    """In region T, the first of a backward, a thread packs the panels of Wh's
    unit blocks [q0, q1), which only it reads (pack_unit_blocks), as own_panels."""
    if t == T:
        pack_unit_blocks(Wh, WhTp, q0, q1)


# A's rows per call of the panel kernel in the GEMMs over all T*B rows: 256 KB of
# float32, which stay in L2 while each group of panels passes over them.
ROW_BLOCK_ELEMENTS = 65536


@njit(**JIT)
def rows_times_panels(A, lo, hi, Wp, C, bias, mode):
    """C[lo:hi] := A[lo:hi] @ W (+ bias, a row of N, with mode START_BIAS) for A
    (rows, K), C (rows, N), W (K, N) packed as N / U panels of K rows, one after
    the other (pack_gate_panels with G = 1, or pack_unit_blocks of W.T)."""
    K, N = A.shape[1], C.shape[1]
    U = lanes(Wp)
    mc = max(1, ROW_BLOCK_ELEMENTS // K)
    for r0 in range(lo, hi, mc):
        panel_gemm(min(mc, hi - r0), K, N // U, A.reshape(-1), r0 * K, K, 1, Wp, 0, K * U,
                   C.reshape(-1), r0 * N, N, U, mode, bias, 0)


@njit(parallel=True, **JIT)
def input_projection(x2, Wx, b, A2, n_threads):
    """A2 := x2 @ Wx + b for x2 (rows, I), rows split across threads: on the panel
    kernel where Wx's columns are whole panels, else np.dot. Wx is packed before,
    on one thread: one parallel loop compiles in about a second, and packing
    I*N elements is little beside rows*I*N multiply-adds."""
    rows, I = x2.shape
    N = Wx.shape[1]
    U = lanes(x2)
    whole = N % U == 0
    Wxp = np.empty(I * N if whole else 0, dtype=x2.dtype)
    if whole:
        pack_gate_panels(Wx, Wxp, 1, 0, N // U)
    for p in prange(n_threads):
        lo, hi = span_lo(rows, n_threads, p), span_lo(rows, n_threads, p + 1)
        if whole:
            rows_times_panels(x2, lo, hi, Wxp, A2, b, START_BIAS)
        elif hi > lo:
            np.dot(x2[lo:hi], Wx, A2[lo:hi])
            for r in range(lo, hi):
                add_into(A2[r], b)


# Rows of dA packed at a time for the weight gradients; and the most bytes of dWx
# or dWh a thread may own on the panel kernel, which adds every chunk into them,
# so they must stay in its L2 (src_cy/_common.pxd measured both).
GRAD_ROWS = 256
GRAD_MAX_BYTES = 2097152


@njit(**JIT)
def pack_rows(dA2, k0, K, Pk, q0, q1):
    """Pk := rows [k0, k0 + K) of dA2 (rows, N) as the panels of the column blocks
    [q0, q1): block q is the (K, U) panel at q*GRAD_ROWS*U of Pk."""
    N = dA2.shape[1]
    U = lanes(Pk)
    flat = dA2.reshape(-1)
    for q in range(q0, q1):
        at = q * GRAD_ROWS * U
        for r in range(K):
            store(Pk, at + r * U, load(flat, (k0 + r) * N + q * U))


@njit(**JIT)
def grad_columns(x, h0, y, dAX, dAH, same, dWx, dWh, Pk, q0, q1):
    """6. The column blocks [q0, q1) of dWx = X.T dAX and dWh = [h0; Y[:-1]].T dAH,
    on the panel kernel with X, h0 and Y read in place (given transposed): GRAD_ROWS
    rows of dA packed at a time, each chunk's rows from h0 or from Y only, each
    added into dW. same: dAH is dAX (packed once)."""
    T, B, I = x.shape
    H = h0.shape[1]
    N = dAX.shape[2]
    TB = T * B
    U = lanes(Pk)
    dAX2, dAH2 = dAX.reshape(TB, N), dAH.reshape(TB, N)
    x1, h01, y1 = x.reshape(-1), h0.reshape(-1), y.reshape(-1)
    PX = Pk[:GRAD_ROWS * N]
    PH = PX if same else Pk[GRAD_ROWS * N:]
    k0 = 0
    while k0 < TB:
        K = min(k0 + GRAD_ROWS, B if k0 < B else TB) - k0
        mode = START_ZERO if k0 == 0 else START_C
        pack_rows(dAX2, k0, K, PX, q0, q1)
        panel_gemm(I, K, q1 - q0, x1, k0 * I, 1, I, PX, q0 * GRAD_ROWS * U, GRAD_ROWS * U,
                   dWx.reshape(-1), q0 * U, N, U, mode, PX, 0)
        if not same:
            pack_rows(dAH2, k0, K, PH, q0, q1)
        hp, at = (h01, k0 * H) if k0 < B else (y1, (k0 - B) * H)
        panel_gemm(H, K, q1 - q0, hp, at, 1, H, PH, q0 * GRAD_ROWS * U, GRAD_ROWS * U,
                   dWh.reshape(-1), q0 * U, N, U, mode, PH, 0)
        k0 += K


@njit(parallel=True, **JIT)
def weight_grads(x, h0, y, Wx, dAX, dAH, n_threads):
    """6. dWx = X.T dAX;  dWh = [h0; Y[:-1]].T dAH;  dx = dAX Wx.T over all T*B rows.

    dAX, dAH (T, B, G*H): gradients of the input and recurrent pre-activations
    (one array for the RNN and LSTM). Where the G*H columns are whole panels and
    a thread's columns of dWx and dWh fit GRAD_MAX_BYTES, dWx and dWh run on the
    panel kernel with the threads splitting their columns (grad_columns), and dx,
    where I is whole panels, on Wx's panels with the threads splitting rows.
    Otherwise np.dot, rows split across threads as partial sums added after.
    """
    T, B, I = x.shape
    H = h0.shape[1]
    N = dAX.shape[2]
    rows = T * B
    U = lanes(x)
    dWx = np.empty((I, N), dtype=x.dtype)
    dWh = np.empty((H, N), dtype=x.dtype)
    dx = np.empty((T, B, I), dtype=x.dtype)
    x2, dAX2, dAH2, dx2 = x.reshape(rows, I), dAX.reshape(rows, N), dAH.reshape(rows, N), \
        dx.reshape(rows, I)
    nq = N // U
    P = max(1, min(n_threads, nq))
    columns = N % U == 0 and max(I, H) * (N // P) * x.itemsize <= GRAD_MAX_BYTES
    same = dAX.ctypes.data == dAH.ctypes.data
    # dA's panels, and dAH's after them where it is another array
    Pk = np.empty((1 if same else 2) * GRAD_ROWS * N if columns else 0, dtype=x.dtype)
    if not columns:
        h_prev = np.empty((rows, H), dtype=x.dtype)
        y2 = y.reshape(rows, H)
        for r in range(rows):
            copy_into(h_prev[r], h0[r] if r < B else y2[r - B])
        np.dot(x2.T, dAX2, dWx)
        np.dot(h_prev.T, dAH2, dWh)
    whole = I % U == 0
    WxTp = np.empty(I * N if whole else 0, dtype=x.dtype)
    if whole:
        pack_unit_blocks(Wx, WxTp, 0, I // U)
    # one parallel loop (as input_projection): thread p's columns of dWx and dWh,
    # then its rows of dx
    for p in prange(n_threads):
        if columns and p < P:
            grad_columns(x, h0, y, dAX, dAH, same, dWx, dWh, Pk, span_lo(nq, P, p),
                         span_lo(nq, P, p + 1))
        lo, hi = span_lo(rows, n_threads, p), span_lo(rows, n_threads, p + 1)
        if whole:
            rows_times_panels(dAX2, lo, hi, WxTp, dx2, WxTp, START_ZERO)
        elif hi > lo:
            np.dot(dAX2[lo:hi], Wx.T, dx2[lo:hi])
    return dx, dWx, dWh
