"""How many threads the compiled kernels use (their OpenMP loops), and the BLAS
thread limits around them.

get_num_threads() is the count set (default: the cores this process may use);
team_size() is what the kernels take, the same or fewer while other processes
hold some of the cores (_Governor). FASTLSTM_ADAPTIVE_THREADS=0 turns that off.
"""
import contextlib
import os
import time

from threadpoolctl import ThreadpoolController, threadpool_limits


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_num_threads = _cores()
_chosen = False          # set_num_threads or threads() has been called
_blas_limits = None


def get_num_threads():
    """The thread count set for the kernels (default: the cores this process may use)."""
    return _num_threads


def chosen():
    """True once a count was set (set_num_threads, threads()), not the default."""
    return _chosen


class _Governor:
    """Fewer threads while other processes hold cores.

    The kernels split each time step evenly across their team and wait for all of
    it at every step, so one thread that shares its core with another process
    holds the team back: with a busy loop on one of 2 cores, 2 threads trained at
    0.57 of the speed of 1 (bench/RESULTS.md, 2026-12-01). Linux counts, for each
    thread, the time it was runnable but waited for a core (schedstat). Every
    INTERVAL seconds, at a kernel call, the governor sums that waiting over the
    process's threads, as a fraction of the wall time; where a whole core or more
    was missing, the team shrinks by that many threads. After PROBE seconds it
    tries the full count again, and waits twice as long after each probe that
    still finds the cores taken (up to MAX_PROBE)."""

    INTERVAL = 0.25
    PROBE = 2.0
    MAX_PROBE = 32.0

    def __init__(self):
        self.enabled = (os.environ.get("FASTLSTM_ADAPTIVE_THREADS", "1") != "0"
                        and os.path.exists(f"/proc/{os.getpid()}/task"))
        self.cut = 0            # threads taken off the count set
        self.last = None        # (time, {tid: (run ns, wait ns)}) of the last sample
        self.probe_at = 0.0     # when to try the full count again
        self.probing = False    # the full count is on trial
        self.backoff = self.PROBE

    @staticmethod
    def _schedstat():
        out = {}
        folder = f"/proc/{os.getpid()}/task"
        for tid in os.listdir(folder):
            try:
                with open(f"{folder}/{tid}/schedstat") as f:
                    run, wait = f.read().split()[:2]
            except (OSError, ValueError):
                continue
            out[tid] = (int(run), int(wait))
        return out

    def team(self, n):
        """The threads to use out of n set."""
        if not self.enabled or n == 1:
            return n
        now = time.perf_counter()
        if self.last is not None and now - self.last[0] < self.INTERVAL:
            return max(1, n - self.cut)
        sample = self._schedstat()
        if self.last is not None:
            self._decide(now, n, sample)
        self.last = (now, sample)
        return max(1, n - self.cut)

    def _decide(self, now, n, sample):
        t0, before = self.last
        wall = (now - t0) * 1e9
        missing = sum(wait - before[tid][1] for tid, (run, wait) in sample.items()
                      if tid in before and run - before[tid][0] > 0.05 * wall) / wall
        lost = int(missing + 0.5)
        if lost >= 1 and n - self.cut > 1:
            self.backoff = min(self.MAX_PROBE, 2 * self.backoff) if self.probing \
                else self.PROBE
            self.cut = min(n - 1, self.cut + lost)
            self.probe_at = now + self.backoff
            self.probing = False
        elif self.cut and now >= self.probe_at:
            self.cut, self.probing = 0, True
        elif not self.cut:
            self.probing, self.backoff = False, self.PROBE


_governor = _Governor()


def team_size():
    """The threads the kernels' parallel regions take now: get_num_threads(), or
    fewer while other processes hold cores (_Governor)."""
    return _governor.team(_num_threads)


def _check(n):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n_threads: expected >= 1, got {n}")


def _set(n):
    global _num_threads, _chosen
    _num_threads = n
    _chosen = True


def _load_blas():
    """Load scipy's BLAS, which both compiled backends call, before threadpoolctl
    looks: it limits only the libraries loaded when it looks, and Numba loads
    scipy's BLAS late, when it first compiles. Missed, that BLAS ran threaded inside
    the kernels' own threads: 35x slower at 2 threads (bench/RESULTS.md)."""
    import scipy.linalg.cython_blas  # noqa: F401  (imported for its side effect)


def set_num_threads(n):
    """Use n threads from now on: in the compiled kernels, which split their GEMMs
    over their own threads, and as the BLAS limit elsewhere (the NumPy backend)."""
    global _blas_limits
    _check(n)
    _load_blas()
    if _blas_limits is not None:
        _blas_limits.restore_original_limits()
    _blas_limits = threadpool_limits(limits=n, user_api="blas")
    _set(n)


@contextlib.contextmanager
def threads(n):
    """Context manager: set_num_threads(n) inside the block only."""
    global _num_threads, _chosen
    _check(n)
    _load_blas()
    previous = _num_threads, _chosen
    with threadpool_limits(limits=n, user_api="blas"):
        _set(n)
        try:
            yield
        finally:
            _num_threads, _chosen = previous


_blas_libraries = None
_depth = 0


@contextlib.contextmanager
def single_threaded_blas():
    """Context manager the compiled kernels run under: BLAS on one thread, since the
    kernels split their work across their own OpenMP threads (a BLAS pool beside
    them oversubscribes the cores: bench/RESULTS.md).

    Nested uses cost nothing: fastlstm.train and Model.predict hold it around their
    whole loop, and each kernel call inside finds it held. The outermost sets each
    loaded BLAS library to one thread and back, about 2 us a library (threadpoolctl's
    own context manager took 37 us, a fifth of a generated character's budget)."""
    global _blas_libraries, _depth
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    if _blas_libraries is None:
        _load_blas()
        _blas_libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    saved = [lib.get_num_threads() for lib in _blas_libraries]
    for lib, n in zip(_blas_libraries, saved):
        if n != 1:
            lib.set_num_threads(1)
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        for lib, n in zip(_blas_libraries, saved):
            if n != 1:
                lib.set_num_threads(n)
