"""Data-parallel training over MPI: what fastlstm.train needs of the ranks.

    comm = communicator("mpi")     # or None: one process, every call a no-op
    rows = comm.share(batch)       # this rank's part of a global batch
    comm.reduce_step(grads, loss, kept, hits)   # one Allreduce per update

Each rank holds the whole data set and the same weights; a global batch is split
into one contiguous part per rank; each rank computes the mean-loss gradient of
its part, and one Allreduce of a flat buffer, [grads * kept, loss * kept, kept,
hits], gives every rank the gradient of the global batch's mean loss, whatever
each part kept (masks, lengths, an uneven last batch, a rank with no rows).
Clipping and the update then run on every rank on the same numbers, so the
weights stay identical. mpi4py is imported here only, by communicator("mpi").

A rank that raises ends the job: abort() calls MPI_Abort, which mpiexec turns
into the end of every rank; a rank that dies (killed, or a crash) is ended the
same way by mpiexec, so that no rank waits in a collective forever.
"""
import os
import sys
import traceback

import numpy as np

__all__ = ["communicator", "Single", "Mpi", "local_threads"]


class Single:
    """One process: rank 0 of 1, and every collective is the identity."""

    rank, size, root = 0, 1, True

    def share(self, rows):
        return rows

    def reduce_step(self, grads, loss, kept, hits):
        return loss, kept, hits

    def reduce_sums(self, values):
        return values

    def bcast(self, obj):
        return obj

    def bcast_arrays(self, arrays):
        pass

    def same(self, name, value):
        pass

    def abort(self):
        pass


class Mpi:
    """The ranks of MPI_COMM_WORLD."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("distributed='mpi' needs mpi4py and an MPI library: "
                              'pip install "fastlstm[mpi]" (mpi4py and mpich)') from exc
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.root = self.rank == 0
        self._buffer = None

    def share(self, rows):
        """This rank's contiguous part of rows (parts differ in size by at most 1;
        a rank may get none)."""
        return np.array_split(rows, self.size)[self.rank]

    def reduce_step(self, grads, loss, kept, hits):
        """Sum (grads * kept, loss * kept, kept, hits) over the ranks in one
        Allreduce, and leave in grads the gradient of the global mean loss.
        grads: {name: array}, the gradient of this rank's mean loss over its kept
        steps (ignored where it kept none). Returns the global (loss, kept, hits)."""
        arrays = list(grads.values())
        n = sum(a.size for a in arrays)
        dtype = arrays[0].dtype
        if self._buffer is None or self._buffer.size != n + 3 or self._buffer.dtype != dtype:
            self._buffer = np.empty(n + 3, dtype)
        buf, k = self._buffer, 0
        for a in arrays:
            if kept:
                np.multiply(a.reshape(-1), kept, out=buf[k:k + a.size])
            else:
                buf[k:k + a.size] = 0
            k += a.size
        buf[n:] = (loss * kept if kept else 0.0, kept, hits or 0)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        total = int(round(float(buf[n + 1])))
        if total:
            buf[:n] /= total
        k = 0
        for a in arrays:
            a.reshape(-1)[...] = buf[k:k + a.size]
            k += a.size
        loss = float(buf[n]) / total if total else 0.0
        return loss, total, None if hits is None else int(round(float(buf[n + 2])))

    def reduce_sums(self, values):
        """The sums over the ranks of a few float64 values."""
        out = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM)
        return out

    def bcast(self, obj):
        """Rank 0's obj on every rank."""
        return self.comm.bcast(obj, root=0)

    def bcast_arrays(self, arrays):
        """Rank 0's values into every rank's arrays, in place."""
        for a in arrays:
            self.comm.Bcast(a, root=0)

    def same(self, name, value):
        """A ValueError on every rank where the ranks disagree about value."""
        values = self.comm.allgather(value)
        if any(v != values[0] for v in values):
            raise ValueError(f"{name}: the ranks differ ({values}); every rank must "
                             "pass the same data")

    def abort(self):
        """End every rank of the job, after this rank's traceback."""
        traceback.print_exc()
        sys.stderr.flush()
        self.comm.Abort(1)


def communicator(distributed):
    """Single() for None, Mpi() for "mpi"."""
    if distributed is None:
        return Single()
    if distributed == "mpi":
        return Mpi()
    raise ValueError(f"distributed: expected None or 'mpi', got {distributed!r}")


def local_threads(comm):
    """The cores of this machine divided by the ranks on it (at least 1)."""
    if comm.size == 1:
        return None
    local = comm.comm.Split_type(comm.MPI.COMM_TYPE_SHARED)
    ranks_here = local.Get_size()
    local.Free()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // ranks_here)
