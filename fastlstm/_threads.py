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


def _cpus():
    """The cpus this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


_num_threads = len(_cpus())
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
    0.57 of the speed of 1 (bench/RESULTS.md, 2026-12-01). Every INTERVAL seconds,
    at a kernel call, the governor reads two things over the interval:

    - others: how much of the cores this process may use went neither to it nor
      to idleness (/proc/self/stat, /proc/stat), i.e. to other processes. Threads
      of this process that are not the kernels' (another runtime's pool, a data
      loader) are this process's own time here;
    - waited: how long this process's threads were runnable but waited for a
      core (schedstat), which only happens while they run.

    A full team loses a thread for each whole core that both show: other
    processes held it, and this process waited for it. Either alone is not enough:
    another runtime's pool in this process makes the kernels wait, but holds no
    core of another process (counting waits alone took it for a competing
    process: 0.57 of the speed beside ONNX Runtime's pool, on a Zen 2); another
    process that ran while this one was idle (a peer of a benchmark taking turns)
    was no competition. A cut team stays cut while other processes hold the
    cores, and is whole again the first interval that finds them idle or ours."""

    INTERVAL = 0.25

    def __init__(self):
        self.cpus = _cpus()
        self.enabled = (os.environ.get("FASTLSTM_ADAPTIVE_THREADS", "1") != "0"
                        and os.path.exists("/proc/stat"))
        self.cut = 0            # threads taken off the count set
        self.last = None        # (time s, _sample()) of the last sample

    def _sample(self):
        """(CPU ns this process has run, its exited threads included; idle ns of
        the cpus it may use; {tid: (run ns, wait ns)} of its threads)."""
        folder = f"/proc/{os.getpid()}"
        with open(f"{folder}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        run = (int(fields[11]) + int(fields[12])) * 1e9 / _TICKS   # utime, stime
        wanted = {f"cpu{c}" for c in self.cpus}
        idle = 0
        with open("/proc/stat") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:
                    idle += int(fields[4]) + int(fields[5])   # idle, iowait
        tasks = {}
        for tid in os.listdir(f"{folder}/task"):
            try:
                with open(f"{folder}/task/{tid}/schedstat") as f:
                    ran, waited = f.read().split()[:2]
            except (OSError, ValueError):
                continue
            tasks[tid] = (int(ran), int(waited))
        return run, idle * 1e9 / _TICKS, tasks

    def team(self, n):
        """The threads to use out of n set."""
        if not self.enabled or n == 1:
            return n
        now = time.perf_counter()
        if self.last is not None and now - self.last[0] < self.INTERVAL:
            return max(1, n - self.cut)
        sample = self._sample()
        if self.last is not None:
            self._decide(now, n, sample)
        self.last = (now, sample)
        return max(1, n - self.cut)

    def _decide(self, now, n, sample):
        t0, (run0, idle0, tasks0) = self.last
        run, idle, tasks = sample
        wall = (now - t0) * 1e9
        others = len(self.cpus) - ((run - run0) + (idle - idle0)) / wall
        waited = sum(w - tasks0[tid][1] for tid, (r, w) in tasks.items()
                     if tid in tasks0 and r - tasks0[tid][0] > 0.05 * wall) / wall
        held = int(others + 0.5)
        lost = held if self.cut else min(held, int(waited + 0.5))
        self.cut = min(n - 1, max(0, lost))


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
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
