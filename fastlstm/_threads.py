"""How many threads the compiled kernels use (their OpenMP loops), and the BLAS
thread limits around them."""
import contextlib
import os

from threadpoolctl import ThreadpoolController, threadpool_limits


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_num_threads = _cores()
_blas_limits = None


def get_num_threads():
    """The thread count the kernels use now (default: the cores this process may use)."""
    return _num_threads


def _check(n):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n_threads: expected >= 1, got {n}")


def _set(n):
    global _num_threads
    _num_threads = n


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
    _check(n)
    _load_blas()
    previous = _num_threads
    with threadpool_limits(limits=n, user_api="blas"):
        _set(n)
        try:
            yield
        finally:
            _set(previous)


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
