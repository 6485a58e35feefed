"""One time step at a time (generation): every backend's *_step on weights
prepared once against the reference's forward over one step, and dense_step
against dense_forward."""
import numpy as np
import pytest

from fastlstm import backends, reference, threads
from cells import COMPILED, GATES, TOL, assert_same, problem

DTYPES = [np.float32, np.float64]
# B = 1 (generation) and a beam; H not a multiple of a vector; B*H large enough for
# the threads to split the units
SHAPES = [(1, 3, 5), (1, 32, 256), (8, 7, 13), (65, 5, 70)]


def step(kernels, cell, p):
    """h_next (and c) from one call of kernels.<cell>_step on p's step 0."""
    H = p["Wh"].shape[0]
    biases = (p["bx"], p["bh"]) if cell == "gru" else (p["b"],)
    weights = getattr(kernels, f"{cell}_step_weights")(p["Wx"], p["Wh"], *biases)
    h = p["h0"].copy()
    h_next = np.full_like(h, np.nan)
    if cell == "lstm":
        c = p["c0"].copy()
        kernels.lstm_step(weights, p["x"][0], h, c, h_next)
        return dict(hT=h_next, cT=c)
    getattr(kernels, f"{cell}_step")(weights, p["x"][0], h, h_next)
    assert h_next.shape == (p["x"].shape[1], H)
    return dict(hT=h_next)


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("B, I, H", SHAPES)
@pytest.mark.parametrize("n_threads", [1, 3])
def test_step_equals_one_step_of_the_forward(backend, cell, dtype, B, I, H, n_threads):
    p, _ = problem(cell, 1, B, I, H, dtype, seed=B + H)
    out = getattr(reference, f"{cell}_forward")(*p.values())
    want = dict(hT=out[1], cT=out[2]) if cell == "lstm" else dict(hT=out[1])
    with threads(n_threads):
        got = step(backends.get_backend(backend), cell, p)
    assert_same(want, got, dtype)


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("B, K, N", [(1, 5, 33), (3, 256, 40), (7, 9, 8)])
def test_dense_step_equals_dense_forward(backend, dtype, B, K, N):
    rng = np.random.default_rng(B + K + N)
    x, W, b = (rng.standard_normal(s).astype(dtype) for s in ((B, K), (K, N), (N,)))
    kernels = backends.get_backend(backend)
    y = kernels.dense_step(kernels.dense_step_weights(W, b), x)
    want = reference.dense_forward(x, W, b)
    np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(want).max())
