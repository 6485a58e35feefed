# Inline helpers shared by the cell kernels: row-major BLAS over the fused type
# `floating`, and the gate nonlinearities. Inline only, so no module backs this file.
from cython cimport floating
from cython.parallel cimport prange
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


cdef inline void fill_rows(floating* A, const floating* row, Py_ssize_t n_rows,
                           Py_ssize_t n_cols) noexcept nogil:
    """A[r, :] = row for every r < n_rows; A is (n_rows, n_cols) row-major."""
    cdef Py_ssize_t r, k
    for r in range(n_rows):
        for k in range(n_cols):
            A[r * n_cols + k] = row[k]


# ---------------------------------------------------------------- thread splits
# All parallelism is OpenMP; BLAS runs single-threaded inside (fastlstm._threads
# limits it around every kernel call). DESIGN.md section 4: threads split the gate
# columns / hidden units, never the batch.

cdef inline Py_ssize_t span_lo(Py_ssize_t n, Py_ssize_t parts, Py_ssize_t p) noexcept nogil:
    """First index of part p when [0, n) is cut into `parts` near-equal parts."""
    return n * p // parts


cdef inline int step_threads(Py_ssize_t B, Py_ssize_t H, int n_threads) noexcept nogil:
    """Threads for the per-step work: at least 16 hidden units and 2048 of B*H each.
    Below that a step's share is a microsecond or less, the order of one barrier,
    so fewer threads lose nothing."""
    cdef Py_ssize_t by_units = H // 16, by_work = B * H // 2048
    cdef Py_ssize_t n = min(<Py_ssize_t>n_threads, min(by_units, by_work))
    return <int>max(n, 1)


cdef inline void input_projection(const floating* x, const floating* Wx, const floating* b,
                                  floating* A, Py_ssize_t rows, Py_ssize_t I, Py_ssize_t N,
                                  int n_threads) noexcept nogil:
    """A := x @ Wx + b for x (rows, I), Wx (I, N), b (N,); rows split across threads."""
    cdef Py_ssize_t p, lo, hi
    for p in prange(n_threads, schedule='static', num_threads=n_threads):
        lo = span_lo(rows, n_threads, p)
        hi = span_lo(rows, n_threads, p + 1)
        fill_rows(A + lo * N, b, hi - lo, N)
        gemm(False, False, <int>(hi - lo), <int>N, <int>I, 1, x + lo * I, <int>I, Wx, <int>N,
             1, A + lo * N, <int>N)


cdef inline void gemm_split_rows(bint trans_b, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                 floating alpha, const floating* A, Py_ssize_t lda,
                                 const floating* B, Py_ssize_t ldb, floating beta,
                                 floating* C, Py_ssize_t ldc, int n_threads) noexcept nogil:
    """C := alpha * A @ op(B) + beta * C, the rows of C split across threads."""
    cdef Py_ssize_t p, lo, hi
    for p in prange(n_threads, schedule='static', num_threads=n_threads):
        lo = span_lo(M, n_threads, p)
        hi = span_lo(M, n_threads, p + 1)
        gemm(False, trans_b, <int>(hi - lo), <int>N, <int>K, alpha, A + lo * lda, <int>lda,
             B, <int>ldb, beta, C + lo * ldc, <int>ldc)


cdef inline void gemm_split_cols(bint trans_a, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                 floating alpha, const floating* A, Py_ssize_t lda,
                                 const floating* B, Py_ssize_t ldb, floating beta,
                                 floating* C, Py_ssize_t ldc, int n_threads) noexcept nogil:
    """C := alpha * op(A) @ B + beta * C, the columns of C split across threads."""
    cdef Py_ssize_t p, lo, hi
    for p in prange(n_threads, schedule='static', num_threads=n_threads):
        lo = span_lo(N, n_threads, p)
        hi = span_lo(N, n_threads, p + 1)
        gemm(trans_a, False, <int>M, <int>(hi - lo), <int>K, alpha, A, <int>lda,
             B + lo, <int>ldb, beta, C + lo, <int>ldc)


cdef inline void pack_units(const floating* W, floating* Wp, Py_ssize_t K, Py_ssize_t G,
                            Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Wp (K, G*n) := the G gate columns k*H + j, j in [j0, j1), of W (K, G*H), with
    n = j1 - j0 and gate k's columns at k*n: one thread's units as one contiguous
    panel, so that its per-step GEMM is a single call that reuses h's packing."""
    cdef Py_ssize_t n = j1 - j0, r, k, j
    for r in range(K):
        for k in range(G):
            for j in range(n):
                Wp[r * G * n + k * n + j] = W[r * G * H + k * H + j0 + j]


cdef inline void pack_panels(const floating* Wh, floating* Whp, Py_ssize_t H, Py_ssize_t G,
                             int P) noexcept nogil:
    """Whp (H*G*H,) := Wh (H, G*H) as P per-thread panels: thread p's units
    [j0, j1) as a contiguous (H, G*(j1 - j0)) block at Whp + H*G*j0."""
    cdef Py_ssize_t p, j0
    for p in prange(P, schedule='static', num_threads=P):
        j0 = span_lo(H, P, p)
        pack_units(Wh, Whp + H * G * j0, H, G, H, j0, span_lo(H, P, p + 1))


cdef inline void add_column_sums_split(floating* out, const floating* A, Py_ssize_t n_rows,
                                       Py_ssize_t n_cols, int n_threads) noexcept nogil:
    """out += A.sum(axis=0), the columns split across threads."""
    cdef Py_ssize_t p, lo, hi, r, k
    for p in prange(n_threads, schedule='static', num_threads=n_threads):
        lo = span_lo(n_cols, n_threads, p)
        hi = span_lo(n_cols, n_threads, p + 1)
        for r in range(n_rows):
            for k in range(lo, hi):
                out[k] += A[r * n_cols + k]


cdef inline void weight_grads(const floating* x, const floating* h0, const floating* y,
                              const floating* Wx, const floating* dAX, const floating* dAH,
                              floating* dWx, floating* dWh, floating* dx,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                              Py_ssize_t G, int n_threads) noexcept nogil:
    """The BPTT GEMMs after the time loop, each over all T*B rows at once:
        dWx = X.T @ dAX;  dWh = h0.T @ dAH[0] + Y[:-1].T @ dAH[1:];  dx = dAX @ Wx.T
    dAX, dAH (T, B, G*H) are the gradients of the input and recurrent
    pre-activations (one array for the RNN and LSTM, two for the GRU)."""
    gemm_split_cols(True, I, G * H, T * B, 1, x, I, dAX, G * H, 0, dWx, G * H, n_threads)
    gemm_split_cols(True, H, G * H, B, 1, h0, H, dAH, G * H, 0, dWh, G * H, n_threads)
    if T > 1:
        gemm_split_cols(True, H, G * H, (T - 1) * B, 1, y, H, dAH + B * G * H, G * H, 1,
                        dWh, G * H, n_threads)
    gemm_split_rows(True, T * B, I, G * H, 1, dAX, G * H, Wx, G * H, 0, dx, I, n_threads)
