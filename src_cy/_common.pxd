# Inline helpers shared by the kernels: row-major BLAS over the fused type
# `floating`, the gate nonlinearities, the thread splits, the packing of weights into
# panels and the GEMMs on them. Inline only, so no module backs this file.
#
# The letters mean one thing each, in every kernel file (docs/DESIGN.md, "Names"):
#   T, B, I, H   time steps, batch rows, input size, hidden units
#   G            gate blocks of a cell (RNN 1, LSTM 4, GRU 3): Wx is (I, G*H)
#   N            columns of a GEMM's output; for a cell's pre-activations N = G*H
#   U            units (columns) of one panel: one SIMD vector of the dtype
#   Hp           H rounded up to whole panels of U
#   q, [q0, q1)  a unit block (U units) and the blocks a thread owns
#   j, [j0, j1)  a hidden unit and the units a thread owns; n = (q1 - q0) * U
#   r            a batch row;  t a time step;  k a gate block (or K's index)
#   P            threads in a team;  p one of them
#   A, S         the input projection x_t Wx + b (T, B, N) and the step's recurrent
#                product h_{t-1} Wh, in the thread's own layout (B, G, n)
#   dA           the gradient of the pre-activations; dAX, dAH the GRU's two parts
#   Wxp, Whp     Wx's and Wh's panels;  WhTp Wh's panels for dA Wh.T
#   x_, dh_      (a trailing _) one unit's value, a scalar in a gate pass
#   x_v          (a trailing _v) a typed memoryview of the array x
# The steps are numbered as in fastlstm.reference: forward 1. the input
# projection, 2. the step's product, 3. the gate pass; backward 4. the gate pass
# backwards, 5. dh_{t-1} = dA_t Wh.T, 6. the weight gradients.
from cython cimport floating
from cython.parallel cimport parallel, prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "simd_math.h" nogil:
    float expf(float)
    float tanhf(float)
    double exp(double)
    double tanh(double)


cdef inline void gemm(bint trans_a, bint trans_b, int M, int N, int K,
                      floating alpha, const floating* A, int lda,
                      const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, all row-major; C is (M, N).

    Row-major C is column-major C.T = op(B).T @ op(A).T, so BLAS gets the operands
    swapped and each one's transpose flag unchanged.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if M == 0 or N == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


cdef inline floating sigmoid(floating a) noexcept nogil:
    cdef floating one = 1
    if floating is float:
        return one / (one + expf(-a))
    else:
        return one / (one + exp(-a))


cdef inline floating tanh_(floating a) noexcept nogil:
    if floating is float:
        return tanhf(a)
    else:
        return tanh(a)


cdef inline void add_row(floating* acc, const floating* a, Py_ssize_t n) noexcept nogil:
    """acc[:n] += a[:n]; a loop of its own, which vectorises where a fused pass with
    many streams would exceed gcc's run-time alias checks."""
    cdef Py_ssize_t j
    for j in range(n):
        acc[j] += a[j]


cdef inline void fill_rows(floating* A, const floating* row, Py_ssize_t n_rows,
                           Py_ssize_t n_cols) noexcept nogil:
    """A[r, :] = row for every r < n_rows; A is (n_rows, n_cols) row-major."""
    cdef Py_ssize_t r, k
    for r in range(n_rows):
        for k in range(n_cols):
            A[r * n_cols + k] = row[k]


# ---------------------------------------------------------------- thread splits
# All parallelism is OpenMP; BLAS runs single-threaded inside (fastlstm._threads
# limits it around every kernel call). Threads split the gate columns / hidden
# units, never the batch (docs/DESIGN.md, "Threads").

cdef inline Py_ssize_t span_lo(Py_ssize_t n, Py_ssize_t parts, Py_ssize_t p) noexcept nogil:
    """First index of part p when [0, n) is cut into `parts` near-equal parts."""
    return n * p // parts


cdef enum:
    # Multiply-adds of a GEMM over all T*B rows (the input projection, the weight
    # gradients, dx) that each of its threads must have: about 5 us of one core.
    # Below it a second thread made a training update slower on the 2-core VM
    # (T=50, B=32, H=32: bench/RESULTS.md, 2026-12-01).
    GEMM_MIN_WORK = 262144


cdef inline int gemm_threads(Py_ssize_t M, Py_ssize_t K, Py_ssize_t N,
                             int n_threads) noexcept nogil:
    """Threads for an (M, K) @ (K, N) product: at least GEMM_MIN_WORK each."""
    return <int>max(1, min(<Py_ssize_t>n_threads, M * K * N // GEMM_MIN_WORK))


cdef inline void gemm_split_rows(bint trans_a, bint trans_b, Py_ssize_t M, Py_ssize_t N,
                                 Py_ssize_t K, floating alpha, const floating* A,
                                 Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                                 floating beta, floating* C, Py_ssize_t ldc,
                                 int n_threads) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, the rows of C split across threads."""
    cdef Py_ssize_t p, lo, hi
    for p in prange(n_threads, schedule='static', num_threads=n_threads):
        lo = span_lo(M, n_threads, p)
        hi = span_lo(M, n_threads, p + 1)
        gemm(trans_a, trans_b, <int>(hi - lo), <int>N, <int>K, alpha,
             A + (lo if trans_a else lo * lda), <int>lda, B, <int>ldb, beta, C + lo * ldc,
             <int>ldc)


cdef inline void transpose(const floating* A, floating* B, Py_ssize_t M, Py_ssize_t N,
                           int n_threads) noexcept nogil:
    """B (N, M) := A (M, N).T, in 16 x 16 tiles; threads split the rows of A."""
    cdef Py_ssize_t p, i0, j0, i, j, lo, hi
    for p in prange(n_threads, schedule='static', num_threads=n_threads):
        lo = span_lo(M, n_threads, p)
        hi = span_lo(M, n_threads, p + 1)
        for i0 in range(lo, hi, 16):
            for j0 in range(0, N, 16):
                for j in range(j0, min(j0 + 16, N)):
                    for i in range(i0, min(i0 + 16, hi)):
                        B[j * M + i] = A[i * N + j]


# ------------------------------------------------- the per-step recurrent products
# Weight-stationary, persistent threads (docs/DESIGN.md, "Threads"): each time loop runs
# inside one parallel region, one barrier per step. Hidden units go to the team's
# threads in whole blocks of U = one vector of columns (src_cy/panel_gemm.h). Of
# the nb = ceil(H / U) blocks, thread p of P owns [q0, q1) with
# q0 = span_lo(nb, P, p), q1 = span_lo(nb, P, p + 1); it packs Wh's panels for
# them itself, and they stay in its own cache for all T steps.

cdef extern from "omp_team.h" nogil:
    int fl_team_size()
    int fl_team_rank()
    void fl_team_barrier()


ctypedef struct UnitSpan:
    Py_ssize_t q0, q1   # the thread's unit blocks [q0, q1)
    Py_ssize_t j0, j1   # and its hidden units [j0, j1)


cdef inline UnitSpan thread_units(Py_ssize_t H, Py_ssize_t U, int P,
                                  Py_ssize_t p) noexcept nogil:
    """What thread p of P owns of H units in blocks of U (see above)."""
    cdef UnitSpan u
    cdef Py_ssize_t nb = (H + U - 1) // U
    u.q0 = span_lo(nb, P, p)
    u.q1 = span_lo(nb, P, p + 1)
    u.j0 = u.q0 * U
    u.j1 = min(u.q1 * U, H)
    return u


cdef inline UnitSpan my_units(Py_ssize_t H, Py_ssize_t U) noexcept nogil:
    """What the calling thread owns in its team; call inside the parallel region."""
    return thread_units(H, U, fl_team_size(), fl_team_rank())


cdef extern from "panel_gemm.h" nogil:
    const int FL_VBYTES
    void fl_panel_gemm_f(long M, long K, long npanels, const float* A, long lda,
                         const float* P, long pstride, float* C, long ldc, long cstride,
                         int add, const float* bias)
    void fl_panel_gemm_d(long M, long K, long npanels, const double* A, long lda,
                         const double* P, long pstride, double* C, long ldc,
                         long cstride, int add, const double* bias)
    void fl_panel_gemm_at_f(long M, long K, long npanels, const float* A, long lda,
                            const float* P, long pstride, float* C, long ldc,
                            long cstride, int add, const float* bias)
    void fl_panel_gemm_at_d(long M, long K, long npanels, const double* A, long lda,
                            const double* P, long pstride, double* C, long ldc,
                            long cstride, int add, const double* bias)


cdef extern from "panel_gemm.h" nogil:
    ctypedef unsigned int fl_bf2
    const int FL_BF16_DP, FL_BF16_EMULATED, FL_BF16_NATIVE
    unsigned int fl_bf16_round(float x)
    float fl_bf16_float(unsigned int bits)
    void fl_panel_gemm_bf(int mode, int a_trans, long M, long K, long npanels,
                          const fl_bf2* A, long lda, const fl_bf2* P, long pstride,
                          float* C, long ldc, long cstride, int add, const float* bias)


# bf16 (docs/DESIGN.md, "bf16"): with bf16, a forward's GEMM operands are bf16
# numbers, two of consecutive k to an fl_bf2 (panel_gemm.h), summed into fp32.
ctypedef struct Bf16:
    int mode            # 0 (the dtype's own precision), FL_BF16_EMULATED or _NATIVE
    const fl_bf2* x     # x (T, B, I) in pairs (T, B, ceil(I/2))
    fl_bf2* h           # (2, B, ceil(H/2)): h_t in pairs at t % 2, h0 at 1
    Py_ssize_t B        # the batch's rows, running or not


cdef inline void round_pairs(const float* a, fl_bf2* p, Py_ssize_t n) noexcept nogil:
    """p[:ceil(n/2)] := a[:n] rounded to bf16 in pairs, 0 beside an odd last."""
    cdef Py_ssize_t k
    for k in range(n // 2):
        p[k] = fl_bf16_round(a[2 * k]) | (fl_bf16_round(a[2 * k + 1]) << 16)
    if n % 2:
        p[n // 2] = fl_bf16_round(a[n - 1])


cdef inline void pack_gate_blocks_bf16(const float* W, fl_bf2* Wp, Py_ssize_t K,
                                       Py_ssize_t G, Py_ssize_t H, Py_ssize_t q0,
                                       Py_ssize_t q1, Py_ssize_t pstride=0) noexcept nogil:
    """pack_gate_blocks in bf16: panel (q, k) holds ceil(K/2) pairs of rows (2m,
    2m+1) of W's columns, rounded to bf16; 0 past unit H and past row K."""
    cdef Py_ssize_t U = FL_VBYTES // sizeof(float), K2 = (K + 1) // 2
    if pstride == 0:
        pstride = K2 * U
    cdef Py_ssize_t q, k, m, u, w
    cdef fl_bf2* panel
    cdef const float* row
    cdef unsigned int odd
    for m in range(K2):
        for q in range(q0, q1):
            w = min(U, H - q * U)
            for k in range(G):
                panel = Wp + (q * G + k) * pstride + m * U
                row = W + 2 * m * G * H + k * H + q * U
                for u in range(w):
                    odd = fl_bf16_round(row[G * H + u]) if 2 * m + 1 < K else 0
                    panel[u] = fl_bf16_round(row[u]) | (odd << 16)
                for u in range(w, U):
                    panel[u] = 0


cdef inline void step_gemm_bf16(int mode, const fl_bf2* h, const fl_bf2* Wp, float* S,
                                Py_ssize_t B, Py_ssize_t H, Py_ssize_t G, Py_ssize_t q0,
                                Py_ssize_t q1) noexcept nogil:
    """step_gemm on bf16 operands: h (B, ceil(H/2)) pairs, Wp from
    pack_gate_blocks_bf16(Wh, ...)."""
    cdef Py_ssize_t U = FL_VBYTES // sizeof(float), H2 = (H + 1) // 2
    cdef Py_ssize_t n = (q1 - q0) * U, q
    if G == 1:
        fl_panel_gemm_bf(mode, False, B, H2, q1 - q0, h, H2, Wp + q0 * H2 * U, H2 * U, S,
                         n, U, False, NULL)
        return
    for q in range(q0, q1):
        fl_panel_gemm_bf(mode, False, B, H2, G, h, H2, Wp + q * G * H2 * U, H2 * U,
                         S + (q - q0) * U, G * n, n, False, NULL)


ctypedef struct Bf16Grads:
    int mode            # 0 (the dtype's own precision), FL_BF16_EMULATED or _NATIVE
    fl_bf2* dA          # (T, B, G*ceil(H/2)) dA (the GRU's dAH) in gate_pairs
    fl_bf2* dAX         # the same of the GRU's dAX (dA itself for the others)
    fl_bf2* rows        # scratch, GRAD_ROWS * max(I, H) pairs a thread (weight_grads)
    Py_ssize_t B        # the batch's rows, running or not


cdef inline void gate_pairs(const float* a, fl_bf2* p, Py_ssize_t G, Py_ssize_t H,
                            Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Units [j0, j1) (j0 even) of each gate block of a row a (G*H,) into p, the
    row's gate-local pairs (G*ceil(H/2),): pair k*ceil(H/2) + m holds columns
    k*H + 2m and k*H + 2m + 1 (0 past H), so that a pair never spans two gate
    blocks, nor two threads' units."""
    cdef Py_ssize_t k, H2 = (H + 1) // 2
    for k in range(G):
        round_pairs(a + k * H + j0, p + k * H2 + j0 // 2, j1 - j0)


cdef inline void round_grads(const Bf16Grads* bg, fl_bf2* pairs, Py_ssize_t t,
                             Py_ssize_t r, floating* dA, Py_ssize_t G, Py_ssize_t H,
                             Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """With bf16 (bg.mode), units [j0, j1) of row r of dA_t (a row (G*H,), once db
    has it): rounded to bf16 in place, and into pairs (bg.dA or bg.dAX)."""
    cdef Py_ssize_t k, j
    cdef float* a = <float*>dA
    if bg.mode == 0:
        return
    for k in range(G):
        for j in range(j0, j1):
            a[k * H + j] = fl_bf16_float(fl_bf16_round(a[k * H + j]))
    gate_pairs(a, pairs + (t * bg.B + r) * G * ((H + 1) // 2), G, H, j0, j1)


cdef inline void interleave_rows(const float* X, Py_ssize_t K, Py_ssize_t width,
                                 fl_bf2* out) noexcept nogil:
    """out (ceil(K/2), width) := the rows of X (K, width) rounded to bf16, paired:
    out[m, i] holds X[2m, i] and X[2m + 1, i] (0 past row K): X.T's pairs along K,
    as the panel kernel takes an A given transposed."""
    cdef Py_ssize_t m, i
    cdef const float* even
    for m in range(K // 2):
        even = X + 2 * m * width
        for i in range(width):
            out[m * width + i] = fl_bf16_round(even[i]) | (fl_bf16_round(even[width + i]) << 16)
    if K % 2:
        even = X + (K - 1) * width
        for i in range(width):
            out[(K // 2) * width + i] = fl_bf16_round(even[i])


cdef inline void pack_unit_blocks_bf16(const float* W, fl_bf2* Wp, Py_ssize_t R,
                                       Py_ssize_t G, Py_ssize_t H, Py_ssize_t q0,
                                       Py_ssize_t q1) noexcept nogil:
    """W (R, G*H) as bf16 panels for dA @ W.T, dA in gate_pairs: unit block q
    (rows q*U + u of W) is the (G*ceil(H/2), U) panel at Wp + q*G*ceil(H/2)*U,
    its pair k*ceil(H/2) + m from W[q*U + u, k*H + 2m] and the column after it
    (0 past H); 0 past row R. Packed by the thread that owns the blocks."""
    cdef Py_ssize_t U = FL_VBYTES // sizeof(float), H2 = (H + 1) // 2, K2 = G * H2
    cdef Py_ssize_t q, k, m, u, w
    cdef fl_bf2* panel
    cdef const float* row
    cdef unsigned int odd
    for q in range(q0, q1):
        panel = Wp + q * K2 * U
        w = min(U, R - q * U)
        for u in range(w):
            row = W + (q * U + u) * G * H
            for k in range(G):
                for m in range(H2):
                    odd = fl_bf16_round(row[k * H + 2 * m + 1]) if 2 * m + 1 < H else 0
                    panel[(k * H2 + m) * U + u] = fl_bf16_round(row[k * H + 2 * m]) | (odd << 16)
        for u in range(w, U):
            for m in range(K2):
                panel[m * U + u] = 0


cdef inline const fl_bf2* bf16_inputs(const Bf16* bf, Py_ssize_t t0, Py_ssize_t B,
                                      Py_ssize_t I) noexcept nogil:
    """With bf16, x's pairs from step t0; NULL without."""
    if bf == NULL or bf.mode == 0:
        return NULL
    return bf.x + t0 * B * ((I + 1) // 2)


cdef inline void round_state(const Bf16* bf, Py_ssize_t t, const floating* y_t,
                             Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0,
                             Py_ssize_t j1) noexcept nogil:
    """With bf16, units [j0, j1) of h_t, rows [0, B) of y_t (B, H), into bf.h's
    pairs for step t+1; j0 is even (whole panels)."""
    cdef Py_ssize_t r, H2 = (H + 1) // 2
    if bf == NULL or bf.mode == 0:
        return
    for r in range(B):
        round_pairs(<const float*>y_t + r * H + j0,
                    bf.h + (t % 2) * bf.B * H2 + r * H2 + j0 // 2, j1 - j0)


cdef inline Py_ssize_t panel_units(const floating* like) noexcept nogil:
    """U, the units (columns) of one panel for this dtype: one SIMD vector."""
    return FL_VBYTES // sizeof(floating)


cdef inline Py_ssize_t padded_units(Py_ssize_t H, Py_ssize_t U) noexcept nogil:
    """H rounded up to whole blocks of U units."""
    return (H + U - 1) // U * U


cdef inline void panel_gemm(Py_ssize_t M, Py_ssize_t K, Py_ssize_t npanels,
                            const floating* A, Py_ssize_t lda, const floating* P,
                            Py_ssize_t pstride, floating* C, Py_ssize_t ldc,
                            Py_ssize_t cstride, bint add, bint a_trans=False,
                            const floating* bias=NULL) noexcept nogil:
    """C[:, v*cstride : v*cstride + U] (+)= op(A) (M, K) @ panel v, v < npanels;
    op(A) is A (M, K), or with a_trans the transpose of A (K, M). Without add, C
    starts from the row bias (its columns as C's) where bias is given."""
    if floating is float:
        if a_trans:
            fl_panel_gemm_at_f(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add,
                               bias)
        else:
            fl_panel_gemm_f(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add,
                            bias)
    else:
        if a_trans:
            fl_panel_gemm_at_d(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add,
                               bias)
        else:
            fl_panel_gemm_d(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add,
                            bias)


# Multiply-adds of the per-step product that each thread of the time loop must
# have, about half a microsecond of one core's work: below that, its share of the
# step is shorter than the barrier it adds. On a 16-core Xeon, 32768 beat 131072
# and 524288 at B=1, H=256 by a third, and tied them at larger shapes
# (bench/RESULTS.md, 2026-11-23 (16 cores)).
cdef enum:
    STEP_MIN_WORK = 32768


cdef inline Py_ssize_t sequence_work(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I,
                                     Py_ssize_t H, Py_ssize_t G) noexcept nogil:
    """Multiply-adds of a cell's forward over T steps (x_t Wx and h_{t-1} Wh), the
    size fastlstm._threads.team_size weighs a call by; a backward does twice as
    many."""
    return T * B * (I + H) * G * H


cdef inline int block_threads(Py_ssize_t B, Py_ssize_t H, Py_ssize_t n_gates,
                              Py_ssize_t U, int n_threads) noexcept nogil:
    """Threads for the time loop: at most one per block of U units, and at least
    STEP_MIN_WORK of the step's B*H*n_gates*H multiply-adds each."""
    cdef Py_ssize_t by_work = B * H * n_gates * H // STEP_MIN_WORK
    cdef Py_ssize_t by_blocks = (H + U - 1) // U
    return <int>max(1, min(<Py_ssize_t>n_threads, min(by_work, by_blocks)))


cdef inline void pack_gate_blocks(const floating* W, floating* Wp, Py_ssize_t K,
                                  Py_ssize_t G, Py_ssize_t H, Py_ssize_t q0,
                                  Py_ssize_t q1, Py_ssize_t pstride=0) noexcept nogil:
    """Wp := W (K, G*H) as panels for h @ W, unit blocks [q0, q1). Unit block q,
    gate k is the (K, U) panel at Wp + (q*G + k)*pstride (K*U where pstride is 0):
    columns k*H + q*U + u of W, zero past unit H. Each thread packs the blocks it
    owns in the time loop, so first touch puts them near its core and no barrier
    is needed before use."""
    cdef Py_ssize_t U = panel_units(W)
    if pstride == 0:
        pstride = K * U
    cdef Py_ssize_t q, k, r, rb, r0, u, w
    cdef floating* panel
    cdef const floating* row
    # U rows at a time, so that the panels take each row's U-wide pieces in
    # order; panel by panel, every piece came from another page (a T=1 forward
    # at B=16, H=512 took 2.5 ms, now 1.8).
    for rb in range((K + U - 1) // U):
        r0 = rb * U
        for q in range(q0, q1):
            w = min(U, H - q * U)
            for k in range(G):
                panel = Wp + (q * G + k) * pstride
                for r in range(r0, min(r0 + U, K)):
                    row = W + r * G * H + k * H + q * U
                    for u in range(w):
                        panel[r * U + u] = row[u]
                    for u in range(w, U):
                        panel[r * U + u] = 0


cdef inline void pack_unit_blocks(const floating* W, floating* Wp, Py_ssize_t H,
                                  Py_ssize_t N, Py_ssize_t q0,
                                  Py_ssize_t q1) noexcept nogil:
    """Wp := W (H, N) as panels for dA @ W.T, unit blocks [q0, q1). Unit block q is
    the (N, U) panel at Wp + q*N*U: rows q*U + u of W as its columns, zero past
    unit H. Packed by the thread that owns the blocks, as above."""
    cdef Py_ssize_t U = panel_units(W)
    cdef Py_ssize_t q, k, kb, k0, k1, u, w
    cdef floating* panel
    cdef const floating* row
    for q in range(q0, q1):
        panel = Wp + q * N * U
        w = min(U, H - q * U)
        # U x U tiles, each row read a cache line at a time; column by column,
        # the U rows, N apart, evicted each other's lines from L1 (a T=1
        # backward at B=16, H=512 took 5.0 ms, now 2.9).
        for kb in range((N + U - 1) // U):
            k0 = kb * U
            k1 = min(k0 + U, N)
            for u in range(w):
                row = W + (q * U + u) * N
                for k in range(k0, k1):
                    panel[k * U + u] = row[k]
            for u in range(w, U):
                for k in range(k0, k1):
                    panel[k * U + u] = 0


cdef inline void pack_recurrent(const floating* Wh, floating* Whp, Py_ssize_t H,
                                Py_ssize_t G, Py_ssize_t q0, Py_ssize_t q1,
                                const Bf16* bf=NULL) noexcept nogil:
    """Wh (H, G*H) into Whp for step_gemm: pack_gate_blocks, or with bf16 (Whp's
    room holds the bf16 panels) pack_gate_blocks_bf16."""
    if bf != NULL and bf.mode:
        pack_gate_blocks_bf16(<const float*>Wh, <fl_bf2*>Whp, H, G, H, q0, q1)
    else:
        pack_gate_blocks(Wh, Whp, H, G, H, q0, q1)


cdef inline void step_gemm(const floating* h, const floating* Wp, floating* S,
                           Py_ssize_t B, Py_ssize_t H, Py_ssize_t G, Py_ssize_t q0,
                           Py_ssize_t q1, const Bf16* bf=NULL,
                           Py_ssize_t t=0) noexcept nogil:
    """S (B, G, n) := h (B, H) @ Wh's columns for the unit blocks [q0, q1), from
    pack_recurrent; n = (q1 - q0)*U, gate k of the block's unit j at S[r, k, j].
    With bf16 (bf.mode) h_{t-1} comes from bf.h's pairs at step t."""
    cdef Py_ssize_t U = panel_units(h), n = (q1 - q0) * U, q
    if bf != NULL and bf.mode:
        step_gemm_bf16(bf.mode, bf.h + ((t + 1) % 2) * bf.B * ((H + 1) // 2),
                       <const fl_bf2*>Wp, <float*>S, B, H, G, q0, q1)
        return
    if G == 1:
        # one gate block: the blocks' panels lie one after the other, and their
        # columns too, so one call takes them all and its tiles are whole
        panel_gemm(B, H, q1 - q0, h, H, Wp + q0 * H * U, H * U, S, n, U, False)
        return
    for q in range(q0, q1):
        panel_gemm(B, H, G, h, H, Wp + q * G * H * U, H * U, S + (q - q0) * U, G * n, n,
                   False)


cdef inline void finish_step(const Py_ssize_t* active, Py_ssize_t t, Py_ssize_t T,
                             Py_ssize_t B, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                             floating* y_t, const floating* c_t, floating* hT,
                             floating* cT) noexcept nogil:
    """After step t, for the calling thread's units [j0, j1): the rows that have
    ended (running()) output 0 at t, and the rows whose last step t is hand their
    state to hT (and to cT where it is not NULL, from c_t). y_t, c_t (B, H)."""
    cdef Py_ssize_t r, j
    cdef Py_ssize_t Bt = running(active, t, B)
    cdef Py_ssize_t ending = 0 if t == T - 1 else running(active, t + 1, B)
    for r in range(Bt, B):
        for j in range(j0, j1):
            y_t[r * H + j] = 0
    for r in range(ending, Bt):
        for j in range(j0, j1):
            hT[r * H + j] = y_t[r * H + j]
        if cT != NULL:
            for j in range(j0, j1):
                cT[r * H + j] = c_t[r * H + j]


cdef inline void step_projection(const floating* x, const void* Wxp, const floating* bp,
                                 floating* A, Py_ssize_t B, Py_ssize_t I,
                                 Py_ssize_t Np, int mode=0,
                                 const fl_bf2* xb=NULL) noexcept nogil:
    """A (B, Np) := x (B, I) @ Wx + b for Wx, b packed by _panels.columns (Np
    columns, whole panels): the calling thread's share of the panels, inside a
    parallel region (the one-step kernels). With bf16 (mode), Wx's panels are
    bf16 pairs and x comes from xb, its pairs (B, ceil(I/2))."""
    cdef Py_ssize_t U = panel_units(x), nv = Np // U, I2 = (I + 1) // 2
    cdef Py_ssize_t v0 = span_lo(nv, fl_team_size(), fl_team_rank())
    cdef Py_ssize_t v1 = span_lo(nv, fl_team_size(), fl_team_rank() + 1)
    if v1 > v0 and mode:
        fl_panel_gemm_bf(mode, False, B, I2, v1 - v0, xb, I2,
                         <const fl_bf2*>Wxp + v0 * I2 * U, I2 * U, <float*>A + v0 * U, Np,
                         U, False, <const float*>bp + v0 * U)
    elif v1 > v0:
        panel_gemm(B, I, v1 - v0, x, I, <const floating*>Wxp + v0 * I * U, I * U,
                   A + v0 * U, Np, U, False, False, bp + v0 * U)


cdef inline void pack_transposed(const floating* Wh, floating* WhTp, Py_ssize_t H,
                                 Py_ssize_t G, Py_ssize_t q0, Py_ssize_t q1,
                                 const Bf16Grads* bg=NULL) noexcept nogil:
    """Wh (H, G*H) into WhTp for step_grad_gemm: pack_unit_blocks, or with bf16
    (WhTp's room holds the bf16 panels) pack_unit_blocks_bf16."""
    if bg != NULL and bg.mode:
        pack_unit_blocks_bf16(<const float*>Wh, <fl_bf2*>WhTp, H, G, H, q0, q1)
    else:
        pack_unit_blocks(Wh, WhTp, H, G * H, q0, q1)


ctypedef struct StepWeights:
    int mode            # 0, or bf16's (the panels are bf16 pairs)
    const void* Wxp     # Wx's panels (_panels.step_weights)
    const void* Whp     # Wh's panels


cdef inline StepWeights step_view(tuple weights, const unsigned char[::1] Wxp,
                                  const unsigned char[::1] Whp):
    """The one-step kernels' view of weights (_panels.step_weights: the panels as
    bytes, weights[0] and [2]); the caller keeps them alive."""
    return StepWeights(weights[3], &Wxp[0], &Whp[0])


cdef inline Py_ssize_t step_room(const StepWeights* w, int P, Py_ssize_t B,
                                 Py_ssize_t I, Py_ssize_t H) noexcept nogil:
    """Pairs of room for step_pairs on P threads: with bf16, B*(ceil(I/2) +
    ceil(H/2)) a thread; one (unread) without."""
    return P * B * ((I + 1) // 2 + (H + 1) // 2) if w.mode else 1


cdef inline fl_bf2* step_pairs(const StepWeights* w, fl_bf2* room, const floating* x,
                               const floating* h, Py_ssize_t B, Py_ssize_t I,
                               Py_ssize_t H) noexcept nogil:
    """With bf16, x (B, I) and h (B, H) in pairs, x's (B, ceil(I/2)) and then h's
    (B, ceil(H/2)), in the calling thread's part of room (step_room): a step's are
    a few hundred numbers, cheaper for each thread to pair than to wait at a
    barrier for. NULL without bf16."""
    cdef Py_ssize_t r, I2 = (I + 1) // 2, H2 = (H + 1) // 2
    cdef fl_bf2* p
    if w.mode == 0:
        return NULL
    p = room + fl_team_rank() * B * (I2 + H2)
    for r in range(B):
        round_pairs(<const float*>x + r * I, p + r * I2, I)
        round_pairs(<const float*>h + r * H, p + B * I2 + r * H2, H)
    return p


cdef inline void one_step_gemm(const floating* h, const StepWeights* w,
                               const fl_bf2* pairs, floating* S, Py_ssize_t B,
                               Py_ssize_t I, Py_ssize_t H, Py_ssize_t G, Py_ssize_t q0,
                               Py_ssize_t q1) noexcept nogil:
    """step_gemm of the one-step kernels, on w's panels: with bf16, on h's pairs
    from step_pairs's pairs (x's, then h's)."""
    if w.mode:
        step_gemm_bf16(w.mode, pairs + B * ((I + 1) // 2), <const fl_bf2*>w.Whp,
                       <float*>S, B, H, G, q0, q1)
    else:
        step_gemm(h, <const floating*>w.Whp, S, B, H, G, q0, q1)


cdef inline void step_grad_gemm(const floating* dA, const floating* Wp, floating* D,
                                Py_ssize_t B, Py_ssize_t H, Py_ssize_t N, Py_ssize_t q0,
                                Py_ssize_t q1, bint add, const Bf16Grads* bg=NULL,
                                Py_ssize_t t=0) noexcept nogil:
    """D[:, units of blocks q0:q1] (+)= dA (B, N) @ Wh.T, from pack_transposed;
    D is (B, padded_units(H, U)). With bf16, dA_t comes from bg.dA's pairs."""
    cdef Py_ssize_t U = panel_units(dA), K2
    if bg != NULL and bg.mode:
        K2 = N // H * ((H + 1) // 2)
        fl_panel_gemm_bf(bg.mode, False, B, K2, q1 - q0, bg.dA + t * bg.B * K2,
                         K2, <const fl_bf2*>Wp + q0 * K2 * U, K2 * U,
                         <float*>D + q0 * U, padded_units(H, U), U, add, NULL)
        return
    panel_gemm(B, N, q1 - q0, dA, N, Wp + q0 * N * U, N * U, D + q0 * U,
               padded_units(H, U), U, add)


# ------------------------------------------------ the GEMMs over all T*B rows
# Before and after the time loop, X Wx and dA Wx.T run on the same panel kernel
# as the steps where the output's columns are whole panels (BLAS otherwise). On
# these two it is about as fast as OpenBLAS 0.3.30 (1-2% of a train step at B=16
# H=256); on the weight gradients, below, it is much faster.

cdef enum:
    ROW_BLOCK_ELEMENTS = 65536   # A's rows per call to the panel kernel: 256 KB of float32


cdef inline void rows_times_panels(const floating* A, Py_ssize_t lda, Py_ssize_t lo,
                                   Py_ssize_t hi, Py_ssize_t K, const floating* Wp,
                                   Py_ssize_t N, floating* C,
                                   const floating* bias) noexcept nogil:
    """C[lo:hi] := A[lo:hi] @ W (+ bias, a row of N, where not NULL) for A (rows, K),
    W (K, N) packed as N / U column panels by pack_gate_blocks(W, Wp, K, 1, N, ...),
    C (rows, N); N whole panels.
    A block of rows stays in L2 while each group of panels passes over it."""
    cdef Py_ssize_t U = panel_units(A), r0 = lo
    cdef Py_ssize_t mc = max(1, ROW_BLOCK_ELEMENTS // K)
    while r0 < hi:
        panel_gemm(min(mc, hi - r0), K, N // U, A + r0 * lda, lda, Wp, K * U, C + r0 * N,
                   N, U, False, False, bias)
        r0 += mc


cdef inline void rows_times_panels_bf16(int mode, const fl_bf2* A, Py_ssize_t lo,
                                        Py_ssize_t hi, Py_ssize_t K2, const fl_bf2* Wp,
                                        Py_ssize_t N, float* C,
                                        const float* bias) noexcept nogil:
    """rows_times_panels on bf16 operands: A (rows, K2) pairs, Wp from
    pack_gate_blocks_bf16(W, Wp, 2*K2 or 2*K2 - 1, 1, N, ...)."""
    cdef Py_ssize_t U = FL_VBYTES // sizeof(float), r0 = lo
    cdef Py_ssize_t mc = max(1, ROW_BLOCK_ELEMENTS // K2)
    while r0 < hi:
        fl_panel_gemm_bf(mode, False, min(mc, hi - r0), K2, N // U, A + r0 * K2, K2, Wp,
                         K2 * U, C + r0 * N, N, U, False, bias)
        r0 += mc


cdef inline Py_ssize_t running(const Py_ssize_t* active, Py_ssize_t t,
                               Py_ssize_t B) noexcept nogil:
    """Rows still running at step t: the first active[t] of the B (the rows are
    sorted by length, longest first), or all B without lengths (active NULL)."""
    return B if active == NULL else active[t]


cdef inline Py_ssize_t running_rows(const Py_ssize_t* active, Py_ssize_t T,
                                    Py_ssize_t B) noexcept nogil:
    """Rows still running, summed over T steps."""
    cdef Py_ssize_t t, total = 0
    if active == NULL:
        return T * B
    for t in range(T):
        total += active[t]
    return total


cdef inline void input_projection(const floating* x, const floating* Wx, const floating* b,
                                  floating* A, floating* Wxp, Py_ssize_t T, Py_ssize_t B,
                                  Py_ssize_t I, Py_ssize_t N, const Py_ssize_t* active,
                                  int n_threads, bint pack=True, int bf16=0,
                                  const fl_bf2* xb=NULL) noexcept nogil:
    """A := x @ Wx + b for x (T, B, I), Wx (I, N), b (N,), A (T, B, N), the rows of
    each step that are still running (running()) only; rows split across threads.
    Wxp is scratch of I*N elements for Wx's panels; without pack, it holds them
    already (a later window of the same forward). With bf16 (a mode of
    fl_panel_gemm_bf) and N whole panels, x comes from xb, its pairs
    (bf16_inputs), and Wx's panels are bf16; x and Wx hold bf16 numbers either
    way (fastlstm.ops rounds them), so BLAS's fp32 sums are the same products."""
    cdef Py_ssize_t U = panel_units(x), p, t, lo, hi, Bt
    cdef Py_ssize_t steps = 1 if active == NULL else T, rows = B * T // steps
    cdef UnitSpan u
    n_threads = gemm_threads(running_rows(active, T, B), I, N, n_threads)
    if N % U:
        for p in prange(n_threads, schedule='static', num_threads=n_threads):
            for t in range(steps):
                Bt = rows if active == NULL else active[t]
                lo = t * rows + span_lo(Bt, n_threads, p)
                hi = t * rows + span_lo(Bt, n_threads, p + 1)
                fill_rows(A + lo * N, b, hi - lo, N)
                gemm(False, False, <int>(hi - lo), <int>N, <int>I, 1, x + lo * I, <int>I,
                     Wx, <int>N, 1, A + lo * N, <int>N)
        return
    with parallel(num_threads=n_threads):
        if pack:
            u = my_units(N, U)
            if xb != NULL:
                pack_gate_blocks_bf16(<const float*>Wx, <fl_bf2*>Wxp, I, 1, N, u.q0, u.q1)
            else:
                pack_gate_blocks(Wx, Wxp, I, 1, N, u.q0, u.q1)
            # every thread reads all of Wx's panels
            fl_team_barrier()
        for t in range(steps):
            Bt = rows if active == NULL else active[t]
            lo = t * rows + span_lo(Bt, fl_team_size(), fl_team_rank())
            hi = t * rows + span_lo(Bt, fl_team_size(), fl_team_rank() + 1)
            if xb != NULL:
                rows_times_panels_bf16(bf16, xb, lo, hi, (I + 1) // 2, <const fl_bf2*>Wxp,
                                       N, <float*>A, <const float*>b)
            else:
                rows_times_panels(x, I, lo, hi, I, Wxp, N, A, b)


# The forward without a cache (inference) keeps the input projection and the cell
# states of a window of time steps only, at most WINDOW_ELEMENTS of the
# projection: it is written and read again while it is in the caches.
cdef enum:
    WINDOW_ELEMENTS = 262144


cdef inline Py_ssize_t inference_window(Py_ssize_t T, Py_ssize_t step_elements) noexcept nogil:
    """Steps of a window for a projection of step_elements (B*G*H) a step."""
    return max(1, min(T, WINDOW_ELEMENTS // step_elements))


cdef inline void rows_times_transposed(const floating* A, const floating* W,
                                       floating* C, floating* Wp, Py_ssize_t T,
                                       Py_ssize_t B, Py_ssize_t N, Py_ssize_t I,
                                       const Py_ssize_t* active,
                                       int n_threads, const Bf16Grads* bg=NULL,
                                       Py_ssize_t H=0) noexcept nogil:
    """C := A @ W.T for A (T, B, N), W (I, N), C (T, B, I), over the rows of each
    step that are still running (running()); the others of C get 0. Rows split
    across threads. Wp is scratch of I*N elements for W's panels. With bf16 and
    I whole panels, A comes from bg.dAX's gate pairs of N = G*H columns."""
    cdef Py_ssize_t U = panel_units(A), p, t, lo, hi, Bt, k
    cdef Py_ssize_t K2 = 0 if H == 0 else N // H * ((H + 1) // 2)
    cdef bint bf16 = bg != NULL and bg.mode and I % U == 0
    cdef Py_ssize_t steps = 1 if active == NULL else T, rows = B * T // steps
    cdef UnitSpan u
    n_threads = gemm_threads(running_rows(active, T, B), N, I, n_threads)
    if I % U:
        for p in prange(n_threads, schedule='static', num_threads=n_threads):
            for t in range(steps):
                Bt = rows if active == NULL else active[t]
                lo = t * rows + span_lo(Bt, n_threads, p)
                hi = t * rows + span_lo(Bt, n_threads, p + 1)
                gemm(False, True, <int>(hi - lo), <int>I, <int>N, 1, A + lo * N, <int>N, W,
                     <int>N, 0, C + lo * I, <int>I)
                _zero_rows(C + (t * rows + Bt) * I, rows - Bt, I, n_threads, p)
        return
    with parallel(num_threads=n_threads):
        u = my_units(I, U)
        if bf16:
            pack_unit_blocks_bf16(<const float*>W, <fl_bf2*>Wp, I, N // H, H, u.q0, u.q1)
        else:
            pack_unit_blocks(W, Wp, I, N, u.q0, u.q1)
        # every thread reads all of W's panels
        fl_team_barrier()
        for t in range(steps):
            Bt = rows if active == NULL else active[t]
            lo = t * rows + span_lo(Bt, fl_team_size(), fl_team_rank())
            hi = t * rows + span_lo(Bt, fl_team_size(), fl_team_rank() + 1)
            if bf16:
                rows_times_panels_bf16(bg.mode, bg.dAX, lo, hi, K2, <const fl_bf2*>Wp, I,
                                       <float*>C, NULL)
            else:
                rows_times_panels(A, N, lo, hi, N, Wp, I, C, NULL)
            _zero_rows(C + (t * rows + Bt) * I, rows - Bt, I, fl_team_size(),
                       fl_team_rank())


cdef inline void _zero_rows(floating* C, Py_ssize_t n_rows, Py_ssize_t width, Py_ssize_t P,
                            Py_ssize_t p) noexcept nogil:
    """Part p of P of the n_rows rows of C (width columns each) := 0."""
    cdef Py_ssize_t k
    for k in range(span_lo(n_rows, P, p) * width, span_lo(n_rows, P, p + 1) * width):
        C[k] = 0


cdef enum:
    GRAD_ROWS = 256   # rows of dA packed at a time for the weight gradients
    # The panel kernel adds every chunk into dW, which must then stay in the
    # thread's L2: at B=64 H=512 (4 MB of dWx) on 1 thread it took 5% longer than
    # BLAS, on 2 threads (2 MB each) 2% less (bench/RESULTS.md,
    # 2026-11-23 (16 cores)).
    GRAD_MAX_BYTES = 2097152   # of dWx or dWh per thread


cdef inline Py_ssize_t backward_scratch(Py_ssize_t I, Py_ssize_t Hp,
                                        Py_ssize_t N) noexcept nogil:
    """Elements of the backward's scratch for a cell with N = G*H gate columns: Wh's
    panels (Hp*N), then weight_grads' (see there)."""
    return N * max(max(Hp, I), 2 * GRAD_ROWS)


cdef inline void _weight_grads_bf16(int mode, const float* x, const float* hp,
                                    const float* dAX, const float* dAH, fl_bf2* PX,
                                    fl_bf2* PH, fl_bf2* xi, float* dWx, float* dWh,
                                    Py_ssize_t K, Py_ssize_t I, Py_ssize_t H, Py_ssize_t N,
                                    UnitSpan u, Py_ssize_t bstride,
                                    bint first) noexcept nogil:
    """weight_grads' panel path on one chunk of K rows in bf16: x (K, I), hp (K, H)
    the chunk's h_{t-1}, dAX, dAH (K, N); the thread's columns u of dWx and dWh
    (+)= x.T dAX and hp.T dAH, its panels bstride pairs apart."""
    cdef Py_ssize_t U = FL_VBYTES // sizeof(float), K2 = (K + 1) // 2
    pack_gate_blocks_bf16(dAX, PX, K, 1, N, u.q0, u.q1, bstride)
    interleave_rows(x, K, I, xi)
    fl_panel_gemm_bf(mode, True, I, K2, u.q1 - u.q0, xi, I, PX + u.q0 * bstride, bstride,
                     dWx + u.j0, N, U, not first, NULL)
    if H == 0:
        return
    if PH != PX:
        pack_gate_blocks_bf16(dAH, PH, K, 1, N, u.q0, u.q1, bstride)
    interleave_rows(hp, K, H, xi)
    fl_panel_gemm_bf(mode, True, H, K2, u.q1 - u.q0, xi, H, PH + u.q0 * bstride, bstride,
                     dWh + u.j0, N, U, not first, NULL)


cdef inline void weight_grads(const floating* x, const floating* h0, const floating* y,
                              const floating* Wx, const floating* dAX, const floating* dAH,
                              floating* dWx, floating* dWh, floating* dx, floating* WT,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                              Py_ssize_t N, const Py_ssize_t* active,
                              int n_threads, const Bf16Grads* bg=NULL) noexcept nogil:
    """6. The BPTT GEMMs after the time loop, each over all T*B rows at once:
        dWx = X.T @ dAX;  dWh = h0.T @ dAH[0] + Y[:-1].T @ dAH[1:];  dx = dAX @ Wx.T
    over the rows of each step that are still running (running(); dx gets 0 in
    the others). dAX, dAH (T, B, N) are the gradients of the input and recurrent
    pre-activations, N = G*H gate columns (one array for the RNN and LSTM, two
    for the GRU); WT is scratch of backward_scratch(I, Hp, N) elements. H = 0
    leaves dWh out and dx NULL leaves dx out: the Dense layer's backward is
    dW = X.T @ dY, dx = dY @ W.T over its T*B rows.

    Where N is whole panels and a thread's columns of dWx and dWh take at most
    GRAD_MAX_BYTES each, they run on the panel kernel with X, h0 and Y read in
    place (a_trans), and threads split their columns: each thread packs its
    columns of GRAD_ROWS rows of dA at a time, used for both gradients, and needs
    no barrier. OpenBLAS 0.3.30 packed dA once per GEMM, slowly, and did fewer
    multiply-adds per second on these GEMMs than the panel kernel (perf, B=16
    H=256); the train step took 8% less there (bench/RESULTS.md,
    2026-11-23 (16 cores)).

    Otherwise BLAS computes them transposed (dAX.T @ X) into WT, and they are
    transposed: in BLAS's column-major terms that makes dA the operand OpenBLAS
    packs with its fast copy (a quarter of the GEMM's time less).

    With bf16 (bg.mode; dAX, dAH, x, Wx hold bf16 numbers, h0 and y too where
    the panel kernel does not run) the panel path runs on bf16 pairs wherever N
    is whole panels: each chunk's 2*GRAD_ROWS rows of X, and of h0 or Y, paired
    along the rows into the thread's bg.rows, its dA packed by
    pack_gate_blocks_bf16; dx from bg.dAX's pairs."""
    cdef Py_ssize_t U = panel_units(x), TB = T * B, k0, K, t, Bt
    cdef UnitSpan u
    cdef floating* PX = WT
    cdef floating* PH = WT if dAH == dAX else WT + GRAD_ROWS * N
    cdef const floating* hp
    cdef bint first
    cdef int nt = gemm_threads(running_rows(active, T, B), I + H, N, n_threads)
    cdef bint bf16 = bg != NULL and bg.mode
    cdef fl_bf2* xi
    # bf16 chunks of twice the rows: as many pairs as fp32's chunk has rows, so
    # each tile of dW is loaded and stored as often, in the same room
    cdef Py_ssize_t chunk = 2 * GRAD_ROWS if bf16 else GRAD_ROWS
    cdef Py_ssize_t bstride = GRAD_ROWS * U   # a bf16 panel's room, in pairs
    # bf16 takes the panel kernel whatever dW's size: BLAS's path is fp32's speed
    if N % U == 0 and (bf16 or max(I, H) * N * sizeof(floating) <= GRAD_MAX_BYTES * nt):
        with parallel(num_threads=nt):
            u = my_units(N, U)
            xi = bg.rows + fl_team_rank() * GRAD_ROWS * max(I, H) if bf16 else NULL
            k0, t, first = 0, 0, True
            while True:
                # the next chunk of rows: of h0's rows, then of Y's, so that each has
                # one source of h_{t-1}; with lengths, of one step's running rows
                if active == NULL:
                    if k0 >= TB:
                        break
                    K = min(k0 + chunk, B if k0 < B else TB) - k0
                else:
                    while t < T and k0 >= t * B + active[t]:
                        t = t + 1
                        k0 = t * B
                    if t >= T:
                        break
                    K = min(chunk, t * B + active[t] - k0)
                hp = h0 + k0 * H if k0 < B else y + (k0 - B) * H
                if bf16:
                    _weight_grads_bf16(bg.mode, <const float*>x + k0 * I,
                                       <const float*>hp, <const float*>dAX + k0 * N,
                                       <const float*>dAH + k0 * N, <fl_bf2*>PX,
                                       <fl_bf2*>PH, xi, <float*>dWx, <float*>dWh, K, I,
                                       H, N, u, bstride, first)
                    k0 = k0 + K
                    first = False
                    continue
                # panels GRAD_ROWS*U apart whatever K: a thread's panels of one
                # chunk never overlap another's of the chunk before
                pack_gate_blocks(dAX + k0 * N, PX, K, 1, N, u.q0, u.q1, GRAD_ROWS * U)
                panel_gemm(I, K, u.q1 - u.q0, x + k0 * I, I, PX + u.q0 * GRAD_ROWS * U,
                           GRAD_ROWS * U, dWx + u.j0, N, U, not first, True)
                if H > 0:
                    if PH != PX:
                        pack_gate_blocks(dAH + k0 * N, PH, K, 1, N, u.q0, u.q1,
                                         GRAD_ROWS * U)
                    panel_gemm(H, K, u.q1 - u.q0, hp, H, PH + u.q0 * GRAD_ROWS * U,
                               GRAD_ROWS * U, dWh + u.j0, N, U, not first, True)
                k0 = k0 + K
                first = False
    elif active == NULL:
        gemm_split_rows(True, False, N, I, TB, 1, dAX, N, x, I, 0, WT, I, nt)
        transpose(WT, dWx, N, I, nt)
        if H > 0:
            gemm_split_rows(True, False, N, H, B, 1, dAH, N, h0, H, 0, WT, H, nt)
            if T > 1:
                gemm_split_rows(True, False, N, H, (T - 1) * B, 1, dAH + B * N, N, y, H,
                                1, WT, H, nt)
            transpose(WT, dWh, N, H, nt)
    else:
        for t in range(T):
            gemm_split_rows(True, False, N, I, active[t], 1, dAX + t * B * N, N,
                            x + t * B * I, I, t > 0, WT, I, nt)
        transpose(WT, dWx, N, I, nt)
        if H > 0:
            for t in range(T):
                hp = h0 if t == 0 else y + (t - 1) * B * H
                gemm_split_rows(True, False, N, H, active[t], 1, dAH + t * B * N, N, hp, H,
                                t > 0, WT, H, nt)
            transpose(WT, dWh, N, H, nt)
    if dx != NULL:
        rows_times_transposed(dAX, Wx, dx, WT, T, B, N, I, active, n_threads, bg, H)

