"""The memory the kernels reuse between calls (fastlstm._buffers): reused once
every array on it has died, never while one lives, and bounded."""
import gc

import numpy as np
import pytest

import fastlstm
from fastlstm import _buffers

from cells import GATES, assert_same, problem, run

COMPILED = [b for b in fastlstm.available_backends() if b != "numpy"]
BIG = (256, 1024)  # 1 MiB of float32: pooled


@pytest.fixture(autouse=True)
def empty_pool():
    """Each test starts from a pool without free blocks, so that the block a test
    expects back is the only candidate."""
    gc.collect()
    fastlstm.release_memory()


def address(a):
    return a.__array_interface__["data"][0]


def test_empty_is_a_plain_c_contiguous_array():
    a = _buffers.empty(BIG, np.float32)
    assert a.shape == BIG and a.dtype == np.float32
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    a[:] = 1.5
    assert a.sum() == 1.5 * a.size


def test_memory_is_reused_once_every_view_has_died():
    a = _buffers.empty(BIG, np.float32)
    where = address(a)
    row = a[3]
    del a
    b = _buffers.empty(BIG, np.float32)
    assert address(b) != where  # a's row still holds the block
    del row, b
    gc.collect()
    assert address(_buffers.empty(BIG, np.float32)) == where


def test_a_live_array_is_never_overwritten():
    a = _buffers.empty(BIG, np.float64)
    a[:] = 7.0
    view = a.reshape(-1)[::2]
    del a
    for _ in range(3):
        _buffers.empty(BIG, np.float64)[:] = -1.0
    assert np.all(view == 7.0)


def test_zeros_clears_reused_memory():
    _buffers.empty(BIG, np.float32)[:] = 3.0
    assert not _buffers.zeros(BIG, np.float32).any()


@pytest.mark.skipif(_buffers._MADV_HUGEPAGE is None, reason="no madvise(MADV_HUGEPAGE)")
@pytest.mark.parametrize("shape", [(3, _buffers.HUGE_PAGE // 8 + 5), BIG])
def test_pooled_blocks_start_on_a_huge_page(shape):
    # 3 huge pages and a bit, and half of one
    a = _buffers.empty(shape, np.float64)
    assert address(a) % _buffers.HUGE_PAGE == 0
    a[:] = np.arange(a.size).reshape(shape)  # every byte of it is writeable memory
    assert a[-1, -1] == a.size - 1


def test_small_arrays_are_not_pooled():
    before = _buffers.held_bytes()
    a = _buffers.empty(10, np.float64)
    assert a.shape == (10,) and _buffers.held_bytes() == before


def test_pool_stays_bounded_when_shapes_keep_changing():
    biggest = 0
    for rows in range(256, 1024, 16):
        a = _buffers.empty((rows, 1024), np.float32)
        biggest = max(biggest, a.nbytes)
        del a
    # Never more than one array alive at once: the pool keeps at most as much
    # again free, i.e. at most two blocks of the largest size.
    assert _buffers.held_bytes() <= 2 * biggest


def test_release_memory_keeps_live_blocks_only():
    live = _buffers.empty(BIG, np.float32)
    _buffers.empty((512, 1024), np.float32)
    fastlstm.release_memory()
    assert _buffers.held_bytes() == live.nbytes


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
def test_kernels_on_reused_memory_equal_reference(backend, cell, monkeypatch):
    """Every kernel array pooled: outputs held from one call stay intact through
    the next calls, and each call still equals the reference."""
    monkeypatch.setattr(_buffers, "MIN_BYTES", 0)
    p1, g1 = problem(cell, 5, 6, 7, 20, seed=1)
    p2, g2 = problem(cell, 5, 6, 7, 20, seed=2)
    first = run(cell, backend, p1, g1)
    kept = {k: v.copy() for k, v in first.items()}
    for _ in range(2):  # the second round runs on blocks freed by the first
        assert_same(run(cell, "numpy", p2, g2), run(cell, backend, p2, g2), np.float64)
    assert_same(kept, first, np.float64)


def test_fresh_memory_bypasses_the_pool():
    with _buffers.fresh_memory():
        a = _buffers.empty(BIG, np.float32)
        assert a.flags.owndata and _buffers.held_bytes() == 0
    assert not _buffers.empty(BIG, np.float32).flags.owndata
