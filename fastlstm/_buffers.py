"""Arrays for the kernels' outputs, caches and scratch, on reused memory.

A train step at T=100, B=256, H=512 allocates about 600 MB (gate caches, dA, y,
c, dx). Fresh memory comes from the kernel as untouched pages, and the first
write to each page faults and zeroes it: `perf` put 9.5% of a forward at that
shape in zeroing pages (bench/RESULTS.md, 2026-11-23 (later)). Training calls the kernels
with the same shapes step after step, so the memory of the arrays that died
since can serve the next call instead.

Each block of memory is exposed through one _Owner object, and every array made
from a block (views, slices, memoryviews of those) keeps that owner alive. A
block is reused only once its owner has died, which a weak reference tells: an
array that is still reachable is never overwritten.
"""
import contextlib
import math
import mmap
import threading
import weakref

import numpy as np

# Below this, numpy and malloc serve allocations from memory already mapped. Above
# it, glibc maps fresh pages for each array (and unmaps them when it dies): at
# T=50, B=32, H=32 (a gates array of 800 KB) page faults took 7% of a training
# update, before the pool served arrays from 64 KB (bench/RESULTS.md, 2026-12-01).
MIN_BYTES = 1 << 16

# Blocks of at least half a huge page take whole huge pages: they start on a
# huge-page boundary, end on one, and ask Linux for transparent huge pages (which it
# may grant only on request). Every TLB miss is a nested page walk in a VM, and the
# kernels stream arrays of several MB and their packed weights at every step; at
# B=16 H=256 a train step took 6-9% less time on 1 and 2 threads (bench/RESULTS.md,
# 2026-11-23 (last)).
# The cost: a block's memory is rounded up to whole huge pages, at most doubled.
HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)


class _Owner:
    """Presents a block as one array of the given shape and dtype."""

    __slots__ = ("block", "__array_interface__", "__weakref__")

    def __init__(self, block, shape, dtype):
        self.block = block
        self.__array_interface__ = dict(version=3, shape=shape, typestr=dtype.str,
                                        data=(block.ctypes.data, False))


def _dead():
    return None


def _huge_pages(nbytes):
    """nbytes of fresh memory on whole huge pages, advised for huge pages; None where
    mmap cannot. Unmapped once no array uses it."""
    if _MADV_HUGEPAGE is None:
        return None
    pages = -(-nbytes // HUGE_PAGE)
    try:
        # One page more than needed, so that the mapping holds an aligned run.
        m = mmap.mmap(-1, (pages + 1) * HUGE_PAGE,
                      flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(_MADV_HUGEPAGE)
    except (OSError, ValueError):
        return None
    buf = np.frombuffer(m, np.uint8)
    start = -buf.ctypes.data % HUGE_PAGE
    return buf[start:start + nbytes]


class _Block:
    """Memory for one array at a time; `owner` is a weak reference to the _Owner of
    the arrays made from it, or _dead."""

    __slots__ = ("mem", "owner")

    def __init__(self, nbytes):
        self.mem = _huge_pages(nbytes) if 2 * nbytes >= HUGE_PAGE else None
        if self.mem is None:
            self.mem = np.empty(nbytes, np.uint8)
        self.owner = _dead

    def free(self):
        return self.owner() is None


class _Pool:
    """Blocks by size, least recently handed out first within a size."""

    def __init__(self):
        self._blocks = {}   # nbytes -> [_Block], least recently handed out first
        self._peak = 0
        self._lock = threading.Lock()

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        with self._lock:
            same = self._blocks.setdefault(nbytes, [])
            block = next((k for k in same if k.free()), None)
            new = block is None
            if new:
                block = _Block(nbytes)
            else:
                same.remove(block)
            same.append(block)
            owner = _Owner(block.mem, shape, dtype)
            block.owner = weakref.ref(owner)
            if new:
                # only a new block can push the free memory past its bound
                self._trim()
        return np.asarray(owner)

    def _all(self):
        return [k for same in self._blocks.values() for k in same]

    def _drop(self, block):
        same = self._blocks[block.mem.nbytes]
        same.remove(block)
        if not same:
            del self._blocks[block.mem.nbytes]

    def _trim(self):
        """Keep free blocks of at most the largest total ever in use at once, so
        the pool at most doubles the memory a steady workload needs; the least
        recently used go first."""
        blocks = self._all()
        free = [k for k in blocks if k.free()]
        free_bytes = sum(k.mem.nbytes for k in free)
        live_bytes = sum(k.mem.nbytes for k in blocks) - free_bytes
        self._peak = max(self._peak, live_bytes)
        for k in free:
            if free_bytes <= self._peak:
                break
            self._drop(k)
            free_bytes -= k.mem.nbytes

    def release(self):
        """Drop every free block (arrays still in use keep theirs)."""
        with self._lock:
            for k in self._all():
                if k.free():
                    self._drop(k)
            self._peak = 0

    def held_bytes(self):
        """Bytes in the pool's blocks, in use or free."""
        with self._lock:
            return sum(k.mem.nbytes for k in self._all())


_pool = _Pool()


def empty(shape, dtype):
    """Like np.empty(shape, dtype): C-contiguous, writeable, contents undefined."""
    return _pool.empty(shape, dtype)


def zeros(shape, dtype):
    """Like np.zeros(shape, dtype)."""
    a = _pool.empty(shape, dtype)
    a.fill(0)
    return a


def release_memory():
    """Give back the memory fastlstm keeps for reuse between kernel calls.

    The kernels reuse the memory of their earlier outputs and caches once every
    array on it has been dropped. This frees those idle blocks now, e.g. after
    training, before other memory-hungry work.
    """
    _pool.release()


held_bytes = _pool.held_bytes


@contextlib.contextmanager
def fresh_memory():
    """Within the block, every array is a new np.empty (bench/bench_kernels.py
    times the kernels this way against reuse)."""
    global MIN_BYTES
    saved, MIN_BYTES = MIN_BYTES, float("inf")
    try:
        yield
    finally:
        MIN_BYTES = saved
