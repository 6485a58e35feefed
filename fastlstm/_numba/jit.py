"""The options every Numba kernel is compiled with, and where their compiled code
is cached.

nogil: the kernels release the GIL. cache: compiled code is kept on disk, so only
a machine's first call compiles. error_model="numpy": division without a zero
check (as cdivision in Cython), which would otherwise raise ZeroDivisionError and
keep LLVM from vectorising the gate loops.

Numba checks a cached function against a hash of its own file only, and a kernel
inlines callees from other files (common.py, panels.py, simd.py): an edited
callee would leave its callers' stale code in the cache. The kernels' cache is
checked against a hash of every file of this package instead (source_stamp), so
that any edit recompiles all of them.

Numba saves a cache entry by reading a function's index, adding the entry and
writing the index back, and names the entry's data file after the entries it read:
two processes that save two entries of one function at once (ahead.py's worker
and the training process, each compiling its kernels' callees) lose one entry or
write one data file over the other's. This package's saves hold a lock on a file
in the cache folder (fcntl, where the OS has it) for the whole of that.
"""
import hashlib
import os

from numba.core import caching

try:
    import fcntl
except ImportError:   # not POSIX: no lock, and no worker (ahead.enabled)
    fcntl = None

JIT = dict(nogil=True, cache=True, error_model="numpy")

HERE = os.path.dirname(os.path.abspath(__file__))


def source_stamp(folder):
    """A hash of every .py file in folder: their names and contents."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            h.update(name.encode() + b"\0")
            with open(os.path.join(folder, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _standard(name):
    """One of Numba's caching classes (named with a leading _ before Numba 0.60)."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


def stamp_folder(folder):
    """From now on, Numba checks the cache of a function defined in folder against
    source_stamp(folder), wherever Numba would put that cache."""
    stamp = source_stamp(folder)

    def whole(locator):
        class Whole(locator):
            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.dirname(os.path.abspath(py_file)) != folder:
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return stamp
        Whole.__name__ = f"Whole{locator.__name__}"
        return Whole

    standard = [_standard(name) for name in ("UserProvidedCacheLocator",
                                             "InTreeCacheLocator", "UserWideCacheLocator")]
    _standard("CacheImpl")._locator_classes[:0] = [whole(locator) for locator in standard]
    _lock_saves(stamp)


LOCK_FILE = "fastlstm-cache.lock"


def _lock_saves(stamp):
    """From now on, saving a cache entry of a function whose source stamp is stamp
    holds an exclusive lock on LOCK_FILE in its cache folder."""
    cache_file = _standard("IndexDataCacheFile")
    save = cache_file.save

    def locked_save(self, key, data):
        if fcntl is None or self._source_stamp != stamp:
            return save(self, key, data)
        with open(os.path.join(self._cache_path, LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return save(self, key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    cache_file.save = locked_save


stamp_folder(HERE)
