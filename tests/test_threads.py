"""Thread control: the BLAS limits around the kernels reach every BLAS they call; the
governor shrinks the team while other processes hold cores, and only then."""
import os

import pytest


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
