"""The Numba backend's float32 gate functions against float64 NumPy."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")
common = pytest.importorskip("fastlstm._numba.common")


@numba.njit
def apply(f, a, out):
    for k in range(a.size):
        out[k] = f(a[k])


@numba.njit
def tanh_of(a):
    return common.tanh(a)


@numba.njit
def sigmoid_of(a):
    return common.sigmoid(a)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 7e-7), (np.float64, 1e-15)])
def test_tanh_and_sigmoid_are_accurate(dtype, tol):
    a = np.concatenate([np.linspace(-12, 12, 200001), [-1e30, -20, 20, 1e30, 0.0]])
    a = a.astype(dtype)
    wide = a.astype(np.float64)
    with np.errstate(over="ignore"):
        expected_sigmoid = 1 / (1 + np.exp(-wide))
    for f, expected in ((tanh_of, np.tanh(wide)), (sigmoid_of, expected_sigmoid)):
        out = np.empty_like(a)
        apply(f, a, out)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, expected, rtol=0, atol=tol)


def test_float32_tanh_keeps_nan_and_saturates_at_infinity():
    a = np.array([np.nan, np.inf, -np.inf], np.float32)
    out = np.empty_like(a)
    apply(tanh_of, a, out)
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [1, -1], rtol=0, atol=7e-7)


def test_lambert_convergent_is_tanh():
    P, Q = common.lambert_tanh(11)
    x = np.linspace(-9, 9, 1001)
    approx = x * np.polyval(P[::-1], x * x) / np.polyval(Q[::-1], x * x)
    np.testing.assert_allclose(approx, np.tanh(x), rtol=0, atol=1e-6)
    assert Q[0] == 1 and min(P + Q) > 0
