# Inline helpers shared by the cell kernels: row-major BLAS over the fused type
# `floating`, and the gate nonlinearities. Inline only, so no module backs this file.
from cython cimport floating
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


cdef inline void add_column_sums(floating* out, const floating* A, Py_ssize_t n_rows,
                                 Py_ssize_t n_cols) noexcept nogil:
    """out += A.sum(axis=0); A is (n_rows, n_cols) row-major."""
    cdef Py_ssize_t r, k
    for r in range(n_rows):
        for k in range(n_cols):
            out[k] += A[r * n_cols + k]
