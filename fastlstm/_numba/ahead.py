"""A training step's first compile on two cores.

Numba compiles one function at a time, under a lock that covers the whole
process, and a first training step on an empty disk cache spends 20-30 s
compiling (bench/RESULTS.md). So the first training forward of a cell and dtype
starts a worker process that compiles part of the step into the same disk cache
(WORKER: the cell's BPTT kernel, the weight gradients, the gradient norm, the
optimizers, the embedding's gradient, softmax_xent; compile_training in
fastlstm._numba), while this process compiles the forward, then AFTER_FORWARD. The worker prints each kernel's name once it is cached; a wrapper
about to call one waits for that line (ready), and the kernel loads from the
cache instead of compiling here.

No worker where the cache already holds the worker's kernels (a file the worker
writes last says so), where fewer than two cores are at hand, where the OS has no
fcntl to lock the cache's saves (jit.py), or where FASTLSTM_NUMBA_WORKER=0. A worker that fails costs nothing but the wait:
whatever it did not cache compiles here, as without it.
"""
import atexit
import os
import subprocess
import sys
import threading

import numba

from .jit import HERE, fcntl, source_stamp
from .symbols import register_cached

# The package's parent folder: the worker imports this very copy of fastlstm.
_ROOT = os.path.dirname(os.path.dirname(HERE))
# What the worker compiles, in this order (fastlstm._numba._compile names them):
# first what does not call the panel kernel (symbols.py), which the training
# process caches meanwhile, in its forward, so that the worker may load it for the
# last two.
WORKER = ("softmax_xent", "sum_squares", "adam_update", "sgd_update", "embedding_backward",
          "bptt", "weight_grads")
# What the training process compiles after its first forward; mse, the other
# loss, when it is called.
AFTER_FORWARD = ("dense_backward",)
_STAMP = source_stamp(HERE)[:16]
_lock = threading.Lock()
_begun = set()      # (cell, dtype name) this process has started (or needed no) worker for
_worker = None      # the running worker's Popen
_done = set()       # kernel names the worker has cached


def enabled():
    """Whether a first training forward may start a worker here."""
    if os.environ.get("FASTLSTM_NUMBA_WORKER", "1").strip() == "0" or fcntl is None:
        return False
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(
        os.cpu_count() or 1)
    return len(cores) >= 2


def marker(cache_path, cell, dtype):
    """The file the worker writes into the kernels' cache folder once every kernel
    of its cell and dtype is cached, for this source of the package and this Numba."""
    return os.path.join(cache_path, f"fastlstm-training-{cell}-{dtype}-{_STAMP}-"
                        f"numba{numba.__version__}.done")


def begin(cell, dtype, cache_path):
    """Called by the first forward with a cache of each cell and dtype: starts the
    worker for them unless the cache at cache_path (the kernels' folder) holds its
    kernels already. Returns whether one started: then this process should compile
    AFTER_FORWARD now, while the worker runs."""
    global _worker
    if (cell, dtype) in _begun:   # every training forward asks: no lock for the answer
        return False
    with _lock:
        if (cell, dtype) in _begun:
            return False
        _begun.add((cell, dtype))
        done = marker(cache_path, cell, dtype)
        if _worker is not None or not enabled() or os.path.exists(done):
            return False
        env = dict(os.environ, FASTLSTM_NUMBA_WORKER="0")
        script = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
                  f"from fastlstm._numba import compile_training; "
                  f"compile_training({cell!r}, {dtype!r}, {done!r})")
        try:
            _worker = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=_ROOT,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return False
        _done.clear()
        return True


def ready(name):
    """Waits until the worker has cached kernel name (its last: until it has
    ended, its marker written), or has ended; then the shared functions
    (symbols.py) it cached are defined here, before any kernel that calls them
    loads."""
    global _worker
    if _worker is None or name not in WORKER:
        return
    with _lock:
        if _worker is None or name in _done:
            return
        while True:
            line = _worker.stdout.readline()
            if not line:
                _worker.wait()
                _worker = None
                break
            _done.add(line.strip())
            if line.strip() == name and not _done.issuperset(WORKER):
                break
        register_cached()


def _stop():
    """At exit, a worker still compiling is stopped: the cache writes each file
    whole (a temporary file renamed), so nothing half-written stays."""
    if _worker is not None:
        _worker.kill()
        _worker.wait()


def _forget():
    """In a forked child: the worker is the parent's, to wait for and to stop (and
    a lock the parent held at the fork would stay held here)."""
    global _worker, _lock
    _worker, _lock = None, threading.Lock()


atexit.register(_stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)
