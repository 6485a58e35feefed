"""A function compiled once and called by name from kernels (fastlstm/_numba/
symbols.py): scalars and arrays reach it as the kernel passed them, from a
parallel loop too, and an array of another layout is a typing error, not a wrong
read."""
import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit, prange, types  # noqa: E402
from numba.core.errors import TypingError  # noqa: E402
from fastlstm._numba.symbols import Shared, array  # noqa: E402


@njit
def scaled_rows(k, rows, a, out):
    """out[r] = k * a[r] + rows[r], for r < out.shape[0]."""
    for r in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[r, j] = k * a[r, j] + rows[r]


def _scaled_rows_c(k, rows, a, out):
    scaled_rows(k, rows[0], a[0], out[0])


def _scaled_rows_args(dtype):
    return types.intp, array(types.intp, 1), array(dtype, 2), array(dtype, 2)


scaled = Shared(_scaled_rows_c, "test_scaled_rows", _scaled_rows_args).caller()


@njit(parallel=True)
def blocks_of_rows(k, rows, a, out, P):
    """Each of P parts of the rows through the shared function."""
    n = a.shape[0]
    for p in prange(P):
        lo, hi = n * p // P, n * (p + 1) // P
        scaled(k, rows[lo:hi], a[lo:hi], out[lo:hi])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P", [1, 3])
def test_arrays_and_scalars_reach_the_shared_function(dtype, P):
    rng = np.random.default_rng(P)
    a = rng.standard_normal((7, 5)).astype(dtype)
    rows = np.arange(7, dtype=np.intp)
    out = np.full_like(a, np.nan)
    blocks_of_rows(3, rows, a, out, P)
    # int k and rows make Numba's arithmetic float64, rounded once into out
    np.testing.assert_array_equal(out, (3 * a.astype(np.float64) + rows[:, None]).astype(dtype))


@njit
def columns(a, out):
    scaled(1, np.zeros(a.shape[0], np.intp), a[:, ::2], out)


def test_an_array_of_another_layout_is_a_typing_error():
    a = np.zeros((4, 6))
    with pytest.raises(TypingError, match="test_scaled_rows"):
        columns(a, np.zeros((4, 3)))
