"""Thread control: the BLAS limits around the kernels reach every BLAS they call; the
governor shrinks the team while other processes hold cores, and only then; the wake
runs a small call on one thread while the team sleeps, and only then."""
import os

import pytest

from fastlstm import backends


def test_kernels_limit_scipys_blas_even_when_numba_loads_it_late(python):
    """Numba loads scipy's BLAS when it first compiles, inside the first kernel call.
    threadpoolctl limits only the libraries loaded when it looks, so the limit the
    kernels run under must be taken after that load; otherwise that BLAS runs
    threaded inside the kernels' threads (bench/RESULTS.md: 35x slower at 2
    threads). A fresh process, so that nothing has loaded scipy before."""
    pytest.importorskip("numba")
    r = python("""
        import sys
        import numpy as np
        import fastlstm
        from threadpoolctl import ThreadpoolController
        assert "scipy.linalg.cython_blas" not in sys.modules
        x = np.ones((2, 1, 3), np.float32)
        W = np.full((3, 12), 0.1, np.float32)
        fastlstm.ops.lstm_forward(x, W, W, np.zeros(12, np.float32), backend="numba")
        loaded = {lib.filepath for lib in
                  ThreadpoolController().select(user_api="blas").lib_controllers}
        limited = {lib.filepath for lib in fastlstm._threads._blas_libraries}
        assert any("scipy" in path for path in loaded), loaded
        assert loaded <= limited, loaded - limited
    """)
    assert r.returncode == 0, r.stderr


def governed(samples, n=2, cores=2):
    """A governor of `cores` cpus fed, for each interval since the last, (seconds,
    cores this process ran, cores idle, cores' worth of its threads' waiting for
    one): the threads it cut after each, and it."""
    from fastlstm._threads import _Governor
    g = _Governor()
    g.enabled, g.cpus = True, list(range(cores))
    now, run, idle, wait = 0.0, 0.0, 0.0, 0.0
    g.last = (now, (run, idle, {"1": (0, 0)}))
    cuts = []
    for seconds, ran, idled, waited in samples:
        now += seconds
        run, idle, wait = (v + x * seconds * 1e9 for v, x in
                           ((run, ran), (idle, idled), (wait, waited)))
        sample = (run, idle, {"1": (int(run), int(wait))})
        g._decide(now, n, sample)
        g.last = (now, sample)
        cuts.append(g.cut)
    return cuts, g


def test_governor_takes_a_thread_off_while_a_process_holds_a_core_and_back_at_once():
    """Another process on one of 2 cores: this one runs on 1 core's worth, none is
    idle, and its threads waited for a core: a thread comes off. It stays off while
    the other process runs (none idle, though the smaller team waits no more);
    the interval after it ends shows the core idle, and the full team is back (no
    probing, no backoff)."""
    busy = [(0.25, 1.0, 0.0, 0.8)] + [(0.25, 1.0, 0.0, 0.0)] * 3
    ended = [(0.25, 1.0, 1.0, 0.0), (0.25, 2.0, 0.0, 0.0)]
    assert governed(busy + ended)[0] == [1, 1, 1, 1, 0, 0]


def test_governor_counts_this_processs_other_threads_as_its_own():
    """Another runtime's pool in this process (ONNX Runtime's spinning threads, a
    data loader) runs beside the kernels, and both wait for cores: the cores are
    this process's all the same, no other holds one, the team stays whole."""
    assert governed([(0.25, 2.0, 0.0, 1.0)] * 4)[0] == [0, 0, 0, 0]
    assert governed([(0.25, 3.9, 0.1, 2.0)] * 2, n=4, cores=4)[0] == [0, 0]


def test_governor_ignores_processes_that_ran_while_this_one_was_idle():
    """A benchmark's peers take turns: the other ran on both cores while this one
    waited for its turn, and this one never waited for a core."""
    assert governed([(0.25, 0.5, 0.0, 0.0)] * 3)[0] == [0, 0, 0]


def test_governor_leaves_one_thread_and_quiet_machines_alone():
    quiet = [(0.25, 0.1, 1.9, 0.0), (0.25, 2.0, 0.0, 0.0)]
    assert governed(quiet)[0] == [0, 0]
    assert governed([(0.25, 1.0, 0.0, 1.0)], n=1)[0] == [0]
    assert governed([(0.25, 1.0, 0.0, 7.0)] * 2, n=8, cores=8)[0] == [7, 7]


def woken(calls, n=2, wake_s=0.004):
    """A _Wake on a clock of its own fed calls (seconds since the last, work in
    multiply-adds), whose probe takes wake_s: the threads each call got, and the
    probes made."""
    from fastlstm._threads import _Wake
    now, probes = [0.0], []

    def probe(threads):
        probes.append(threads)
        now[0] += wake_s

    w = _Wake(probe, clock=lambda: now[0])
    w.enabled = True
    got = []
    for gap, work in calls:
        now[0] += gap
        got.append(w.team(n, work))
    return got, probes, w


def test_wake_a_small_call_after_idle_runs_on_one_thread_once_a_wake_was_timed():
    """The first call finds no wake timed and wakes the team (timing 4 ms); a small
    call 200 ms later (10 us of work: 5 us lost on one thread) runs on one."""
    got, probes, w = woken([(0.2, 1e6), (0.2, 1e5)])
    assert got == [2, 1] and probes == [2]
    assert w.wake == pytest.approx(0.004)


def test_wake_the_team_serves_calls_back_to_back_without_probing():
    got, probes, _ = woken([(0.2, 1e6)] + [(1e-5, 1e5)] * 5)
    assert got == [2] * 6 and probes == [2]


def test_wake_a_large_call_after_idle_wakes_the_team():
    """10 ms on one thread loses 5 ms on 2: more than the 4 ms wake."""
    got, probes, _ = woken([(0.2, 1e6), (0.2, 1e8)])
    assert got == [2, 2] and probes == [2, 2]


def test_wake_a_run_of_small_calls_wakes_the_team_once_its_losses_pass_a_wake():
    """Calls of 0.1 ms each, 10 us apart, after idle: each loses 0.05 ms on one
    thread; the 81st would bring the run's loss past the 4.01 ms of a wake, and
    wakes the team."""
    got, probes, _ = woken([(0.2, 1e6), (0.2, 1e6)] + [(1e-5 + 1e-4, 1e6)] * 100,
                           wake_s=0.00401)
    assert got[1:81] == [1] * 80 and got[81:] == [2] * 21, got
    assert probes == [2, 2]


def test_wake_calls_further_apart_than_the_team_stays_awake_never_wake_it():
    """A server's small calls 50 ms apart: a wake would not serve the next call, so
    what each loses on one thread does not add up."""
    got, probes, _ = woken([(0.2, 1e6)] + [(0.05, 1e6)] * 200)
    assert got[1:] == [1] * 200 and probes == [2]


def test_wake_a_run_announced_ahead_wakes_the_team_at_its_first_call():
    """After a 4 ms wake was timed, a small call alone stays on one thread; the same
    call announced as the first of a run of 1e8 multiply-adds (5 ms lost on one
    thread) wakes the team, and the announcement is spent by that call."""
    from fastlstm._threads import _Wake
    now = [0.0]
    w = _Wake(lambda n: now.__setitem__(0, now[0] + 0.004), clock=lambda: now[0])
    w.enabled, w.wake = True, 0.004
    now[0] = 1.0
    assert w.team(2, 1e5) == 1
    now[0] = 2.0
    w.ahead = 1e8
    assert w.team(2, 1e5) == 2 and w.ahead == 0.0


def test_stepper_announces_the_work_of_its_steps(monkeypatch):
    """Stepper.expect(n): n steps of (E + H) * 4H multiply-adds for the LSTM and
    H * V for the head, a row, times its rows."""
    import fastlstm
    from fastlstm import stepper as stepper_module
    told = []
    monkeypatch.setattr(stepper_module, "expect", told.append)
    V, E, H = 11, 5, 7
    model = fastlstm.Model.for_tokens(V, hidden_size=H, embed_size=E)
    s = model.stepper(batch_size=3)
    s.expect(20)
    assert told == [20 * 3 * ((E + H) * 4 * H + H * V)]


def test_wake_learns_a_cheaper_wake_by_halves_and_a_dearer_one_at_once():
    from fastlstm._threads import _Wake
    w = _Wake(lambda n: None)
    w.wake, times = 0.008, iter([0.0, 0.001, 0.0, 0.02])
    w.clock = lambda: next(times)
    w._time_wake(2)
    assert w.wake == pytest.approx(0.004)
    w._time_wake(2)
    assert w.wake == 0.02


def test_wake_leaves_one_thread_unknown_work_and_the_switch_off_alone():
    from fastlstm._threads import _Wake
    w = _Wake(lambda n: pytest.fail("probed"), clock=lambda: 1.0)
    w.enabled, w.wake = True, 1.0
    assert w.team(1, 1e3) == 1 and w.team(4, None) == 4
    w.enabled = False
    assert w.team(4, 1e3) == 4


def test_wake_without_its_probe_takes_the_team_for_every_call(monkeypatch):
    """A build whose kernels predate the probe (fastlstm._cy._team missing): the
    first cold call takes the team, and the wake turns itself off."""
    import sys
    from fastlstm._threads import _Wake
    monkeypatch.setitem(sys.modules, "fastlstm._cy._team", None)
    w = _Wake(clock=lambda: 1.0)
    w.enabled = True
    assert w.team(2, 1e3) == 2 and not w.enabled and w.team(2, 1e3) == 2


@pytest.mark.skipif(not backends.cython_levels(), reason="no Cython backend")
def test_wake_live_a_small_call_after_idle_keeps_its_numbers(python):
    """In a fresh process (the wake on): a forward at B1 H128 back to back, then
    after 0.2 s idle with a wake timed dearer than the call; that call runs on one
    thread (the run's loss is owed) and gives the same y up to rounding."""
    r = python("""
        import time
        import numpy as np
        import fastlstm
        from fastlstm import _threads, ops
        fastlstm.set_num_threads(2)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((20, 1, 128)).astype(np.float32)
        Wx, Wh = (0.1 * rng.standard_normal((128, 512)).astype(np.float32) for _ in "xh")
        b = np.zeros(512, np.float32)
        hot = ops.lstm_forward(x, Wx, Wh, b, cache=False)[0]
        _threads._wake.wake = 1.0
        time.sleep(0.2)
        cold = ops.lstm_forward(x, Wx, Wh, b, cache=False)[0]
        assert _threads._wake.owed > 0, _threads._wake.owed
        np.testing.assert_allclose(cold, hot, rtol=1e-6, atol=1e-7)
        from fastlstm._cy._team import wake
        assert wake(2) == 2
    """, FASTLSTM_ADAPTIVE_THREADS="1")
    assert r.returncode == 0, r.stdout + r.stderr


LIVE = """
    import subprocess, sys, threading, time
    import numpy as np
    import fastlstm
    from fastlstm import ops
    from fastlstm._threads import team_size
    fastlstm.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 64, 128)).astype(np.float32)
    Wx, Wh = (0.1 * rng.standard_normal((128, 512)).astype(np.float32) for _ in "xh")
    b = np.zeros(512, np.float32)

    def full_team(seconds):
        teams, t0 = [], time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            ops.lstm_forward(x, Wx, Wh, b, cache=False)
            teams.append(team_size())
        return np.mean(np.array(teams) == 2)
"""


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) != 2,
                    reason="the live governor tests are written for 2 cores under Linux")
def test_live_a_busy_process_takes_a_thread_off_until_it_ends(python):
    r = python(LIVE + """
    alone = full_team(1.0)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)
    beside = full_team(2.0)
    busy.kill(); busy.wait()
    full_team(0.6)   # the interval that saw it end, and the next
    after = full_team(1.0)
    print(alone, beside, after)
    assert alone > 0.9 and beside < 0.4 and after > 0.9, (alone, beside, after)
    """)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) != 2,
                    reason="the live governor tests are written for 2 cores under Linux")
def test_live_another_runtimes_pool_in_this_process_leaves_the_team_whole(python):
    """ONNX Runtime's intra-op pool of 2 threads, spinning between calls as it
    does by default, busy in a thread of this process."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    r = python(LIVE + """
    import onnxruntime as ort
    import fastlstm
    model = fastlstm.Model.for_series(128, hidden_size=128)
    proto = fastlstm.to_onnx(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"x": rng.standard_normal((64, 50, 128)).astype(np.float32)}
    stop = []

    def pool():
        while not stop:
            session.run(None, feed)

    neighbour = threading.Thread(target=pool)
    neighbour.start()
    try:
        beside = full_team(2.0)
    finally:
        stop.append(1)
        neighbour.join()
    print(beside)
    assert beside > 0.9, beside
    """)
    assert r.returncode == 0, r.stdout + r.stderr
