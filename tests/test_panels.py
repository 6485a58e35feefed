"""The panel kernel (src_cy/panel_gemm.h) and the packing of weights into its
panels (src_cy/_common.pxd), each on its own against NumPy: odd M, K and panel
counts, add and bias, A transposed, widths that are and are not whole vectors."""
import numpy as np
import pytest

from cells import gemm_close as close, padded

from fastlstm import _cy

LEVELS = _cy.supported_levels()
pytestmark = pytest.mark.skipif(not LEVELS, reason="no Cython kernels built")


@pytest.fixture(params=LEVELS)
def _panels(request):
    """The _panels module of each level this machine runs: each has its own
    vector width, and so its own panels and register tiles."""
    return _cy.module("_panels", request.param)

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K, N", [(1, 1), (3, 8), (5, 17), (9, 40), (2, 64)])
def test_columns(_panels, dtype, K, N):
    U = _panels.units(dtype)
    rng = np.random.default_rng(K + N)
    W, b = rng.standard_normal((K, N)).astype(dtype), rng.standard_normal(N).astype(dtype)
    Wp, bp = _panels.columns(W, b)
    nv = -(-N // U)
    want = padded(W, nv * U).reshape(K, nv, U).transpose(1, 0, 2)   # panel v: (K, U)
    np.testing.assert_array_equal(Wp.reshape(nv, K, U), want)
    np.testing.assert_array_equal(bp, padded(b[None], nv * U)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H, G", [(1, 1), (5, 4), (13, 3), (16, 4), (33, 1)])
def test_gate_blocks(_panels, dtype, H, G):
    """Unit block q, gate k: Wh's columns k*H + q*U .. + U, zero past unit H."""
    U = _panels.units(dtype)
    W = np.random.default_rng(H).standard_normal((H, G * H)).astype(dtype)
    Wp = _panels.gate_blocks(W, G)
    nb = -(-H // U)
    panels = Wp.reshape(nb, G, H, U)
    for q in range(nb):
        for k in range(G):
            np.testing.assert_array_equal(
                panels[q, k], padded(W[:, k * H + q * U:k * H + min(q * U + U, H)], U))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H, N", [(1, 1), (5, 20), (13, 39), (16, 64), (9, 3)])
def test_unit_blocks(_panels, dtype, H, N):
    """Unit block q: rows q*U .. + U of W as its columns, an (N, U) panel."""
    U = _panels.units(dtype)
    W = np.random.default_rng(H + N).standard_normal((H, N)).astype(dtype)
    Wp = _panels.unit_blocks(W)
    nb = -(-H // U)
    panels = Wp.reshape(nb, N, U)
    for q in range(nb):
        np.testing.assert_array_equal(panels[q], padded(W[q * U:q * U + U].T, U))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 2, 5, 6, 7, 13])
@pytest.mark.parametrize("K", [1, 3, 17])
@pytest.mark.parametrize("npanels", [1, 2, 3, 5])
@pytest.mark.parametrize("mode", ["overwrite", "add", "bias", "a_trans", "a_trans+add"])
def test_gemm(_panels, dtype, M, K, npanels, mode):
    """Panels at a stride longer than K*U, and C's panels apart by more than U
    (as the step product writes the gate blocks of a unit block)."""
    U = _panels.units(dtype)
    rng = np.random.default_rng(M * 100 + K * 10 + npanels)
    a_trans, add = "a_trans" in mode, "add" in mode
    A = rng.standard_normal((K, M) if a_trans else (M, K)).astype(dtype)
    pstride, cstride = K * U + 3 * U, 2 * U
    P = rng.standard_normal(npanels * pstride).astype(dtype)
    C = rng.standard_normal((M, npanels * cstride + U)).astype(dtype)
    bias = rng.standard_normal(C.shape[1]).astype(dtype) if mode == "bias" else None
    want = C.copy()
    opA = A.T if a_trans else A
    for v in range(npanels):
        panel = P[v * pstride:v * pstride + K * U].reshape(K, U)
        cols = slice(v * cstride, v * cstride + U)
        start = C[:, cols] if add else (bias[cols] if bias is not None else 0)
        want[:, cols] = start + opA.astype(np.float64) @ panel
    _panels.gemm(A, P, npanels, pstride, C, cstride, add, a_trans, bias)
    close(C, want, dtype)


def test_gemm_refuses_buffers_too_small(_panels):
    A = np.zeros((3, 4), np.float32)
    U = _panels.units(np.float32)
    with pytest.raises(ValueError, match="P"):
        _panels.gemm(A, np.zeros(4 * U - 1, np.float32), 1, 4 * U,
                     np.zeros((3, U), np.float32), U, False, False)
    with pytest.raises(ValueError, match="C"):
        _panels.gemm(A, np.zeros(8 * U, np.float32), 2, 4 * U,
                     np.zeros((3, U), np.float32), U, False, False)
