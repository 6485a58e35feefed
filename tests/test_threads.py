"""Thread control: the BLAS limits around the kernels reach every BLAS they call."""
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


def governed(samples, n=2):
    """A governor fed (time s, {tid: (run s, wait s)}) samples of n threads set: the
    threads it cut after each sample, and the governor."""
    from fastlstm._threads import _Governor
    g = _Governor()
    g.enabled = True
    cuts = []
    for now, tasks in samples:
        sample = {tid: (int(run * 1e9), int(wait * 1e9)) for tid, (run, wait) in tasks.items()}
        if g.last is not None:
            g._decide(now, n, sample)
            cuts.append(g.cut)
        g.last = (now, sample)
    return cuts, g


def test_governor_takes_a_thread_off_while_a_core_is_taken_and_probes_back():
    """Two threads each waiting 40% of 0.25 s for a core: a core is missing, one
    thread comes off. Alone, the other waits no more, and the cut stays until the
    probe at 2 s; the probe finds the core still taken, so the next one waits twice
    as long (4 s); that one finds the cores free, and the full count stays."""
    busy = [(0.0, {"1": (0, 0), "2": (0, 0)}), (0.25, {"1": (0.25, 0.1), "2": (0.25, 0.1)})]
    alone = [(t, {"1": (0.25 + t, 0.1), "2": (0.25, 0.1)}) for t in (0.5, 1.0, 2.0)]
    probe = [(2.3, {"1": (2.55, 0.1), "2": (0.25, 0.1)}),
             (2.55, {"1": (2.8, 0.2), "2": (0.5, 0.2)})]
    free = [(2.8, {"1": (3.05, 0.2), "2": (0.5, 0.2)}),
            (6.6, {"1": (6.85, 0.2), "2": (0.5, 0.2)}),
            (6.85, {"1": (7.1, 0.2), "2": (0.75, 0.2)})]
    cuts, g = governed(busy + alone + probe)
    assert cuts == [1, 1, 1, 1, 0, 1]
    assert g.probe_at == pytest.approx(2.55 + 4.0)
    cuts, _ = governed(busy + alone + probe + free)
    assert cuts[-3:] == [1, 0, 0]


def test_governor_leaves_one_thread_and_quiet_machines_alone():
    quiet = [(0.0, {"1": (0, 0), "2": (0, 0)}), (0.25, {"1": (0.25, 0.001), "2": (0.25, 0.0)})]
    assert governed(quiet)[0] == [0]
    assert governed(quiet, n=1)[0] == [0]
