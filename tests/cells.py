"""What every test of the kernels shares: the cells, the tolerance table, random
problems and a call that runs forward + backward through fastlstm.ops; the panel kernels'
comparisons with NumPy."""
import numpy as np
from numpy.testing import assert_allclose

from fastlstm import backends, ops
from fastlstm.cells import CELLS

GATES = {name: cell.G for name, cell in CELLS.items()}
# Relative to the largest magnitude of the expected array (docs/DESIGN.md, "Tests").
TOL = {np.float64: 1e-10, np.float32: 1e-4}
OUTPUTS = {name: cell.forward_outputs + cell.backward_outputs
           for name, cell in CELLS.items()}
# Every compiled backend this machine runs, each instruction-set level of the
# Cython kernels on its own ("cython:avx2"), so that every grid runs once per level.
COMPILED = backends.cython_levels() + [
    b for b in backends.available_backends() if b == "numba"]


def problem(cell, T, B, I, H, dtype=np.float64, seed=0, dy=True, zero_state=False):
    """Random inputs for one cell: dict of forward arguments and output gradients."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]

    def draw(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    p = dict(x=draw(T, B, I), Wx=draw(I, G * H, scale=0.5), Wh=draw(H, G * H, scale=0.5))
    if cell == "gru":
        p.update(bx=draw(G * H, scale=0.5), bh=draw(G * H, scale=0.5))
    else:
        p["b"] = draw(G * H, scale=0.5)
    p["h0"] = None if zero_state else draw(B, H)
    if cell == "lstm":
        p["c0"] = None if zero_state else draw(B, H)
    grads = dict(dy=draw(T, B, H) if dy else None, dhT=draw(B, H))
    if cell == "lstm":
        grads["dcT"] = draw(B, H)
    return p, grads


def run(cell, backend, p, grads, lengths=None):
    """Forward then backward through fastlstm.ops; returns {name: array}."""
    fwd = getattr(ops, f"{cell}_forward")(**p, lengths=lengths, backend=backend)
    bwd = getattr(ops, f"{cell}_backward")(fwd[-1], **grads, backend=backend)
    return dict(zip(OUTPUTS[cell], list(fwd[:-1]) + list(bwd)))


def assert_same(expected, actual, dtype):
    """Each array of actual equals expected to TOL[dtype] of expected's scale."""
    assert expected.keys() == actual.keys()
    for name in expected:
        e, a = expected[name], actual[name]
        assert a.dtype == e.dtype == dtype, name
        assert a.shape == e.shape, name
        scale = max(np.abs(e).max(), 1e-30)
        assert_allclose(a, e, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=name)


def gemm_close(a, b, dtype):
    """A panel kernel's product equal to NumPy's up to its dtype's rounding."""
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def padded(W, width):
    """W with zero columns up to width."""
    out = np.zeros((W.shape[0], width), W.dtype)
    out[:, :W.shape[1]] = W
    return out
