# cython: language_level=3
"""Weights packed into panels (_common.pxd), held as arrays: the one-step kernels
(*_step, dense_step) take them packed once, since at batch 1 packing Wh again at
every step would cost more than the step.

    columns(W, b)       W (K, N) as ceil(N / U) column panels, zero past column N,
                        and b (N,) padded likewise: x W + b in whole panels (in
                        bf16 pairs with bf16)
    gate_blocks(W, G)   W (H, G*H) as the forward's time loop packs Wh: unit block
                        q, gate k at (q*G + k)*H*U
    unit_blocks(W)      W (H, N) as the backward's time loop packs Wh for dA Wh.T:
                        unit block q at q*N*U, rows of W as its columns

and, for the tests alone (tests/test_panels.py), gemm: the panel kernel itself.
"""
import numpy as np
from cython cimport floating

from _common cimport (pack_gate_blocks, pack_unit_blocks, panel_units, padded_units,
                      panel_gemm, fl_bf2, pack_gate_blocks_bf16)

from fastlstm._cy import sibling

mode = sibling(__name__, "_bf16").mode


def units(dtype):
    """U, the columns of one panel for dtype (float32 or float64)."""
    cdef float f = 0
    cdef double d = 0
    return panel_units(&f) if np.dtype(dtype) == np.float32 else panel_units(&d)


def columns(const floating[:, ::1] W, const floating[::1] b, bint bf16=False):
    """(Wp (K*Np,), bp (Np,)) for W (K, N), b (N,); Np = N rounded up to whole panels.
    With bf16 (float32), Wp holds bf16 pairs of rows (ceil(K/2)*Np,) as uint32."""
    cdef Py_ssize_t K = W.shape[0], N = W.shape[1], U = panel_units(&W[0, 0])
    cdef Py_ssize_t Np = padded_units(N, U)
    dtype = np.float32 if floating is float else np.float64
    Wp = np.empty((K + 1) // 2 * Np, np.uint32) if bf16 else np.empty(K * Np, dtype)
    bp = np.zeros(Np, dtype)
    bp[:N] = b
    cdef unsigned char[::1] Wp_v = Wp.view(np.uint8)
    with nogil:
        if bf16:
            pack_gate_blocks_bf16(<const float*>&W[0, 0], <fl_bf2*>&Wp_v[0], K, 1, N, 0,
                                  Np // U)
        else:
            pack_gate_blocks(&W[0, 0], <floating*>&Wp_v[0], K, 1, N, 0, Np // U)
    return Wp, bp


def gate_blocks(const floating[:, ::1] W, Py_ssize_t G, bint bf16=False):
    """W (H, G*H) packed as the forward's time loop packs Wh, every unit block;
    with bf16 (float32), as its bf16 loop does (pack_recurrent)."""
    cdef Py_ssize_t H = W.shape[0], U = panel_units(&W[0, 0])
    cdef Py_ssize_t nb = (H + U - 1) // U
    dtype = np.float32 if floating is float else np.float64
    Wp = np.empty(nb * G * ((H + 1) // 2) * U, np.uint32) if bf16 else \
        np.empty(nb * G * H * U, dtype)
    cdef unsigned char[::1] Wp_v = Wp.view(np.uint8)
    with nogil:
        if bf16:
            pack_gate_blocks_bf16(<const float*>&W[0, 0], <fl_bf2*>&Wp_v[0], H, G, H, 0, nb)
        else:
            pack_gate_blocks(&W[0, 0], <floating*>&Wp_v[0], H, G, H, 0, nb)
    return Wp


def step_weights(const floating[:, ::1] Wx, const floating[:, ::1] Wh,
                 const floating[::1] b, Py_ssize_t G, precision=None):
    """(Wxp, bp, Whp, mode): the weights of a cell with G gate blocks for its
    *_step, Wxp and Whp as bytes. With precision "bf16" (float32) they are bf16
    pairs and mode the kernels' bf16 mode (_bf16.mode), else 0."""
    cdef int m = mode(precision)
    Wxp, bp = columns(Wx, b, m != 0)
    return Wxp.view(np.uint8), bp, gate_blocks(Wh, G, m != 0).view(np.uint8), m


def unit_blocks(const floating[:, ::1] W):
    """W (H, N) packed as the backward's time loop packs Wh, every unit block."""
    cdef Py_ssize_t H = W.shape[0], N = W.shape[1], U = panel_units(&W[0, 0])
    cdef Py_ssize_t nb = (H + U - 1) // U
    dtype = np.float32 if floating is float else np.float64
    Wp = np.empty(nb * N * U, dtype)
    cdef floating[::1] Wp_v = Wp
    with nogil:
        pack_unit_blocks(&W[0, 0], &Wp_v[0], H, N, 0, nb)
    return Wp


def gemm(const floating[:, ::1] A, const floating[::1] P, Py_ssize_t npanels,
         Py_ssize_t pstride, floating[:, ::1] C, Py_ssize_t cstride, bint add,
         bint a_trans, const floating[::1] bias=None):
    """The panel kernel, for tests: for v < npanels, the U columns of C from
    v*cstride (+)= op(A) (M, K) @ panel v, the (K, U) block at P[v*pstride:]; op(A)
    is A (M, K), or with a_trans the transpose of A (K, M). Without add, C starts
    from bias (laid out as C's columns) where it is given."""
    cdef Py_ssize_t M = C.shape[0], U = panel_units(&C[0, 0])
    cdef Py_ssize_t K = A.shape[0] if a_trans else A.shape[1]
    if (A.shape[1] if a_trans else A.shape[0]) != M:
        raise ValueError(f"A: expected {M} rows of op(A), got {A.shape}")
    if (npanels - 1) * pstride + K * U > P.shape[0]:
        raise ValueError("P: too short for the panels asked for")
    if (npanels - 1) * cstride + U > C.shape[1]:
        raise ValueError("C: too narrow for the panels asked for")
    if bias is not None and bias.shape[0] < (npanels - 1) * cstride + U:
        raise ValueError("bias: too short for the panels asked for")
    cdef const floating* bp = NULL if bias is None else &bias[0]
    with nogil:
        panel_gemm(M, K, npanels, &A[0, 0], A.shape[1], &P[0], pstride, &C[0, 0],
                   C.shape[1], cstride, add, a_trans, bp)
