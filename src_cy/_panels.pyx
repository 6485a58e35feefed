# cython: language_level=3
"""Weights packed into panels (_common.pxd), held as arrays: the one-step kernels
(*_step, dense_step) take them packed once, since at batch 1 packing Wh again at
every step would cost more than the step.

    columns(W, b)       W (K, N) as ceil(N / U) column panels, zero past column N,
                        and b (N,) padded likewise: x W + b in whole panels
    gate_blocks(W, G)   W (H, G*H) as the time loops pack Wh: unit block q, gate k
                        at ((q*G + k)*H*U)
"""
import numpy as np
from cython cimport floating

from _common cimport pack_gate_blocks, panel_units, padded_units


def columns(const floating[:, ::1] W, const floating[::1] b):
    """(Wp (K*Np,), bp (Np,)) for W (K, N), b (N,); Np = N rounded up to whole panels."""
    cdef Py_ssize_t K = W.shape[0], N = W.shape[1], U = panel_units(&W[0, 0])
    cdef Py_ssize_t Np = padded_units(N, U)
    dtype = np.float32 if floating is float else np.float64
    Wp = np.empty(K * Np, dtype)
    bp = np.zeros(Np, dtype)
    bp[:N] = b
    cdef floating[::1] Wp_ = Wp
    with nogil:
        pack_gate_blocks(&W[0, 0], &Wp_[0], K, 1, N, 0, Np // U)
    return Wp, bp


def gate_blocks(const floating[:, ::1] W, Py_ssize_t G):
    """W (H, G*H) packed as the forward's time loop packs Wh, every unit block."""
    cdef Py_ssize_t H = W.shape[0], U = panel_units(&W[0, 0])
    cdef Py_ssize_t nb = (H + U - 1) // U
    dtype = np.float32 if floating is float else np.float64
    Wp = np.empty(nb * G * H * U, dtype)
    cdef floating[::1] Wp_ = Wp
    with nogil:
        pack_gate_blocks(&W[0, 0], &Wp_[0], H, G, H, 0, nb)
    return Wp


def step_weights(const floating[:, ::1] Wx, const floating[:, ::1] Wh,
                 const floating[::1] b, Py_ssize_t G):
    """(Wxp, bp, Whp): the weights of a cell with G gate blocks for its *_step."""
    Wxp, bp = columns(Wx, b)
    return Wxp, bp, gate_blocks(Wh, G)
