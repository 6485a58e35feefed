"""The rest of a training step (the Dense layer, the embedding's gradient, the
losses, the optimizers): every compiled backend against fastlstm.reference."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastlstm import backends, reference, threads
from cells import COMPILED, TOL

DTYPES = [np.float32, np.float64]
THREADS = [1, 3]


def close(actual, expected, dtype):
    assert actual.dtype == expected.dtype == dtype
    scale = max(np.abs(expected).max(), 1e-30)
    assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def draw(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(params=COMPILED)
def kernels(request):
    return backends.get_backend(request.param)


# (M, K, N): N a whole number of vectors or not (the vocabulary of the corpus is
# 33), K below one vector, M below and above a register tile
DENSE_SHAPES = [(1, 3, 1), (7, 5, 33), (50, 16, 8), (203, 40, 64), (64, 9, 17)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, K, N", DENSE_SHAPES)
@pytest.mark.parametrize("n_threads", THREADS)
def test_dense(kernels, dtype, M, K, N, n_threads):
    rng = np.random.default_rng(M * K * N)
    x, W, b, dy = (draw(rng, dtype, *s) for s in ((M, K), (K, N), (N,), (M, N)))
    with threads(n_threads):
        y = kernels.dense_forward(x, W, b)
        dx, dW, db = kernels.dense_backward(x, W, dy)
        none, dW2, _ = kernels.dense_backward(x, W, dy, need_dx=False)
    close(y, reference.dense_forward(x, W, b), dtype)
    for got, want in zip((dx, dW, db), reference.dense_backward(x, W, dy)):
        close(got, want, dtype)
    assert none is None
    close(dW2, dW, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, E, V", [(1, 1, 1), (37, 5, 4), (3000, 32, 33)])
@pytest.mark.parametrize("n_threads", THREADS)
def test_embedding_backward_sums_repeated_ids(kernels, dtype, M, E, V, n_threads):
    rng = np.random.default_rng(M)
    ids = rng.integers(0, V, M).astype(np.intp)
    dy = draw(rng, dtype, M, E)
    with threads(n_threads):
        dW = kernels.embedding_backward(ids, dy, V)
    close(dW, reference.embedding_backward(ids, dy, V), dtype)


def _keep(rng, M, kind):
    if kind == "all":
        return None
    keep = (rng.random(M) < 0.6).astype(np.uint8)
    if kind == "none":
        keep[:] = 0
    return keep


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, V", [(1, 1), (9, 33), (2500, 40)])
@pytest.mark.parametrize("keep", ["all", "some", "none"])
@pytest.mark.parametrize("n_threads", THREADS)
def test_softmax_xent(kernels, dtype, M, V, keep, n_threads):
    rng = np.random.default_rng(M + V)
    z = 4 * draw(rng, dtype, M, V)
    t = rng.integers(0, V, M).astype(np.intp)
    k = _keep(rng, M, keep)
    want_dz = np.empty_like(z)
    want = reference.softmax_xent(z, t, k, 0.25, want_dz)
    dz = np.empty_like(z)
    with threads(n_threads):
        got = kernels.softmax_xent(z, t, k, 0.25, dz)
        # in place: the gradient overwrites the logits
        z2 = z.copy()
        got2 = kernels.softmax_xent(z2, t, k, 0.25, z2)
    assert got == pytest.approx(want, rel=TOL[dtype], abs=TOL[dtype])
    assert got2 == pytest.approx(want, rel=TOL[dtype], abs=TOL[dtype])
    close(dz, want_dz, dtype)
    close(z2, want_dz, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, F", [(1, 1), (13, 3), (30000, 4)])
@pytest.mark.parametrize("keep", ["all", "some"])
@pytest.mark.parametrize("n_threads", THREADS)
def test_mse(kernels, dtype, M, F, keep, n_threads):
    rng = np.random.default_rng(M + F)
    p, y = draw(rng, dtype, M, F), draw(rng, dtype, M, F)
    k = _keep(rng, M, keep)
    want_dp = np.empty_like(p)
    want = reference.mse(p, y, k, 0.1, want_dp)
    dp = np.empty_like(p)
    with threads(n_threads):
        got = kernels.mse(p, y, k, 0.1, dp)
    assert got == pytest.approx(want, rel=TOL[dtype])
    close(dp, want_dp, dtype)


SIZES = [1, 19, 100003]   # the last above the size where the threads split the work


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("n_threads", THREADS)
def test_sum_squares(kernels, dtype, n, n_threads):
    a = draw(np.random.default_rng(n), dtype, n)
    with threads(n_threads):
        got = kernels.sum_squares(a)
    assert got == pytest.approx(reference.sum_squares(a), rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("n_threads", THREADS)
def test_adam_update(kernels, dtype, n, n_threads):
    rng = np.random.default_rng(n)
    p, g, m = (draw(rng, dtype, n) for _ in range(3))
    v = np.abs(draw(rng, dtype, n))
    want = [a.copy() for a in (p, g, m, v)]
    reference.adam_update(*want, 0.003, 0.9, 0.999, 1e-8)
    with threads(n_threads):
        kernels.adam_update(p, g, m, v, 0.003, 0.9, 0.999, 1e-8)
    for got, w in zip((p, g, m, v), want):
        close(got, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("n_threads", THREADS)
def test_sgd_update(kernels, dtype, n, momentum, n_threads):
    rng = np.random.default_rng(n)
    p, g, v = (draw(rng, dtype, n) for _ in range(3))
    want_p, want_v = p.copy(), v.copy()
    reference.sgd_update(want_p, g, want_v if momentum else None, 0.05, momentum)
    with threads(n_threads):
        kernels.sgd_update(p, g, v if momentum else None, 0.05, momentum)
    close(p, want_p, dtype)
    close(v, want_v, dtype)
