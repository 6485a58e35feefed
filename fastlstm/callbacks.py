"""Callbacks for fastlstm.train: learning-rate schedules and early stopping.

A callback is any object with some of these methods, which train calls:
    on_train_begin(model, optimizer, history)  before the first epoch (history holds
                                               the epochs a resumed run has done)
    on_step(info)                              after each update (a StepInfo)
    on_epoch_end(epoch, history)               after each epoch; True stops training
    on_train_end(history)                      once training has stopped
"""
import math

import numpy as np

__all__ = ["StepLR", "CosineLR", "ReduceLROnPlateau", "EarlyStopping"]


def _monitored(history, monitor):
    """The last value of history's `monitor` ("val_loss" falls back to "loss" for a
    run without validation)."""
    values = getattr(history, monitor)
    if monitor == "val_loss" and (not values or values[-1] is None):
        values = history.loss
    return values[-1]


class BestEpoch:
    """The epoch with the lowest `monitor` so far ("val_loss", or "loss" without
    validation), a new best being below the old by more than min_delta, and, when
    given the model's params, a copy of its weights then (EarlyStopping's
    restore_best and train's)."""

    def __init__(self, monitor="val_loss", min_delta=0.0):
        self.monitor, self.min_delta = monitor, float(min_delta)
        self.epoch, self.value, self.weights = None, math.inf, None

    def see(self, epoch, history, params=None):
        """True if epoch (the last of history) is a new best; its weights are
        copied from params."""
        value = _monitored(history, self.monitor)
        if not value < self.value - self.min_delta:
            return False
        self.epoch, self.value = epoch, value
        if params is not None:
            if self.weights is None:
                self.weights = {k: np.copy(p) for k, p in params.items()}
            else:
                for k, p in params.items():
                    np.copyto(self.weights[k], p)
        return True

    def resume(self, history, weights):
        """Take up a resumed run: history, and the weights of its epoch
        history.best_epoch[-1] (of its last epoch where that is None)."""
        if not history.epoch:
            return
        kept = history.best_epoch[-1] if history.best_epoch else None
        epoch = history.epoch[-1] if kept is None else kept
        n = history.epoch.index(epoch) + 1
        self.epoch, self.value = epoch, _monitored(_Prefix(history, n), self.monitor)
        self.weights = {k: np.copy(p) for k, p in weights.items()}

    def restore(self, params):
        """The best epoch's weights back into params (none kept: nothing done)."""
        if self.weights is not None:
            for k, p in params.items():
                p[...] = self.weights[k]


class _EpochSchedule:
    """Sets the optimizer's lr before every epoch to lr_at(epoch, base), base being
    the lr the optimizer had when training began (epochs count from 1)."""

    def on_train_begin(self, model, optimizer, history):
        self.optimizer, self.base = optimizer, optimizer.lr
        optimizer.lr = self.lr_at(len(history.epoch) + 1, self.base)

    def on_epoch_end(self, epoch, history):
        self.optimizer.lr = self.lr_at(epoch + 1, self.base)


class StepLR(_EpochSchedule):
    """lr times gamma every step_size epochs: base * gamma ** ((epoch - 1) // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size: expected an int >= 1, got {step_size!r}")
        if not gamma > 0:
            raise ValueError(f"gamma: expected > 0, got {gamma!r}")
        self.step_size, self.gamma = step_size, float(gamma)

    def lr_at(self, epoch, base):
        return base * self.gamma ** ((epoch - 1) // self.step_size)


class CosineLR(_EpochSchedule):
    """From base down to min_lr over `epochs` epochs along half a cosine:
    min_lr + (base - min_lr) * (1 + cos(pi * (epoch - 1) / epochs)) / 2, then
    min_lr."""

    def __init__(self, epochs, min_lr=0.0):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
        if not min_lr >= 0:
            raise ValueError(f"min_lr: expected >= 0, got {min_lr!r}")
        self.epochs, self.min_lr = epochs, float(min_lr)

    def lr_at(self, epoch, base):
        if epoch > self.epochs:
            return self.min_lr
        return self.min_lr + (base - self.min_lr) * (
            1 + math.cos(math.pi * (epoch - 1) / self.epochs)) / 2


class ReduceLROnPlateau:
    """lr times factor (never below min_lr) once `monitor` ("val_loss", or "loss"
    without validation) has not fallen by more than min_delta below its best for
    more than `patience` epochs; the count then starts again."""

    def __init__(self, factor=0.1, patience=2, min_lr=0.0, monitor="val_loss",
                 min_delta=0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor: expected in (0, 1), got {factor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience: expected an int >= 0, got {patience!r}")
        if monitor not in ("loss", "val_loss"):
            raise ValueError(f"monitor: expected 'loss' or 'val_loss', got {monitor!r}")
        self.factor, self.patience, self.min_lr = float(factor), patience, float(min_lr)
        self.monitor, self.min_delta = monitor, float(min_delta)

    def on_train_begin(self, model, optimizer, history):
        self.optimizer, self.wait = optimizer, 0
        self._best = BestEpoch(self.monitor, self.min_delta)
        # a resumed run replays the epochs it has done
        for k in range(len(history.epoch)):
            self.on_epoch_end(k + 1, _Prefix(history, k + 1))

    def on_epoch_end(self, epoch, history):
        if self._best.see(epoch, history):
            self.wait = 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.optimizer.lr = max(self.min_lr, self.optimizer.lr * self.factor)
            self.wait = 0


class _Prefix:
    """The first n epochs of a History, for replaying it."""

    def __init__(self, history, n):
        self.loss, self.val_loss = history.loss[:n], history.val_loss[:n]


class EarlyStopping:
    """Stops training once `monitor` ("val_loss", or "loss" without validation) has
    not fallen by more than min_delta below its best for `patience` epochs. With
    restore_best, the model ends with the weights of its best epoch (copies are
    kept as training goes)."""

    def __init__(self, patience=3, monitor="val_loss", min_delta=0.0, restore_best=True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience: expected an int >= 1, got {patience!r}")
        if monitor not in ("loss", "val_loss"):
            raise ValueError(f"monitor: expected 'loss' or 'val_loss', got {monitor!r}")
        self.patience, self.monitor = patience, monitor
        self.min_delta, self.restore_best = float(min_delta), restore_best
        self._best = BestEpoch(monitor, self.min_delta)

    def on_train_begin(self, model, optimizer, history):
        self.model, self.wait = model, 0
        self._best = BestEpoch(self.monitor, self.min_delta)

    def on_epoch_end(self, epoch, history):
        if self._best.see(epoch, history, self.model.params if self.restore_best else None):
            self.wait = 0
            return False
        self.wait += 1
        return self.wait >= self.patience

    @property
    def best_epoch(self):
        """The epoch of the lowest `monitor` so far (None before the first)."""
        return self._best.epoch

    def on_train_end(self, history):
        if self.restore_best:
            self._best.restore(self.model.params)
