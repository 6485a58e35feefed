# cython: language_level=3
"""LSTM forward and BPTT kernels (gate blocks i, f, g, o), float32 and float64.

Same numbers as fastlstm.reference.lstm_forward / lstm_backward, whose steps
carry the same numbers, on another schedule (docs/DESIGN.md, "The schedule"):
  forward  1. A = X Wx + b over all T*B rows, one GEMM before the loop (a window
              of steps at a time without the cache)
           2. per step: S = h_{t-1} Wh on the thread's packed panels
           3. the gate pass: i, f, g, o from A_t + S, then c_t, h_t
  backward 4. per step, the gate pass backwards: dA_t (and dc_{t-1}) from dh_t +
              dy_t and dc_t; db is summed here, where each thread owns its
              units' columns
           5. dh_{t-1} = dA_t Wh.T on the thread's packed panels
           6. after the loop: dWx, dWh, dx as single GEMMs over all T*B rows
Each time loop runs in one parallel region, one barrier per step. Thread p owns
the hidden units [j0, j1), whole blocks of U (one SIMD vector): Wh's columns for
them (forward) and its rows (backward), which it packs into panels before its
first step (_common.pxd), and their part of c_t, h_t, dA_t, dh_{t-1}.
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport parallel

from _common cimport (sequence_work, UnitSpan, my_units, fl_team_barrier, sigmoid, tanh_,
                      input_projection, inference_window, panel_units, padded_units,
                      block_threads, step_gemm,
                      step_grad_gemm, weight_grads, backward_scratch, add_row,
                      step_projection, running, finish_step, Bf16, Bf16Grads, fl_bf2,
                      bf16_inputs, pack_recurrent, pack_transposed, round_state,
                      round_grads, StepWeights, step_view, step_room, step_pairs,
                      one_step_gemm)

from fastlstm._buffers import empty, zeros
from fastlstm._cy import sibling
from fastlstm._rows import running_counts
from fastlstm._threads import single_threaded_blas, team_size

_bf16 = sibling(__name__, "_bf16")
grad_operands, operands = _bf16.grad_operands, _bf16.operands
step_weights = sibling(__name__, "_panels").step_weights


cdef inline void _gates_row(floating* a, const floating* s, Py_ssize_t ns,
                            const floating* c_prev, floating* c, floating* h,
                            Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """3. The gate pass over n units of one batch row. a points at unit j0 of the
    row's x_t Wx + b (blocks H apart), s at the thread's h_{t-1} Wh (blocks ns
    apart); a gets the activations [i, f, g, o], c and h get c_t, h_t."""
    cdef Py_ssize_t j
    cdef floating i_, f_, g_, o_
    for j in range(n):
        i_ = sigmoid(a[j] + s[j])
        f_ = sigmoid(a[H + j] + s[ns + j])
        g_ = tanh_(a[2 * H + j] + s[2 * ns + j])
        o_ = sigmoid(a[3 * H + j] + s[3 * ns + j])
        a[j] = i_
        a[H + j] = f_
        a[2 * H + j] = g_
        a[3 * H + j] = o_
        c[j] = f_ * c_prev[j] + i_ * g_
        h[j] = o_ * tanh_(c[j])


cdef inline void _gates_row_backward(const floating* a, const floating* c,
                                     const floating* c_prev, const floating* dh,
                                     const floating* dy, floating* dc, floating* da,
                                     floating* db, Py_ssize_t n,
                                     Py_ssize_t H) noexcept nogil:
    """4. The gate pass backwards over n units of one batch row: from the
    activations a (blocks H apart), c_t, c_{t-1}, dh_t (without dy_t), dy_t and
    dc_t, write dA_t into da (blocks H apart), add it to db (blocks H apart) and
    write dc_{t-1} into dc. The names are the reference's."""
    cdef Py_ssize_t j, k
    cdef floating one = 1, i_, f_, g_, o_, tanh_c, dh_, dc_, do_, di_, df_, dg_
    for j in range(n):
        i_ = a[j]
        f_ = a[H + j]
        g_ = a[2 * H + j]
        o_ = a[3 * H + j]
        tanh_c = tanh_(c[j])
        dh_ = dh[j] + dy[j]
        do_ = dh_ * tanh_c
        dc_ = dc[j] + dh_ * o_ * (one - tanh_c * tanh_c)
        di_ = dc_ * g_
        df_ = dc_ * c_prev[j]
        dg_ = dc_ * i_
        da[j] = di_ * i_ * (one - i_)
        da[H + j] = df_ * f_ * (one - f_)
        da[2 * H + j] = dg_ * (one - g_ * g_)
        da[3 * H + j] = do_ * o_ * (one - o_)
        dc[j] = dc_ * f_
    for k in range(4):
        add_row(db + k * H, da + k * H, n)


def lstm_forward(const floating[:, :, ::1] x, const floating[:, ::1] Wx,
                 const floating[:, ::1] Wh, const floating[::1] b,
                 const floating[:, ::1] h0, const floating[:, ::1] c0, bint cache=True,
                 lengths=None, precision=None):
    """x (T, B, I), Wx (I, 4H), Wh (H, 4H), b (4H,), h0, c0 (B, H); lengths (B,)
    sorted longest first, 0 <= lengths <= T, or None; precision None or "bf16"
    (float32 only: the products of x_t Wx and h_{t-1} Wh on bf16 operands, and
    the cache holds x, Wx, Wh rounded to bf16).

    Returns y (T, B, H), hT, cT (B, H), cache (see fastlstm.reference). Without
    cache, the cache is None and the loop keeps the gates and c of a window of
    steps only (_common.pxd, inference_window). Rows past their length cost no
    work: each step runs the rows still running only.
    Shapes are trusted (all sizes >= 1): fastlstm.ops checks them.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    mode, x, Wx, Wh, xb, hb = operands(precision, x.base, Wx.base, Wh.base, h0.base)
    cdef const fl_bf2[::1] xb_v = xb
    cdef fl_bf2[::1] hb_v = hb
    cdef Bf16 bf = Bf16(mode, &xb_v[0], &hb_v[0], B)
    cdef Py_ssize_t W = T if cache else inference_window(T, B * 4 * H)
    y = empty((T, B, H), dtype)
    c = empty((W, B, H), dtype)
    gates = empty((W, B, 4 * H), dtype)
    hT, cT = np.array(h0), np.array(c0)   # rows of length 0 keep their state
    cdef floating[:, :, ::1] y_v, c_v, gates_v
    cdef floating[:, ::1] hT_v = hT, cT_v = cT
    y_v, c_v, gates_v = y, c, gates
    cdef Py_ssize_t Hp = padded_units(H, panel_units(&Wh[0, 0]))
    cdef floating[::1] Wxp = empty(I * 4 * H, dtype)
    cdef floating[::1] Whp = empty(H * 4 * Hp, dtype)
    cdef floating[::1] S = empty(B * 4 * Hp, dtype)
    counts = running_counts(lengths, T, B)
    cdef const Py_ssize_t[::1] active_v = counts
    cdef const Py_ssize_t* active = NULL if counts is None else &active_v[0]
    cdef int nt = team_size(sequence_work(T, B, I, H, 4))
    with single_threaded_blas(), nogil:
        _forward(x, Wx, Wh, b, h0, c0, Wxp, Whp, S, y_v, c_v, gates_v, hT_v, cT_v, active,
                 nt, &bf)
    if not cache:
        return y, hT, cT, None
    saved = dict(x=x.base, Wx=Wx.base, Wh=Wh.base, h0=h0.base, c0=c0.base,
                 y=y, c=c, gates=gates, lengths=lengths,
                 precision=precision)
    return y, hT, cT, saved


cdef void _forward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                   const floating[:, ::1] Wx,        # IN  (I, 4H)
                   const floating[:, ::1] Wh,        # IN  (H, 4H)
                   const floating[::1] b,            # IN  (4H,)
                   const floating[:, ::1] h0,        # IN  (B, H)
                   const floating[:, ::1] c0,        # IN  (B, H)
                   floating[::1] Wxp,                # OUT (I*4H,), scratch: Wx's panels
                   floating[::1] Whp,                # OUT (H*4Hp,), scratch: Wh's panels
                   floating[::1] S,                  # OUT (B*4Hp,), h_{t-1} Wh, scratch
                   floating[:, :, ::1] y,            # OUT (T, B, H)
                   floating[:, :, ::1] c,            # OUT (W, B, H): c_t at t % W
                   floating[:, :, ::1] gates,        # OUT (W, B, 4H): [i, f, g, o] of
                                                     # step t at t % W
                   floating[:, ::1] hT,              # OUT (B, H), each row at its end
                   floating[:, ::1] cT,              # OUT (B, H), likewise
                   const Py_ssize_t* active,         # IN  (T,) rows running, or NULL
                   int n_threads,
                   const Bf16* bf) noexcept nogil:   # IN  bf16's mode and operands
    """The steps in windows of W = gates.shape[0] steps (all T where the cache is
    kept): each projects its inputs, then runs its steps, on the rows still
    running (the first active[t] at step t: the rows are sorted by length)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t W = gates.shape[0], U = panel_units(&Wh[0, 0])
    cdef UnitSpan u
    cdef Py_ssize_t t0, t1, t, r, n, Bt
    cdef const floating* h_prev
    cdef const floating* c_prev
    cdef int P = block_threads(B, H, 4, U, n_threads)
    t0 = 0
    while t0 < T:
        t1 = min(T, t0 + W)
        # 1. A = X Wx + b over the window's running rows
        input_projection(&x[t0, 0, 0], &Wx[0, 0], &b[0], &gates[0, 0, 0], &Wxp[0],
                         t1 - t0, B, I, 4 * H, NULL if active == NULL else active + t0,
                         n_threads, t0 == 0, bf.mode, bf16_inputs(bf, t0, B, I))
        with parallel(num_threads=P):
            u = my_units(H, U)
            n = (u.q1 - u.q0) * U
            if t0 == 0:
                # the panels' layout is the same whoever packs them, so a later
                # window's team may use them as they are
                pack_recurrent(&Wh[0, 0], &Whp[0], H, 4, u.q0, u.q1, bf)
            for t in range(t0, t1):
                Bt = running(active, t, B)
                h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
                c_prev = &c0[0, 0] if t == 0 else &c[(t - 1) % W, 0, 0]
                # 2. S = h_{t-1} Wh for the thread's units, on its packed panels
                step_gemm(h_prev, &Whp[0], &S[B * 4 * u.j0], Bt, H, 4, u.q0, u.q1, bf, t)
                # 3. the gate pass
                for r in range(Bt):
                    _gates_row(&gates[t - t0, r, u.j0], &S[B * 4 * u.j0 + r * 4 * n], n,
                               &c_prev[r * H + u.j0], &c[t % W, r, u.j0], &y[t, r, u.j0],
                               u.j1 - u.j0, H)
                round_state(bf, t, &y[t, 0, 0], Bt, H, u.j0, u.j1)
                finish_step(active, t, T, B, H, u.j0, u.j1, &y[t, 0, 0], &c[t % W, 0, 0],
                            &hT[0, 0], &cT[0, 0])
                # step t+1 reads all of h_t
                fl_team_barrier()
        t0 = t1


def lstm_step_weights(const floating[:, ::1] Wx, const floating[:, ::1] Wh,
                      const floating[::1] b, precision=None):
    """Wx (I, 4H), Wh (H, 4H), b (4H,) packed once for lstm_step, in precision
    (as lstm_forward's)."""
    return step_weights(Wx, Wh, b, 4, precision)


def lstm_step(tuple weights, const floating[:, ::1] x, const floating[:, ::1] h,
              floating[:, ::1] c, floating[:, ::1] h_next):
    """One step on the weights of lstm_step_weights: x (B, I) and h (B, H) give
    h_next (B, H); c (B, H) goes from c_{t-1} to c_t in place. The same numbers as
    that step of lstm_forward."""
    cdef StepWeights w = step_view(weights, weights[0], weights[2])
    cdef const floating[::1] bp = weights[1]
    cdef Py_ssize_t B = x.shape[0], I = x.shape[1], H = h.shape[1], Np = bp.shape[0]
    cdef Py_ssize_t U = panel_units(&x[0, 0]), Hp = padded_units(H, U)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] A = np.empty((B, Np), dtype)
    cdef floating[::1] S = np.empty(B * 4 * Hp, dtype)
    cdef int P = block_threads(B, H, 4, U, team_size(sequence_work(1, B, I, H, 4)))
    cdef fl_bf2[::1] room = np.empty(step_room(&w, P, B, I, H), np.uint32)
    cdef fl_bf2* xb
    cdef UnitSpan u
    cdef Py_ssize_t r, n
    with nogil, parallel(num_threads=P):
        xb = step_pairs(&w, &room[0], &x[0, 0], &h[0, 0], B, I, H)
        # 1. A = x Wx + b, the threads splitting its columns
        step_projection(&x[0, 0], w.Wxp, &bp[0], &A[0, 0], B, I, Np, w.mode, xb)
        # each thread's gates read all four gate blocks of its units
        fl_team_barrier()
        u = my_units(H, U)
        n = (u.q1 - u.q0) * U
        # 2. S = h Wh for the thread's units; 3. the gate pass, as in _forward
        one_step_gemm(&h[0, 0], &w, xb, &S[B * 4 * u.j0], B, I, H, 4,
                      u.q0, u.q1)
        for r in range(B):
            _gates_row(&A[r, u.j0], &S[B * 4 * u.j0 + r * 4 * n], n, &c[r, u.j0],
                       &c[r, u.j0], &h_next[r, u.j0], u.j1 - u.j0, H)


def lstm_backward(dict cache, const floating[:, :, ::1] dy, const floating[:, ::1] dhT,
                  const floating[:, ::1] dcT):
    """dy (T, B, H), dhT, dcT (B, H) -> dx, dWx, dWh, db, dh0, dc0."""
    cdef const floating[:, :, ::1] x = cache["x"]
    cdef const floating[:, ::1] Wx = cache["Wx"]
    cdef const floating[:, ::1] Wh = cache["Wh"]
    cdef const floating[:, ::1] h0 = cache["h0"]
    cdef const floating[:, ::1] c0 = cache["c0"]
    cdef const floating[:, :, ::1] y = cache["y"]
    cdef const floating[:, :, ::1] c = cache["c"]
    cdef const floating[:, :, ::1] gates = cache["gates"]
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    dx = empty((T, B, I), dtype)
    dWx = empty((I, 4 * H), dtype)
    dWh = empty((H, 4 * H), dtype)
    db = zeros(4 * H, dtype)
    cdef Py_ssize_t Hp = padded_units(H, panel_units(&Wh[0, 0]))
    dh = zeros((B, Hp), dtype)
    dh[:, :H] = dhT
    dc = np.array(dcT, dtype=dtype)
    dA = empty((T, B, 4 * H), dtype)
    cdef floating[:, :, ::1] dA_v, dx_v
    cdef floating[:, ::1] dh_v, dc_v, dWx_v, dWh_v
    cdef floating[::1] db_v
    cdef floating[::1] WhTp = empty(backward_scratch(I, Hp, 4 * H), dtype)
    dA_v, dx_v, dh_v, dc_v, dWx_v, dWh_v, db_v = dA, dx, dh, dc, dWx, dWh, db
    counts = running_counts(cache.get("lengths"), T, B)
    cdef const Py_ssize_t[::1] active_v = counts
    cdef const Py_ssize_t* active = NULL if counts is None else &active_v[0]
    cdef int nt = team_size(2 * sequence_work(T, B, I, H, 4))
    mode, hw0, yw, dAb, dAXb, rows = grad_operands(cache, 4, nt)
    cdef const floating[:, ::1] hw0_v = hw0
    cdef const floating[:, :, ::1] yw_v = yw
    cdef fl_bf2[::1] dAb_v = dAb, dAXb_v = dAXb, rows_v = rows
    cdef Bf16Grads bg = Bf16Grads(mode, &dAb_v[0], &dAXb_v[0], &rows_v[0], B)
    with single_threaded_blas(), nogil:
        _backward(x, Wx, Wh, h0, c0, y, c, gates, dy, WhTp, dA_v, dh_v, dc_v, dx_v, dWx_v,
                  dWh_v, db_v, active, nt, hw0_v, yw_v, &bg)
    return dx, dWx, dWh, db, np.ascontiguousarray(dh[:, :H]), dc


cdef void _backward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                    const floating[:, ::1] Wx,        # IN  (I, 4H)
                    const floating[:, ::1] Wh,        # IN  (H, 4H)
                    const floating[:, ::1] h0,        # IN  (B, H)
                    const floating[:, ::1] c0,        # IN  (B, H)
                    const floating[:, :, ::1] y,      # IN  (T, B, H)
                    const floating[:, :, ::1] c,      # IN  (T, B, H)
                    const floating[:, :, ::1] gates,  # IN  (T, B, 4H)
                    const floating[:, :, ::1] dy,     # IN  (T, B, H)
                    floating[::1] WhTp,               # OUT (backward_scratch(I, Hp, 4H),),
                                                      # scratch: Wh's panels, then weight_grads'
                    floating[:, :, ::1] dA,           # OUT (T, B, 4H), scratch
                    floating[:, ::1] dh,              # IN dhT, OUT dh0 (B, Hp), padded
                    floating[:, ::1] dc,              # IN dcT, OUT dc0 (B, H)
                    floating[:, :, ::1] dx,           # OUT (T, B, I)
                    floating[:, ::1] dWx,             # OUT (I, 4H)
                    floating[:, ::1] dWh,             # OUT (H, 4H)
                    floating[::1] db,                 # OUT (4H,), zeroed
                    const Py_ssize_t* active,         # IN  (T,) rows running, or NULL
                    int n_threads,
                    const floating[:, ::1] hw0,       # IN  h0 (B, H) for dWh: with bf16
                    const floating[:, :, ::1] yw,     # IN  y (T, B, H) rounded, else h0, y
                    const Bf16Grads* bg) noexcept nogil:   # IN  bf16's mode, dA's pairs
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t U = panel_units(&Wh[0, 0])
    cdef UnitSpan u
    cdef Py_ssize_t N = 4 * H, t, s, r
    cdef const floating* c_prev
    cdef int P = block_threads(B, H, 4, U, n_threads)
    # Iteration t (T down to 0) finishes step t with 5., dh_{t-1} = dA_t Wh.T for the
    # thread's units, then starts step t-1 with 4., which needs only those units of
    # dh_{t-1}: one barrier per step.
    with parallel(num_threads=P):
        u = my_units(H, U)
        pack_transposed(&Wh[0, 0], &WhTp[0], H, 4, u.q0, u.q1, bg)
        for t in range(T, -1, -1):
            if t < T:
                # 5. dh_{t-1} = dA_t Wh.T for the thread's units, of the rows that
                # ran step t (the others' dh passes their end unchanged)
                step_grad_gemm(&dA[t, 0, 0], &WhTp[0], &dh[0, 0], running(active, t, B),
                               H, N, u.q0, u.q1, False, bg, t)
            if t > 0:
                # 4. dA_{t-1} from dh_{t-1}, dc_{t-1}
                s = t - 1
                c_prev = &c0[0, 0] if s == 0 else &c[s - 1, 0, 0]
                for r in range(running(active, s, B)):
                    _gates_row_backward(&gates[s, r, u.j0], &c[s, r, u.j0],
                                        &c_prev[r * H + u.j0], &dh[r, u.j0],
                                        &dy[s, r, u.j0], &dc[r, u.j0], &dA[s, r, u.j0],
                                        &db[u.j0], u.j1 - u.j0, H)
                    round_grads(bg, bg.dA, s, r, &dA[s, r, 0], 4, H, u.j0, u.j1)
            # step t-1 reads all of dA_{t-1}
            fl_team_barrier()
    # 6. dWx, dWh, dx as GEMMs over all T*B rows
    weight_grads(&x[0, 0, 0], &hw0[0, 0], &yw[0, 0, 0], &Wx[0, 0], &dA[0, 0, 0],
                 &dA[0, 0, 0], &dWx[0, 0], &dWh[0, 0], &dx[0, 0, 0], &WhTp[0],
                 T, B, I, H, 4 * H, active, n_threads, bg)
