"""Forecasting one series of values: a series Model with the scaling between the
values and its inputs (Forecaster)."""
import numpy as np

from . import io
from .data import next_step_data
from .model import Model
from .train import train

__all__ = ["Forecaster"]

TRANSFORMS = ("log", "diff")


def _values(values):
    """values as a finite float64 (L,) array of at least 3 values."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"values: expected one series of shape (L,) or (L, 1), got {v.shape}")
    if len(v) < 3:
        raise ValueError(f"values: expected at least 3 values, got {len(v)}")
    if not np.isfinite(v).all():
        raise ValueError("values: contains NaN or inf")
    return v


class Forecaster:
    """A Model that reads a series of values step by step and predicts the next.

    It works on the series' steps: log(v_t / v_{t-1}) where every value is above 0
    (prices: a move from 0.07 to 0.08 is the same step as one from 70 to 80),
    else v_t - v_{t-1}; standardised by the mean and standard deviation of the
    steps of the values it was created from.

    fc = Forecaster.create(train_part, hidden_size=32); fc.fit(train_part, epochs=30)
    fc.next_values(values) -> the one-step-ahead forecasts of values[2:]
    fc.forecast(values, 5) -> the next 5 values after the series
    fastlstm.save(fc, path) and fastlstm.load(path) keep the scaling with it.
    """

    checkpoint_kind = "forecaster"

    def __init__(self, model, transform, mean, std):
        first, last = (model.layers[0], model.layers[-1]) if isinstance(model, Model) \
            else (None, None)
        if first is None or model.takes_tokens or model.loss_name != "mse" \
                or first.in_features != 1 or last.out_features != 1:
            raise ValueError("model: expected a series model of one feature in and out "
                             "(Model.for_series(1))")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform: expected one of {TRANSFORMS}, got {transform!r}")
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"mean, std: expected finite, std > 0, got {mean!r}, {std!r}")
        self.model = model
        self.transform, self.mean, self.std = transform, float(mean), float(std)

    @classmethod
    def create(cls, values, **model_kwargs):
        """A fresh model, scaled to the steps of values; model_kwargs go to
        Model.for_series (cell, hidden_size, num_layers, seed, dtype, backend)."""
        values = _values(values)
        transform = "log" if (values > 0).all() else "diff"
        steps = cls._steps_of(values, transform)
        std = float(steps.std())
        return cls(Model.for_series(1, **model_kwargs), transform, float(steps.mean()),
                   std if std > 0 else 1.0)

    def checkpoint_extra(self):
        """What a checkpoint holds beside the model (fastlstm.io)."""
        return dict(transform=self.transform, mean=self.mean, std=self.std)

    @classmethod
    def from_checkpoint(cls, model, extra):
        return cls(model, extra["transform"], extra["mean"], extra["std"])

    @staticmethod
    def _steps_of(values, transform):
        if transform == "log":
            if not (values > 0).all():
                raise ValueError("values: this model works on log steps, which need "
                                 "every value above 0")
            return np.diff(np.log(values))
        return np.diff(values)

    def inputs(self, values):
        """The model's inputs for values (L,): the standardised steps (L - 1, 1)."""
        z = (self._steps_of(_values(values), self.transform) - self.mean) / self.std
        return z.astype(self.model.dtype)[:, None]

    def _moved(self, values, z):
        """values moved by the standardised steps z."""
        step = np.asarray(z, dtype=np.float64) * self.std + self.mean
        return values * np.exp(step) if self.transform == "log" else values + step

    def fit(self, values, *, epochs=10, batch_size=16, seq_len=50, windows_per_row=4,
            validation=None, validation_split=0.0, **train_kwargs):
        """Train on the steps of values by truncated BPTT, in rows of
        windows_per_row * seq_len steps. The validation loss after each epoch is
        that of the series validation, or of the last validation_split of the
        steps of values, which training then leaves out. Other arguments go to
        fastlstm.train (a checkpoint it writes holds this Forecaster, scaling and
        all). Returns its History."""
        X, Y, val = next_step_data(
            self.inputs(values), windows_per_row * seq_len,
            None if validation is None else self.inputs(validation), validation_split)
        return train(self, X, Y, epochs=epochs, batch_size=batch_size, seq_len=seq_len,
                     validation=val, **train_kwargs)

    def next_values(self, values):
        """The forecast of each of values[2:] from the values before it (L - 2,): the
        model reads the series once, its state carried from step to step."""
        values = _values(values)
        z = self.model.predict(self.inputs(values)[None])[0, :-1, 0]
        return self._moved(values[1:-1], z)

    def forecast(self, values, steps):
        """The next `steps` values after the series (steps,), each forecast step fed
        back as the next input."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
        values = _values(values)
        out, state = self.model.predict(self.inputs(values)[None], return_state=True)
        z = out[0, -1]
        stepper = self.model.stepper(1, state)
        last, forecasts = values[-1], []
        for _ in range(steps):
            last = float(self._moved(last, z[0]))
            forecasts.append(last)
            z = stepper.step(z[None])[0]
        return np.array(forecasts)


io.register_kind(Forecaster.checkpoint_kind, Forecaster.from_checkpoint)
