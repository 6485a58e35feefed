"""The Numba panel kernel (fastlstm/_numba/panels.py) and its packing, each on its
own against NumPy: every tile height (M up to 13, so whole tiles, the one or two
rows left over and the 3-5 left over), panel counts that are and are not whole
groups, the three starts, A transposed, widths that are and are not whole
vectors."""
import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit  # noqa: E402
from fastlstm._numba import common, panels  # noqa: E402
from fastlstm._numba.simd import lanes_of  # noqa: E402
from cells import gemm_close as close, padded  # noqa: E402

DTYPES = [np.float32, np.float64]
MODES = {"zero": panels.START_ZERO, "add": panels.START_C, "bias": panels.START_BIAS}


@njit
def gemm(*args):
    """panel_gemm, which kernels call, from Python."""
    panels.panel_gemm(*args)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 2, 3, 5, 6, 7, 8, 13])
@pytest.mark.parametrize("K", [1, 4, 17])
@pytest.mark.parametrize("npanels", [1, 3, 4, 9])
@pytest.mark.parametrize("mode", ["zero", "add", "bias", "a_trans"])
def test_gemm(dtype, M, K, npanels, mode):
    """Panels at a stride longer than K*U, C's panels apart by more than U, and
    offsets into every flat array."""
    U = lanes_of(np.dtype(dtype))
    rng = np.random.default_rng(M * 100 + K * 10 + npanels)
    a_trans = mode == "a_trans"
    A = rng.standard_normal((K, M) if a_trans else (M, K)).astype(dtype)
    pstride, cstride, a, p, c, b = K * U + 3 * U, 2 * U, 5, 7, 3, 2
    P = rng.standard_normal(p + npanels * pstride).astype(dtype)
    ldc = npanels * cstride + U
    C = rng.standard_normal(c + M * ldc).astype(dtype)
    bias = rng.standard_normal(b + ldc).astype(dtype)
    want = C[c:].reshape(M, ldc).copy()
    opA = A.T if a_trans else A
    for v in range(npanels):
        panel = P[p + v * pstride:p + v * pstride + K * U].reshape(K, U)
        cols = slice(v * cstride, v * cstride + U)
        start = {"add": want[:, cols], "bias": bias[b:][cols]}.get(mode, 0)
        want[:, cols] = start + opA.astype(np.float64) @ panel
    A1 = np.concatenate([np.full(a, np.nan, dtype), A.reshape(-1)])
    sr, sk = (1, M) if a_trans else (K, 1)
    gemm(M, K, npanels, A1, a, sr, sk, P, p, pstride, C, c, ldc, cstride,
         MODES.get(mode, panels.START_ZERO), bias, b)
    close(C[c:].reshape(M, ldc), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H, G, P", [(1, 1, 1), (5, 4, 1), (13, 3, 2), (40, 4, 3), (33, 1, 2)])
def test_gate_panels(dtype, H, G, P):
    """Thread p's panels, gate-major: panel k*(q1 - q0) + q - q0 holds Wh's columns
    k*H + q*U .. + U, zero past unit H."""
    U = lanes_of(np.dtype(dtype))
    W = np.random.default_rng(H).standard_normal((H, G * H)).astype(dtype)
    nb = -(-H // U)
    Wp = np.full(G * nb * U * H, np.nan, dtype)
    for p in range(P):
        q0, q1 = common.thread_blocks(H, U, P, p)
        panels.pack_gate_panels(W, Wp, G, q0, q1)
    for p in range(P):
        q0, q1 = common.thread_blocks(H, U, P, p)
        for k in range(G):
            for q in range(q0, q1):
                at = G * q0 * H * U + (k * (q1 - q0) + q - q0) * H * U
                np.testing.assert_array_equal(
                    Wp[at:at + H * U].reshape(H, U),
                    padded(W[:, k * H + q * U:k * H + min(q * U + U, H)], U))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H, N", [(1, 1), (5, 20), (13, 39), (40, 64), (9, 3)])
def test_unit_blocks(dtype, H, N):
    """Unit block q: rows q*U .. + U of W as its columns, an (N, U) panel."""
    U = lanes_of(np.dtype(dtype))
    W = np.random.default_rng(H + N).standard_normal((H, N)).astype(dtype)
    nb = -(-H // U)
    Wp = np.full(nb * N * U, np.nan, dtype)
    panels.pack_unit_blocks(W, Wp, 0, nb)
    for q in range(nb):
        np.testing.assert_array_equal(Wp.reshape(nb, N, U)[q], padded(W[q * U:q * U + U].T, U))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grads_against_numpy(dtype):
    """Both paths of common.weight_grads (the panel kernel where G*H is whole
    panels, np.dot where it is not), with dAX and dAH one array or two, more rows
    than a chunk, and batch-1 rows."""
    U = lanes_of(np.dtype(dtype))
    rng = np.random.default_rng(0)
    for T, B, I, H, N in [(70, 4, 2 * U, 3, 2 * U), (9, 1, 5, 3, 3 * U), (6, 3, 4, 5, 7)]:
        x, y = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
        h0, Wx = rng.standard_normal((B, H)), rng.standard_normal((I, N))
        dAX, dAH = rng.standard_normal((T, B, N)), rng.standard_normal((T, B, N))
        h_prev = np.concatenate([h0[None], y[:-1]]).reshape(T * B, H)
        for same in (True, False):
            second = dAX if same else dAH
            got = common.weight_grads(*(a.astype(dtype) for a in (x, h0, y, Wx, dAX)),
                                      second.astype(dtype), 2)
            want = ((dAX.reshape(-1, N) @ Wx.T).reshape(T, B, I),
                    x.reshape(-1, I).T @ dAX.reshape(-1, N),
                    h_prev.T @ second.reshape(-1, N))
            for g, w in zip(got, want):
                close(g, w, dtype)
