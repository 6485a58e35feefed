# cython: language_level=3
"""tanh RNN forward and BPTT kernels, float32 and float64.

Same numbers as fastlstm.reference.rnn_forward / rnn_backward, whose steps carry
the same numbers; the schedule is the one of _lstm.pyx with a single gate block
(docs/DESIGN.md, "The schedule"):
  forward  1. A = X Wx + b, one GEMM, written into y
           2. per step: S = h_{t-1} Wh;  3. h_t = tanh(A_t + S), in place in y
  backward 4. per step dA_t = (dh_t + dy_t)(1 - h_t^2), summed into db
           5. dh_{t-1} = dA_t Wh.T
           6. dWx, dWh, dx single GEMMs after the loop
Each time loop runs in one parallel region, one barrier per step. Thread p owns
the hidden units [j0, j1), whole blocks of U (one SIMD vector), and packs Wh's
columns (forward) and rows (backward) for them into panels before its first step
(_common.pxd).
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport parallel

from _common cimport (sequence_work, UnitSpan, my_units, fl_team_barrier, tanh_, input_projection,
                      panel_units, padded_units, block_threads,
                      step_gemm, step_grad_gemm, weight_grads,
                      backward_scratch, add_row, step_projection, running, finish_step,
                      Bf16, Bf16Grads, fl_bf2, bf16_inputs, pack_recurrent,
                      pack_transposed, round_state, round_grads, StepWeights, step_view,
                      step_room, step_pairs, one_step_gemm)

from fastlstm._buffers import empty, zeros
from fastlstm._cy import sibling
from fastlstm._rows import running_counts
from fastlstm._threads import single_threaded_blas, team_size

_bf16 = sibling(__name__, "_bf16")
grad_operands, operands = _bf16.grad_operands, _bf16.operands
step_weights = sibling(__name__, "_panels").step_weights


cdef inline void _tanh_row(floating* a, const floating* s, Py_ssize_t n) noexcept nogil:
    """a = tanh(a + s) over n units."""
    cdef Py_ssize_t j
    for j in range(n):
        a[j] = tanh_(a[j] + s[j])


cdef inline void _tanh_row_backward(const floating* h, const floating* dh,
                                    const floating* dy, floating* da, floating* db,
                                    Py_ssize_t n) noexcept nogil:
    """da = (dh + dy) * (1 - h^2) over n units, added to db."""
    cdef Py_ssize_t j
    cdef floating one = 1
    for j in range(n):
        da[j] = (dh[j] + dy[j]) * (one - h[j] * h[j])
    add_row(db, da, n)


def rnn_forward(const floating[:, :, ::1] x, const floating[:, ::1] Wx,
                const floating[:, ::1] Wh, const floating[::1] b,
                const floating[:, ::1] h0, bint cache=True, lengths=None,
                precision=None):
    """x (T, B, I), Wx (I, H), Wh (H, H), b (H,), h0 (B, H); lengths (B,) sorted
    longest first, 0 <= lengths <= T, or None; precision None or "bf16" (as
    lstm_forward's) -> y (T, B, H), hT, cache. The loop
    keeps nothing beside y, which the cache holds (None without cache); each step
    runs the rows still running.

    Shapes are trusted (all sizes >= 1): fastlstm.ops checks them.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    mode, x, Wx, Wh, xb, hb = operands(precision, x.base, Wx.base, Wh.base, h0.base)
    cdef const fl_bf2[::1] xb_v = xb
    cdef fl_bf2[::1] hb_v = hb
    cdef Bf16 bf = Bf16(mode, &xb_v[0], &hb_v[0], B)
    y = empty((T, B, H), dtype)
    cdef floating[:, :, ::1] y_v = y
    cdef Py_ssize_t Hp = padded_units(H, panel_units(&Wh[0, 0]))
    cdef floating[::1] Whp = empty(max(H * Hp, I * H), dtype)
    cdef floating[::1] S = empty(B * Hp, dtype)
    hT = np.array(h0)   # rows of length 0 keep their state
    cdef floating[:, ::1] hT_v = hT
    counts = running_counts(lengths, T, B)
    cdef const Py_ssize_t[::1] active_v = counts
    cdef const Py_ssize_t* active = NULL if counts is None else &active_v[0]
    cdef int nt = team_size(sequence_work(T, B, I, H, 1))
    with single_threaded_blas(), nogil:
        _forward(x, Wx, Wh, b, h0, Whp, S, y_v, hT_v, active, nt, &bf)
    if not cache:
        return y, hT, None
    saved = dict(x=x.base, Wx=Wx.base, Wh=Wh.base, h0=h0.base, y=y, lengths=lengths,
                 precision=precision)
    return y, hT, saved


cdef void _forward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                   const floating[:, ::1] Wx,        # IN  (I, H)
                   const floating[:, ::1] Wh,        # IN  (H, H)
                   const floating[::1] b,            # IN  (H,)
                   const floating[:, ::1] h0,        # IN  (B, H)
                   floating[::1] Whp,                # OUT (max(H*Hp, I*H),), scratch: Wx's
                                                     # panels, then Wh's
                   floating[::1] S,                  # OUT (B*Hp,), h_{t-1} Wh, scratch
                   floating[:, :, ::1] y,            # OUT (T, B, H), also holds A
                   floating[:, ::1] hT,              # OUT (B, H), each row at its end
                   const Py_ssize_t* active,         # IN  (T,) rows running, or NULL
                   int n_threads,
                   const Bf16* bf) noexcept nogil:   # IN  bf16's mode and operands
    """The steps on the rows still running (the first active[t] at step t: the rows
    are sorted by length)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t U = panel_units(&Wh[0, 0])
    cdef UnitSpan u
    cdef Py_ssize_t t, r, n, Bt
    cdef const floating* h_prev
    cdef int P = block_threads(B, H, 1, U, n_threads)
    # 1. A = X Wx + b over the running rows, written into y and turned into h in place
    input_projection(&x[0, 0, 0], &Wx[0, 0], &b[0], &y[0, 0, 0], &Whp[0], T, B, I, H,
                     active, n_threads, True, bf.mode, bf16_inputs(bf, 0, B, I))
    with parallel(num_threads=P):
        u = my_units(H, U)
        n = (u.q1 - u.q0) * U
        pack_recurrent(&Wh[0, 0], &Whp[0], H, 1, u.q0, u.q1, bf)
        for t in range(T):
            Bt = running(active, t, B)
            h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            # 2. S = h_{t-1} Wh for the thread's units;  3. h_t = tanh(A_t + S)
            step_gemm(h_prev, &Whp[0], &S[B * u.j0], Bt, H, 1, u.q0, u.q1, bf, t)
            for r in range(Bt):
                _tanh_row(&y[t, r, u.j0], &S[B * u.j0 + r * n], u.j1 - u.j0)
            round_state(bf, t, &y[t, 0, 0], Bt, H, u.j0, u.j1)
            finish_step(active, t, T, B, H, u.j0, u.j1, &y[t, 0, 0], NULL, &hT[0, 0], NULL)
            # step t+1 reads all of h_t
            fl_team_barrier()


def rnn_step_weights(const floating[:, ::1] Wx, const floating[:, ::1] Wh,
                     const floating[::1] b, precision=None):
    """Wx (I, H), Wh (H, H), b (H,) packed once for rnn_step, in precision (as
    rnn_forward's)."""
    return step_weights(Wx, Wh, b, 1, precision)


def rnn_step(tuple weights, const floating[:, ::1] x, const floating[:, ::1] h,
             floating[:, ::1] h_next):
    """One step on the weights of rnn_step_weights: x (B, I) and h (B, H) give
    h_next (B, H). The same numbers as that step of rnn_forward."""
    cdef StepWeights w = step_view(weights, weights[0], weights[2])
    cdef const floating[::1] bp = weights[1]
    cdef Py_ssize_t B = x.shape[0], I = x.shape[1], H = h.shape[1], Np = bp.shape[0]
    cdef Py_ssize_t U = panel_units(&x[0, 0])
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] A = np.empty((B, Np), dtype)
    cdef floating[::1] S = np.empty(B * Np, dtype)
    cdef int P = block_threads(B, H, 1, U, team_size(sequence_work(1, B, I, H, 1)))
    cdef fl_bf2[::1] room = np.empty(step_room(&w, P, B, I, H), np.uint32)
    cdef fl_bf2* xb
    cdef UnitSpan u
    cdef Py_ssize_t r, n, j
    with nogil, parallel(num_threads=P):
        xb = step_pairs(&w, &room[0], &x[0, 0], &h[0, 0], B, I, H)
        # 1. A = x Wx + b for the thread's columns, which are its own units (one
        # gate block): no barrier before the tanh reads them
        step_projection(&x[0, 0], w.Wxp, &bp[0], &A[0, 0], B, I, Np, w.mode, xb)
        u = my_units(H, U)
        n = (u.q1 - u.q0) * U
        # 2. S = h Wh for the thread's units;  3. h_next = tanh(A + S)
        one_step_gemm(&h[0, 0], &w, xb, &S[B * u.j0], B, I, H, 1, u.q0, u.q1)
        for r in range(B):
            _tanh_row(&A[r, u.j0], &S[B * u.j0 + r * n], u.j1 - u.j0)
            for j in range(u.j0, u.j1):
                h_next[r, j] = A[r, j]


def rnn_backward(dict cache, const floating[:, :, ::1] dy, const floating[:, ::1] dhT):
    """dy (T, B, H), dhT (B, H) -> dx, dWx, dWh, db, dh0."""
    cdef const floating[:, :, ::1] x = cache["x"]
    cdef const floating[:, ::1] Wx = cache["Wx"]
    cdef const floating[:, ::1] Wh = cache["Wh"]
    cdef const floating[:, ::1] h0 = cache["h0"]
    cdef const floating[:, :, ::1] y = cache["y"]
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    dx = empty((T, B, I), dtype)
    dWx = empty((I, H), dtype)
    dWh = empty((H, H), dtype)
    db = zeros(H, dtype)
    cdef Py_ssize_t Hp = padded_units(H, panel_units(&Wh[0, 0]))
    dh = zeros((B, Hp), dtype)
    dh[:, :H] = dhT
    cdef floating[::1] WhTp = empty(backward_scratch(I, Hp, H), dtype)
    dA = empty((T, B, H), dtype)
    cdef floating[:, :, ::1] dA_v, dx_v
    cdef floating[:, ::1] dh_v, dWx_v, dWh_v
    cdef floating[::1] db_v
    dA_v, dx_v, dh_v, dWx_v, dWh_v, db_v = dA, dx, dh, dWx, dWh, db
    counts = running_counts(cache.get("lengths"), T, B)
    cdef const Py_ssize_t[::1] active_v = counts
    cdef const Py_ssize_t* active = NULL if counts is None else &active_v[0]
    cdef int nt = team_size(2 * sequence_work(T, B, I, H, 1))
    mode, hw0, yw, dAb, dAXb, rows = grad_operands(cache, 1, nt)
    cdef const floating[:, ::1] hw0_v = hw0
    cdef const floating[:, :, ::1] yw_v = yw
    cdef fl_bf2[::1] dAb_v = dAb, dAXb_v = dAXb, rows_v = rows
    cdef Bf16Grads bg = Bf16Grads(mode, &dAb_v[0], &dAXb_v[0], &rows_v[0], B)
    with single_threaded_blas(), nogil:
        _backward(x, Wx, Wh, h0, y, dy, WhTp, dA_v, dh_v, dx_v, dWx_v, dWh_v, db_v, active,
                  nt, hw0_v, yw_v, &bg)
    return dx, dWx, dWh, db, np.ascontiguousarray(dh[:, :H])


cdef void _backward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                    const floating[:, ::1] Wx,        # IN  (I, H)
                    const floating[:, ::1] Wh,        # IN  (H, H)
                    const floating[:, ::1] h0,        # IN  (B, H)
                    const floating[:, :, ::1] y,      # IN  (T, B, H)
                    const floating[:, :, ::1] dy,     # IN  (T, B, H)
                    floating[::1] WhTp,               # OUT (backward_scratch(I, Hp, H),),
                                                      # scratch: Wh's panels, then weight_grads'
                    floating[:, :, ::1] dA,           # OUT (T, B, H), scratch
                    floating[:, ::1] dh,              # IN dhT, OUT dh0 (B, Hp), padded
                    floating[:, :, ::1] dx,           # OUT (T, B, I)
                    floating[:, ::1] dWx,             # OUT (I, H)
                    floating[:, ::1] dWh,             # OUT (H, H)
                    floating[::1] db,                 # OUT (H,), zeroed
                    const Py_ssize_t* active,         # IN  (T,) rows running, or NULL
                    int n_threads,
                    const floating[:, ::1] hw0,       # IN  h0 (B, H) for dWh: with bf16
                    const floating[:, :, ::1] yw,     # IN  y (T, B, H) rounded, else h0, y
                    const Bf16Grads* bg) noexcept nogil:   # IN  bf16's mode, dA's pairs
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t U = panel_units(&Wh[0, 0])
    cdef UnitSpan u
    cdef Py_ssize_t t, s, r
    cdef int P = block_threads(B, H, 1, U, n_threads)
    # Iteration t finishes step t with 5. (dh_{t-1} = dA_t Wh.T for the thread's
    # units) and starts step t-1, which needs only those units: one barrier per step.
    with parallel(num_threads=P):
        u = my_units(H, U)
        pack_transposed(&Wh[0, 0], &WhTp[0], H, 1, u.q0, u.q1, bg)
        for t in range(T, -1, -1):
            if t < T:
                # 5. dh_{t-1} = dA_t Wh.T for the thread's units, of the rows that
                # ran step t (the others' dh passes their end unchanged)
                step_grad_gemm(&dA[t, 0, 0], &WhTp[0], &dh[0, 0], running(active, t, B),
                               H, H, u.q0, u.q1, False, bg, t)
            if t > 0:
                # 4. dA_{t-1} = (dh_{t-1} + dy_{t-1}) * (1 - h_{t-1}^2)
                s = t - 1
                for r in range(running(active, s, B)):
                    _tanh_row_backward(&y[s, r, u.j0], &dh[r, u.j0], &dy[s, r, u.j0],
                                       &dA[s, r, u.j0], &db[u.j0], u.j1 - u.j0)
                    round_grads(bg, bg.dA, s, r, &dA[s, r, 0], 1, H, u.j0, u.j1)
            # step t-1 reads all of dA_{t-1}
            fl_team_barrier()
    # 6. dWx, dWh, dx as GEMMs over all T*B rows
    weight_grads(&x[0, 0, 0], &hw0[0, 0], &yw[0, 0, 0], &Wx[0, 0], &dA[0, 0, 0],
                 &dA[0, 0, 0], &dWx[0, 0], &dWh[0, 0], &dx[0, 0, 0], &WhTp[0],
                 T, B, I, H, H, active, n_threads, bg)
