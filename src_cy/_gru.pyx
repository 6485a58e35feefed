# cython: language_level=3
"""GRU forward and BPTT kernels (PyTorch semantics, gate blocks r, z, n, two biases),
float32 and float64.

Same numbers as fastlstm.reference.gru_forward / gru_backward, whose steps carry
the same numbers. The reset gate scales only the recurrent part of n, so the
recurrent product S goes to a buffer of its own instead of being added to the
input projection (docs/DESIGN.md, "The schedule"):
  forward  1. AX = X Wx + bx over all T*B rows, one GEMM before the loop (a window
              of steps at a time without the cache)
           2. per step: S = h_{t-1} Wh on the thread's packed panels
           3. the gate pass: r, z, n from AX_t, S + bh, then h_t
  backward 4. per step, the gate pass backwards: dAX_t, dAH_t and the direct term
              z * dh_t of dh_{t-1}; dbx, dbh are summed here, where each thread
              owns its units' columns
           5. dh_{t-1} += dAH_t Wh.T on the thread's packed panels
           6. after the loop: dWx, dWh, dx as single GEMMs over all T*B rows
Each time loop runs in one parallel region, one barrier per step. Thread p owns
the hidden units [j0, j1), whole blocks of U (one SIMD vector), and packs Wh's
columns (forward) and rows (backward) for them into panels before its first step
(_common.pxd).
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport parallel

from _common cimport (sequence_work, UnitSpan, my_units, fl_team_barrier, sigmoid, tanh_,
                      input_projection, inference_window, panel_units, padded_units,
                      block_threads,
                      step_gemm, step_grad_gemm,
                      weight_grads, backward_scratch, add_row, step_projection, running,
                      finish_step,
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


cdef inline void _gates_row(floating* a, const floating* ah, Py_ssize_t nah,
                            const floating* bh, const floating* h_prev, floating* hn,
                            floating* h, Py_ssize_t n, Py_ssize_t H) noexcept nogil:
    """3. The gate pass over n units of one batch row: a points at unit j0 of
    x Wx + bx (blocks H apart) and gets [r, z, n]; ah at the thread's h_{t-1} Wh
    (blocks nah apart); bh at unit j0 (blocks H apart); hn, h get h_{t-1} Wh_n +
    bh_n and h_t."""
    cdef Py_ssize_t j
    cdef floating one = 1, r_, z_, n_, hn_
    for j in range(n):
        r_ = sigmoid(a[j] + ah[j] + bh[j])
        z_ = sigmoid(a[H + j] + ah[nah + j] + bh[H + j])
        hn_ = ah[2 * nah + j] + bh[2 * H + j]
        n_ = tanh_(a[2 * H + j] + r_ * hn_)
        a[j] = r_
        a[H + j] = z_
        a[2 * H + j] = n_
        hn[j] = hn_
        h[j] = (one - z_) * n_ + z_ * h_prev[j]


cdef inline void _gates_row_backward(const floating* a, const floating* hn,
                                     const floating* h_prev, const floating* dy,
                                     floating* dh, floating* dax, floating* dah,
                                     floating* dbx, floating* dbh, Py_ssize_t n,
                                     Py_ssize_t H) noexcept nogil:
    """4. The gate pass backwards over n units of one batch row: from [r, z, n] in
    a (blocks H apart), hn, h_{t-1}, dy_t and dh_t, write dAX_t, dAH_t (blocks H
    apart), add them to dbx, dbh (blocks H apart) and write the direct term
    z * (dh_t + dy_t) of dh_{t-1} into dh. The names are the reference's."""
    cdef Py_ssize_t j, k
    cdef floating one = 1, r_, z_, n_, dh_, dn_, dz_, dan, dar, daz
    for j in range(n):
        r_ = a[j]
        z_ = a[H + j]
        n_ = a[2 * H + j]
        dh_ = dh[j] + dy[j]
        dn_ = dh_ * (one - z_)
        dz_ = dh_ * (h_prev[j] - n_)
        dan = dn_ * (one - n_ * n_)
        dar = dan * hn[j] * r_ * (one - r_)
        daz = dz_ * z_ * (one - z_)
        dax[j] = dar
        dax[H + j] = daz
        dax[2 * H + j] = dan
        dah[j] = dar
        dah[H + j] = daz
        dah[2 * H + j] = dan * r_
        dh[j] = dh_ * z_
    for k in range(3):
        add_row(dbx + k * H, dax + k * H, n)
        add_row(dbh + k * H, dah + k * H, n)


def gru_forward(const floating[:, :, ::1] x, const floating[:, ::1] Wx,
                const floating[:, ::1] Wh, const floating[::1] bx,
                const floating[::1] bh, const floating[:, ::1] h0, bint cache=True,
                lengths=None, precision=None):
    """x (T, B, I), Wx (I, 3H), Wh (H, 3H), bx, bh (3H,), h0 (B, H); lengths (B,)
    sorted longest first, 0 <= lengths <= T, or None; precision None or "bf16"
    (as lstm_forward's).

    Returns y (T, B, H), hT (B, H), cache (see fastlstm.reference). Without cache,
    the cache is None and the loop keeps the gates and hn of a window of steps
    only (_common.pxd, inference_window). Each step runs the rows still running.
    Shapes are trusted (all sizes >= 1): fastlstm.ops checks them.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    mode, x, Wx, Wh, xb, hb = operands(precision, x.base, Wx.base, Wh.base, h0.base)
    cdef const fl_bf2[::1] xb_v = xb
    cdef fl_bf2[::1] hb_v = hb
    cdef Bf16 bf = Bf16(mode, &xb_v[0], &hb_v[0], B)
    cdef Py_ssize_t W = T if cache else inference_window(T, B * 3 * H)
    y = empty((T, B, H), dtype)
    gates = empty((W, B, 3 * H), dtype)
    hn = empty((W, B, H), dtype)
    cdef Py_ssize_t Hp = padded_units(H, panel_units(&Wh[0, 0]))
    cdef floating[::1] Wxp = empty(I * 3 * H, dtype)
    cdef floating[::1] Whp = empty(H * 3 * Hp, dtype)
    cdef floating[::1] S = empty(B * 3 * Hp, dtype)
    cdef floating[:, :, ::1] y_v, gates_v, hn_v
    y_v, gates_v, hn_v = y, gates, hn
    hT = np.array(h0)   # rows of length 0 keep their state
    cdef floating[:, ::1] hT_v = hT
    counts = running_counts(lengths, T, B)
    cdef const Py_ssize_t[::1] active_v = counts
    cdef const Py_ssize_t* active = NULL if counts is None else &active_v[0]
    cdef int nt = team_size(sequence_work(T, B, I, H, 3))
    with single_threaded_blas(), nogil:
        _forward(x, Wx, Wh, bx, bh, h0, Wxp, Whp, S, y_v, gates_v, hn_v, hT_v, active, nt,
                 &bf)
    if not cache:
        return y, hT, None
    saved = dict(x=x.base, Wx=Wx.base, Wh=Wh.base, h0=h0.base, y=y, gates=gates, hn=hn,
                 lengths=lengths,
                 precision=precision)
    return y, hT, saved


cdef void _forward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                   const floating[:, ::1] Wx,        # IN  (I, 3H)
                   const floating[:, ::1] Wh,        # IN  (H, 3H)
                   const floating[::1] bx,           # IN  (3H,)
                   const floating[::1] bh,           # IN  (3H,)
                   const floating[:, ::1] h0,        # IN  (B, H)
                   floating[::1] Wxp,                # OUT (I*3H,), scratch: Wx's panels
                   floating[::1] Whp,                # OUT (H*3Hp,), scratch: Wh's panels
                   floating[::1] S,                  # OUT (B*3Hp,), h_{t-1} Wh, scratch
                   floating[:, :, ::1] y,            # OUT (T, B, H)
                   floating[:, :, ::1] gates,        # OUT (W, B, 3H): [r, z, n] of step t
                                                     # at t % W
                   floating[:, :, ::1] hn,           # OUT (W, B, H), likewise
                   floating[:, ::1] hT,              # OUT (B, H), each row at its end
                   const Py_ssize_t* active,         # IN  (T,) rows running, or NULL
                   int n_threads,
                   const Bf16* bf) noexcept nogil:   # IN  bf16's mode and operands
    """The steps in windows of W = gates.shape[0] steps (all T where the cache is
    kept): each projects its inputs, then runs its steps, on the rows still
    running (the first active[t] at step t: the rows are sorted by length)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t W = gates.shape[0], U = panel_units(&Wh[0, 0])
    cdef UnitSpan u
    cdef Py_ssize_t N = 3 * H, t0, t1, t, r, n, Bt
    cdef const floating* h_prev
    cdef int P = block_threads(B, H, 3, U, n_threads)
    t0 = 0
    while t0 < T:
        t1 = min(T, t0 + W)
        # 1. AX = X Wx + bx over the window's running rows
        input_projection(&x[t0, 0, 0], &Wx[0, 0], &bx[0], &gates[0, 0, 0], &Wxp[0],
                         t1 - t0, B, I, N, NULL if active == NULL else active + t0,
                         n_threads, t0 == 0, bf.mode, bf16_inputs(bf, t0, B, I))
        with parallel(num_threads=P):
            u = my_units(H, U)
            n = (u.q1 - u.q0) * U
            if t0 == 0:
                # the same layout whoever packs them (see _lstm.pyx)
                pack_recurrent(&Wh[0, 0], &Whp[0], H, 3, u.q0, u.q1, bf)
            for t in range(t0, t1):
                Bt = running(active, t, B)
                h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
                # 2. S = h_{t-1} Wh for the thread's units, on its packed panels
                step_gemm(h_prev, &Whp[0], &S[B * 3 * u.j0], Bt, H, 3, u.q0, u.q1, bf, t)
                # 3. the gate pass
                for r in range(Bt):
                    _gates_row(&gates[t - t0, r, u.j0], &S[B * 3 * u.j0 + r * 3 * n], n,
                               &bh[u.j0], &h_prev[r * H + u.j0], &hn[t - t0, r, u.j0],
                               &y[t, r, u.j0], u.j1 - u.j0, H)
                round_state(bf, t, &y[t, 0, 0], Bt, H, u.j0, u.j1)
                finish_step(active, t, T, B, H, u.j0, u.j1, &y[t, 0, 0], NULL, &hT[0, 0],
                            NULL)
                # step t+1 reads all of h_t
                fl_team_barrier()
        t0 = t1


def gru_step_weights(const floating[:, ::1] Wx, const floating[:, ::1] Wh,
                     const floating[::1] bx, const floating[::1] bh, precision=None):
    """Wx (I, 3H), Wh (H, 3H), bx, bh (3H,) packed once for gru_step, in
    precision (as gru_forward's)."""
    return step_weights(Wx, Wh, bx, 3, precision) + (np.array(bh),)


def gru_step(tuple weights, const floating[:, ::1] x, const floating[:, ::1] h,
             floating[:, ::1] h_next):
    """One step on the weights of gru_step_weights: x (B, I) and h (B, H) give
    h_next (B, H). The same numbers as that step of gru_forward."""
    cdef StepWeights w = step_view(weights, weights[0], weights[2])
    cdef const floating[::1] bxp = weights[1], bh = weights[4]
    cdef Py_ssize_t B = x.shape[0], I = x.shape[1], H = h.shape[1], Np = bxp.shape[0]
    cdef Py_ssize_t U = panel_units(&x[0, 0]), Hp = padded_units(H, U)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] A = np.empty((B, Np), dtype)
    cdef floating[::1] S = np.empty(B * 3 * Hp, dtype)
    cdef floating[:, ::1] hn = np.empty((B, H), dtype)
    cdef int P = block_threads(B, H, 3, U, team_size(sequence_work(1, B, I, H, 3)))
    cdef fl_bf2[::1] room = np.empty(step_room(&w, P, B, I, H), np.uint32)
    cdef fl_bf2* xb
    cdef UnitSpan u
    cdef Py_ssize_t r, n
    with nogil, parallel(num_threads=P):
        xb = step_pairs(&w, &room[0], &x[0, 0], &h[0, 0], B, I, H)
        # 1. AX = x Wx + bx, the threads splitting its columns
        step_projection(&x[0, 0], w.Wxp, &bxp[0], &A[0, 0], B, I, Np, w.mode, xb)
        # each thread's gates read all three gate blocks of its units
        fl_team_barrier()
        u = my_units(H, U)
        n = (u.q1 - u.q0) * U
        # 2. S = h Wh for the thread's units; 3. the gate pass, as in _forward
        one_step_gemm(&h[0, 0], &w, xb, &S[B * 3 * u.j0], B, I, H, 3,
                      u.q0, u.q1)
        for r in range(B):
            _gates_row(&A[r, u.j0], &S[B * 3 * u.j0 + r * 3 * n], n, &bh[u.j0],
                       &h[r, u.j0], &hn[r, u.j0], &h_next[r, u.j0], u.j1 - u.j0, H)


def gru_backward(dict cache, const floating[:, :, ::1] dy, const floating[:, ::1] dhT):
    """dy (T, B, H), dhT (B, H) -> dx, dWx, dWh, dbx, dbh, dh0."""
    cdef const floating[:, :, ::1] x = cache["x"]
    cdef const floating[:, ::1] Wx = cache["Wx"]
    cdef const floating[:, ::1] Wh = cache["Wh"]
    cdef const floating[:, ::1] h0 = cache["h0"]
    cdef const floating[:, :, ::1] y = cache["y"]
    cdef const floating[:, :, ::1] gates = cache["gates"]
    cdef const floating[:, :, ::1] hn = cache["hn"]
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    dx = empty((T, B, I), dtype)
    dWx = empty((I, 3 * H), dtype)
    dWh = empty((H, 3 * H), dtype)
    dbx = zeros(3 * H, dtype)
    dbh = zeros(3 * H, dtype)
    cdef Py_ssize_t Hp = padded_units(H, panel_units(&Wh[0, 0]))
    dh = zeros((B, Hp), dtype)
    dh[:, :H] = dhT
    cdef floating[::1] WhTp = empty(backward_scratch(I, Hp, 3 * H), dtype)
    cdef floating[:, :, ::1] dAX = empty((T, B, 3 * H), dtype)
    cdef floating[:, :, ::1] dAH = empty((T, B, 3 * H), dtype)
    cdef floating[:, :, ::1] dx_v
    cdef floating[:, ::1] dh_v, dWx_v, dWh_v
    cdef floating[::1] dbx_v, dbh_v
    dx_v, dh_v, dWx_v, dWh_v, dbx_v, dbh_v = dx, dh, dWx, dWh, dbx, dbh
    counts = running_counts(cache.get("lengths"), T, B)
    cdef const Py_ssize_t[::1] active_v = counts
    cdef const Py_ssize_t* active = NULL if counts is None else &active_v[0]
    cdef int nt = team_size(2 * sequence_work(T, B, I, H, 3))
    mode, hw0, yw, dAb, dAXb, rows = grad_operands(cache, 3, nt, True)
    cdef const floating[:, ::1] hw0_v = hw0
    cdef const floating[:, :, ::1] yw_v = yw
    cdef fl_bf2[::1] dAb_v = dAb, dAXb_v = dAXb, rows_v = rows
    cdef Bf16Grads bg = Bf16Grads(mode, &dAb_v[0], &dAXb_v[0], &rows_v[0], B)
    with single_threaded_blas(), nogil:
        _backward(x, Wx, Wh, h0, y, gates, hn, dy, WhTp, dAX, dAH, dh_v, dx_v, dWx_v, dWh_v,
                  dbx_v, dbh_v, active, nt, hw0_v, yw_v, &bg)
    return dx, dWx, dWh, dbx, dbh, np.ascontiguousarray(dh[:, :H])


cdef void _backward(const floating[:, :, ::1] x,      # IN  (T, B, I)
                    const floating[:, ::1] Wx,        # IN  (I, 3H)
                    const floating[:, ::1] Wh,        # IN  (H, 3H)
                    const floating[:, ::1] h0,        # IN  (B, H)
                    const floating[:, :, ::1] y,      # IN  (T, B, H)
                    const floating[:, :, ::1] gates,  # IN  (T, B, 3H)
                    const floating[:, :, ::1] hn,     # IN  (T, B, H)
                    const floating[:, :, ::1] dy,     # IN  (T, B, H)
                    floating[::1] WhTp,               # OUT (backward_scratch(I, Hp, 3H),),
                                                      # scratch: Wh's panels, then weight_grads'
                    floating[:, :, ::1] dAX,          # OUT (T, B, 3H), scratch
                    floating[:, :, ::1] dAH,          # OUT (T, B, 3H), scratch
                    floating[:, ::1] dh,              # IN dhT, OUT dh0 (B, Hp), padded
                    floating[:, :, ::1] dx,           # OUT (T, B, I)
                    floating[:, ::1] dWx,             # OUT (I, 3H)
                    floating[:, ::1] dWh,             # OUT (H, 3H)
                    floating[::1] dbx,                # OUT (3H,), zeroed
                    floating[::1] dbh,                # OUT (3H,), zeroed
                    const Py_ssize_t* active,         # IN  (T,) rows running, or NULL
                    int n_threads,
                    const floating[:, ::1] hw0,       # IN  h0 (B, H) for dWh: with bf16
                    const floating[:, :, ::1] yw,     # IN  y (T, B, H) rounded, else h0, y
                    const Bf16Grads* bg) noexcept nogil:   # IN  bf16's mode, dA's pairs
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], I = x.shape[2], H = Wh.shape[0]
    cdef Py_ssize_t U = panel_units(&Wh[0, 0])
    cdef UnitSpan u
    cdef Py_ssize_t N = 3 * H, t, s, r
    cdef const floating* h_prev
    cdef int P = block_threads(B, H, 3, U, n_threads)
    # Iteration t finishes step t with 5. (dh_{t-1} += dAH_t Wh.T for the thread's
    # units) and starts step t-1, which needs only those units: one barrier per step.
    with parallel(num_threads=P):
        u = my_units(H, U)
        pack_transposed(&Wh[0, 0], &WhTp[0], H, 3, u.q0, u.q1, bg)
        for t in range(T, -1, -1):
            if t < T:
                # 5. dh_{t-1} += dAH_t Wh.T for the thread's units, of the rows that
                # ran step t (the others' dh passes their end unchanged)
                step_grad_gemm(&dAH[t, 0, 0], &WhTp[0], &dh[0, 0], running(active, t, B),
                               H, N, u.q0, u.q1, True, bg, t)
            if t > 0:
                # 4. dAX_{t-1}, dAH_{t-1} and the direct path z * dh_{t-1}
                s = t - 1
                h_prev = &h0[0, 0] if s == 0 else &y[s - 1, 0, 0]
                for r in range(running(active, s, B)):
                    _gates_row_backward(&gates[s, r, u.j0], &hn[s, r, u.j0],
                                        &h_prev[r * H + u.j0], &dy[s, r, u.j0],
                                        &dh[r, u.j0], &dAX[s, r, u.j0],
                                        &dAH[s, r, u.j0], &dbx[u.j0], &dbh[u.j0],
                                        u.j1 - u.j0, H)
                    round_grads(bg, bg.dAX, s, r, &dAX[s, r, 0], 3, H, u.j0, u.j1)
                    round_grads(bg, bg.dA, s, r, &dAH[s, r, 0], 3, H, u.j0, u.j1)
            # step t-1 reads all of dAH_{t-1}
            fl_team_barrier()
    # 6. dWx, dWh, dx as GEMMs over all T*B rows
    weight_grads(&x[0, 0, 0], &hw0[0, 0], &yw[0, 0, 0], &Wx[0, 0], &dAX[0, 0, 0],
                 &dAH[0, 0, 0], &dWx[0, 0], &dWh[0, 0], &dx[0, 0, 0], &WhTp[0],
                 T, B, I, H, 3 * H, active, n_threads, bg)
