"""The rows of a batch by length: the kernels run the rows of each step that are
still running, which, with the rows sorted longest first, are the first ones.

    order, sorted_lengths = by_length(lengths)   # None where already sorted
    running_counts(sorted_lengths, T, B)         # (T,) rows running at each step
    reverse(a, lengths)                          # each row's own steps back to front
"""
import numpy as np

__all__ = ["by_length", "sort_rows", "running_counts", "take", "put", "reverse"]


def by_length(lengths):
    """(order, lengths[order]): the rows longest first, ties in their order; order is
    None where lengths is already sorted so (nothing to move)."""
    if np.all(lengths[:-1] >= lengths[1:]):
        return None, lengths
    order = np.argsort(-lengths, kind="stable")
    return order, lengths[order]


def sort_rows(lengths, batch):
    """(order or None, sorted lengths or None, the arrays of batch with their rows
    longest first): batch is [(array, the axis of its rows)]; nothing is moved
    where lengths is None or already sorted."""
    if lengths is None:
        return None, None, [a for a, _ in batch]
    order, lengths = by_length(lengths)
    return order, lengths, [take(a, order, axis) for a, axis in batch]


def running_counts(lengths, T, B):
    """The rows still running at each step (T,) intp for lengths (B,) sorted longest
    first, or None where every row runs all T steps (no lengths, or all T)."""
    if lengths is None or lengths[B - 1] >= T:
        return None
    return np.count_nonzero(np.asarray(lengths)[None, :] > np.arange(T)[:, None],
                            axis=1).astype(np.intp)


def take(a, order, axis):
    """a's rows (along axis) in order, as a C-contiguous copy; a itself without order."""
    return a if order is None else np.ascontiguousarray(np.take(a, order, axis=axis))


def put(a, order, axis):
    """The inverse of take: rows in order back where they came from."""
    if order is None:
        return a
    out = np.empty_like(a)
    index = [slice(None)] * a.ndim
    index[axis] = order
    out[tuple(index)] = a
    return out


def reverse(a, lengths):
    """a (T, B, ...) with each row's first lengths[b] steps in reverse order (the
    steps after them stay where they are): what the reverse direction of a
    bidirectional layer reads. Its own inverse; a[::-1] where lengths is None."""
    if lengths is None:
        return np.ascontiguousarray(a[::-1])
    T, B = a.shape[:2]
    t = np.arange(T)[:, None]
    source = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return a[source, np.arange(B)[None, :]]
