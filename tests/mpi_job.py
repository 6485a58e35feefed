"""A training job for tests/test_mpi.py: run on ranks by

    mpiexec -n 2 python tests/mpi_job.py MODE OUT

and in one process by the test itself (run(MODE, None, out)), on the same data.
Each rank writes OUT/rank<k>.npz: its weights, its History and how many
checkpoints it wrote."""
import importlib
import os
import signal
import sys

import numpy as np

import fastlstm
from fastlstm import Model


def problem(mode):
    """(model, X, Y, train keywords) of a mode, the same on every rank but the
    model's seed, which the ranks' broadcast of rank 0's weights makes moot."""
    rng = np.random.default_rng(7)
    if mode == "classes":
        X = rng.standard_normal((21, 9, 2))
        lengths = rng.integers(1, 10, 21)
        Y = (X[np.arange(21), lengths - 1, 0] > 0).astype(int)
        kwargs = dict(lengths=lengths, batch_size=6,
                      validation=(X[:7], Y[:7], None, lengths[:7]))
        model = Model.for_classes(2, 2, hidden_size=6, bidirectional=True, dtype=np.float64,
                                  seed=_rank())
        return model, X, Y, kwargs
    # a series of 13 rows in batches of 4: the last batch has one row, so the
    # second rank gets none of it; a mask, and windows of truncated BPTT
    X = rng.standard_normal((13, 12, 2))
    Y = np.cumsum(X, axis=1) * 0.3
    mask = rng.random((13, 12)) > 0.3
    mask[:, 0] = True
    kwargs = dict(mask=mask, batch_size=4, seq_len=5, validation=(X[:5], Y[:5]))
    model = Model.for_series(2, hidden_size=6, num_layers=2, dtype=np.float64, seed=_rank())
    return model, X, Y, kwargs


def _rank():
    try:
        from mpi4py import MPI
    except ImportError:
        return 0
    return MPI.COMM_WORLD.Get_rank()


class Fault:
    """On rank 1, at the third step: raise, or die as a killed process does."""

    def __init__(self, how):
        self.how = how

    def on_step(self, info):
        if _rank() == 1 and info.step == 2:
            if self.how == "raise":
                raise RuntimeError("rank 1 fails on purpose")
            os.kill(os.getpid(), signal.SIGKILL)


def run(mode, distributed, out):
    """Train as mode says; returns the model and History."""
    training = importlib.import_module("fastlstm.train")   # the module, not the function
    saves = []
    real_save = training.save
    training.save = lambda *a, **k: (saves.append(a[1]), real_save(*a, **k))
    try:
        return _run(mode, distributed, out, saves)
    finally:
        training.save = real_save


def _run(mode, distributed, out, saves):
    model, X, Y, kwargs = problem(mode)
    checkpoint = os.path.join(out, "model.npz")
    callbacks = [Fault(mode)] if mode in ("raise", "die") else []
    if mode == "resume":   # two epochs, then on to four from the checkpoint
        fastlstm.train(model, X, Y, epochs=2, progress=False, distributed=distributed,
                       checkpoint=checkpoint, **kwargs)
        model, *_ = problem(mode)
    history = fastlstm.train(model, X, Y, epochs=4, progress=False, distributed=distributed,
                             checkpoint=checkpoint, resume=mode == "resume",
                             callbacks=callbacks, **kwargs)
    np.savez(os.path.join(out, f"rank{_rank()}.npz"), saves=len(saves),
             loss=history.loss, val_loss=history.val_loss,
             accuracy=[a if a is not None else np.nan for a in history.accuracy],
             **{f"param/{k}": v for k, v in model.params.items()})
    return model, history


if __name__ == "__main__":
    run(sys.argv[1], "mpi", sys.argv[2])
