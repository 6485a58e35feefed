"""The first training step on an empty Numba cache compiles on two cores
(fastlstm/_numba/ahead.py): a worker process caches the rest of the step while
the training process compiles the cell's kernels, which then load the worker's
from the cache. Fresh processes, each on its own empty cache folder."""
import json

import pytest

pytest.importorskip("numba")

TRAIN = """
    import json, os
    import numpy as np
    import fastlstm
    from fastlstm._numba import ahead, rnn, weight_grads
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 5, 2))
    model = fastlstm.Model.for_series(2, cell="rnn", hidden_size=8, dtype=np.float64,
                                      backend="numba", seed=0)
    fastlstm.train(model, X, X, epochs=1, batch_size=3, seq_len=5, progress=False)
    path = weight_grads._cache.cache_path
    print(json.dumps(dict(
        weights=[p.ravel().tolist() for p in model.params.values()],
        loaded=[sum(k.stats.cache_hits.values()) for k in (rnn.backward, weight_grads)],
        marker=os.path.exists(ahead.marker(path, "rnn", "float64")),
        worker_left=ahead._worker is not None)))
"""


def _train(python, cache, worker):
    run = python(TRAIN, NUMBA_CACHE_DIR=str(cache), FASTLSTM_NUMBA_WORKER=worker)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_the_first_train_loads_the_workers_kernels_with_the_same_numbers(tmp_path, python):
    """With the worker, the first train loads the BPTT kernel and the weight
    gradients it cached (the control without it compiles them), every weight as
    the control's; a second process on the same cache starts no worker."""
    first = _train(python, tmp_path / "a", "1")
    control = _train(python, tmp_path / "b", "0")
    again = _train(python, tmp_path / "a", "1")
    assert all(first["loaded"]) and first["marker"]
    assert not any(control["loaded"]) and not control["marker"]
    assert not again["worker_left"] and all(again["loaded"])
    for run in (control, again):
        for got, want in zip(first["weights"], run["weights"]):
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


SHARED = """
    import numpy as np
    from fastlstm._numba import ahead, weight_grads
    ahead.begin("rnn", "float64", weight_grads._cache.cache_path)
    ahead.ready("weight_grads")
    rng = np.random.default_rng(1)
    T, B, I, H = 3, 2, 16, 8
    x, h0, y = (rng.standard_normal(s) for s in ((T, B, I), (B, H), (T, B, H)))
    Wx, dA = rng.standard_normal((I, 4 * H)), rng.standard_normal((T, B, 4 * H))
    dx, dWx, dWh = weight_grads(x, h0, y, Wx, dA, dA, 1)
    h_prev = np.concatenate([h0[None], y[:-1]]).reshape(T * B, H)
    print(sum(weight_grads.stats.cache_hits.values()),
          np.abs(dWx - x.reshape(T * B, I).T @ dA.reshape(T * B, -1)).max() < 1e-12,
          np.abs(dWh - h_prev.T @ dA.reshape(T * B, -1)).max() < 1e-12,
          np.abs(dx - dA @ Wx.T).max() < 1e-12)
"""


def test_a_kernel_the_worker_cached_finds_its_shared_functions(tmp_path, python):
    """A process that compiled no shared function (symbols.py) loads the weight
    gradients from the worker's cache: the panel kernel they call by name is
    defined first (else LLVM would abort the process), and the numbers are the
    closed form's."""
    run = python(SHARED, NUMBA_CACHE_DIR=str(tmp_path))
    assert run.returncode == 0, run.stderr
    loaded, *right = run.stdout.split()
    assert loaded != "0" and right == ["True"] * 3


FORK = """
    import os, subprocess, sys
    from fastlstm._numba import ahead
    ahead._worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    with ahead._lock:
        pid = os.fork()
        if pid == 0:
            sys.exit(0 if ahead._worker is None and ahead._lock.acquire(timeout=1) else 1)
    _, status = os.waitpid(pid, 0)
    ahead._worker.kill()
    print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork")
def test_a_forked_child_leaves_the_parents_worker_alone(python):
    """A child forked while the worker runs, and while the parent holds ahead's
    lock, has no worker of its own to wait for or stop, and can take the lock."""
    run = python(FORK)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0"]
