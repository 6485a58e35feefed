"""How many threads the compiled kernels use (their OpenMP loops), and the BLAS
thread limits around them.

get_num_threads() is the count set (default: the cores this process may use);
team_size(work) is what a kernel call takes: the same, or fewer while other
processes hold some of the cores (_Governor), or one for a small call that finds
the team's threads asleep (_Wake). FASTLSTM_ADAPTIVE_THREADS=0 turns both off.
"""
import contextlib
import math
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


class _Wake:
    """One thread for a small call while the team's threads sleep.

    Between calls OpenMP's threads spin a little, then sleep in the OS, and the
    next parallel region waits until all of them have woken. On the project's
    2-core VM an empty 2-thread region took 2 us right after another, 0.05-0.1 ms
    after 10 ms without one, and 4-8 ms after 50-200 ms (bench/RESULTS.md,
    "2026-12-07 (late)"): the host schedules an idle virtual CPU again. The
    one-step serving path at B1 H256 took 18 us a step back to back and 5.7-7.8 ms
    a step 50-200 ms apart on 2 threads, 0.22 ms on one.

    A call that finds the team asleep (no call used it for COLD seconds) decides
    like a ski renter: it runs on one thread while what one thread loses, its work
    at RATE times 1 - 1/n, summed over the run of calls since the team slept,
    stays below the last timed wake; the call that would pass that wakes the team
    and times the wake (`probe`: one iteration on each thread). So a lone small
    call never waits for a wake that costs more than its work, a run of calls or a
    large call wakes the team at most once, and neither loses more than twice
    what the better choice in hindsight would have cost. RATE errs low, so a
    call's end is placed late and a team just used is not taken for asleep."""

    COLD = 0.003   # s after the team's last call from which its threads count as asleep
    RATE = 1e10    # multiply-adds (or elements) one thread does a second, on the low side

    def __init__(self, probe=None, clock=time.perf_counter):
        self.enabled = os.environ.get("FASTLSTM_ADAPTIVE_THREADS", "1") != "0"
        self.probe = probe      # probe(n): wakes a team of n and returns; None: find it
        self.clock = clock
        self.free_at = -math.inf   # when the team's last call is due to end
        self.run_end = -math.inf   # when the last call on one thread is due to end
        self.wake = 0.0            # s the last timed wake took (halved at each faster one)
        self.owed = 0.0            # s one thread lost over this run of calls
        self.ahead = 0.0           # work of the calls expected to follow (expect)

    def team(self, n, work):
        """The threads out of n for a call of `work` multiply-adds or elements;
        None: n, whatever the team's state."""
        if not self.enabled or n == 1 or work is None:
            return n
        now = self.clock()
        alone, ahead = work / self.RATE, self.ahead / self.RATE
        self.ahead = 0.0
        if now - self.free_at < self.COLD:
            self.free_at = max(self.free_at, now) + alone / n
            return n
        if now - self.run_end > self.COLD:
            self.owed = 0.0     # a wake now would not have served the calls before
        lost = (alone + ahead) * (1 - 1 / n)
        if self.owed + lost < self.wake:
            self.owed += lost
            self.run_end = now + alone
            return 1
        self._time_wake(n)
        self.free_at = self.clock() + alone / n
        return n

    def _time_wake(self, n):
        if self.probe is None:
            try:
                from ._cy._team import wake
            except ImportError:
                # kernels built before the probe was: every call takes the team
                self.enabled = False
                return
            self.probe = wake
        t0 = self.clock()
        self.probe(n)
        self.wake = max(self.clock() - t0, self.wake / 2)
        self.owed = 0.0


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_governor = _Governor()
_wake = _Wake()


def expect(work):
    """Calls of `work` multiply-adds in all follow this one back to back (the steps
    of a generation): the next call that finds the team asleep weighs them with
    its own, and wakes the team for a run that will repay it."""
    _wake.ahead = work


def team_size(work=None):
    """The threads a kernel call of `work` multiply-adds (or elements, for a pass)
    takes: get_num_threads(), or fewer while other processes hold cores
    (_Governor), or one for a small call while the team sleeps (_Wake). Without
    work, the count the governor allows. The wake decides first: a call it runs
    on one thread costs no sample of the cores (a server's call every 0.25 s or
    more would pay the governor's 0.1 ms of /proc reads each time)."""
    n = _wake.team(_num_threads, work)
    return 1 if n == 1 else _governor.team(n)


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
