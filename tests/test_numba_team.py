"""One parallel region for a whole time loop (fastlstm/_numba/team.py): the
threads meet, then wait for each other at a barrier per step; where they cannot
all run at once, the kernels run the loop on one thread, with the same numbers."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")

from fastlstm import reference  # noqa: E402
from fastlstm._numba import lstm  # noqa: E402
from fastlstm._numba.team import barrier, meet, team_state, went_alone  # noqa: E402


@numba.njit(parallel=True)
def _ring(T, P, out, state):
    """out[t, p] = out[t-1, next thread's] + 1: wrong wherever a thread reads a
    step its neighbour has not finished."""
    for p in numba.prange(P):
        if meet(state, P):
            for t in range(T):
                out[t, p] = out[t - 1, (p + 1) % P] + 1 if t else p
                barrier(state, P)


def test_the_threads_wait_for_each_other_at_every_step():
    P = min(2, numba.get_num_threads())
    if P < 2:
        pytest.skip("one thread")
    T = 5000
    out, state = np.full((T, P), -1, np.int64), team_state()
    _ring(T, P, out, state)
    assert not went_alone(state)
    steps = np.arange(T)[:, None]
    assert (out == (np.arange(P)[None, :] + steps) % P + steps).all()


def test_a_team_that_cannot_meet_runs_the_loop_on_one_thread():
    """prange(2) on one Numba thread runs its iterations one after the other: the
    first gives up waiting for the second, no thread starts the loop, and the LSTM
    kernel's one-thread loop gives the reference's numbers."""
    rng = np.random.default_rng(0)
    T, B, H = 5, 4, 64
    x, Wx, Wh = (rng.standard_normal(s) * 0.3 for s in ((T, B, H), (H, 4 * H), (H, 4 * H)))
    b, h0, c0 = np.zeros(4 * H), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    y, c, gates = np.empty((T, B, H)), np.empty((T, B, H)), np.empty((T, B, 4 * H))
    hT, cT = h0.copy(), c0.copy()
    ring, state = np.full((3, 2), -1, np.int64), team_state()
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _ring(3, 2, ring, state)
        lstm.forward(x, Wx, Wh, b, h0, c0, y, c, gates, hT, cT, np.full(T, B, np.intp), 2)
    finally:
        numba.set_num_threads(threads)
    assert went_alone(state) and (ring == -1).all()
    want_y, want_hT, want_cT, _ = reference.lstm_forward(x, Wx, Wh, b, h0, c0)
    for got, want in ((y, want_y), (hT, want_hT), (cT, want_cT)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
