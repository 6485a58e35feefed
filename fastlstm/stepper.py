"""A model run one time step at a time, for generation: Stepper.

    stepper = model.stepper(batch_size=1, state=state)
    for _ in range(n):
        out = stepper.step(x)          # x (B,) tokens or (B, F) features -> (B, O)

is model.predict(x[:, None], state) with the state carried, on B rows, without its
cost per call: the weights are prepared once (the compiled backends pack them into
panels, which at batch 1 took longer than the step itself), the state lives in
preallocated arrays, and nothing is checked or limited per step. The weights are
those of the model when the stepper was made.
"""
import numpy as np

from ._threads import expect
from .layers import Dense, Recurrent

__all__ = ["Stepper"]


class _Cell:
    """One layer of a recurrent stack: its step weights, packed in the layer's
    precision, and its state (h, and c for the LSTM) for B rows, with a spare h
    to write the next one into."""

    def __init__(self, kernels, layer, k, h, c):
        params, _ = layer.layer_params(k)
        self.step_fn = getattr(kernels, f"{layer.cell}_step")
        self.weights = getattr(kernels, f"{layer.cell}_step_weights")(
            *params, precision=layer.precision)
        self.h, self.c = h, c
        self.h_next = np.empty_like(h)
        Wx, Wh = params[0], params[1]
        self.work = (Wx.shape[0] + Wh.shape[0]) * Wh.shape[1]   # multiply-adds a row

    def step(self, x):
        if self.c is None:
            self.step_fn(self.weights, x, self.h, self.h_next)
        else:
            self.step_fn(self.weights, x, self.h, self.c, self.h_next)
        self.h, self.h_next = self.h_next, self.h
        return self.h


class Stepper:
    """model one time step at a time on batch_size rows, from state (the model's
    state format; None: zeros)."""

    def __init__(self, model, batch_size=1, state=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if model.whole_sequences:
            raise ValueError("this model reads each row whole (it is bidirectional or gives "
                             "one label per row), so it cannot run one step at a time")
        kernels = model.layers[0].kernels
        states = model._states(state, self.batch_size)
        self._stages = []
        self._work = 0   # multiply-adds of a step, a row
        for layer in model.layers:
            if isinstance(layer, Recurrent):
                s = next(states) or layer.zero_state(self.batch_size)
                cells = [_Cell(kernels, layer, k, s[0][k].copy(),
                               s[1][k].copy() if len(s) > 1 else None)
                         for k in range(layer.num_layers)]
                self._stages.append(("cells", layer, cells))
                self._work += sum(cell.work for cell in cells)
            elif isinstance(layer, Dense):
                W, b = layer.params["W"], layer.params["b"]
                self._work += W.size
                self._stages.append(("dense", layer, (kernels.dense_step_weights(W, b),
                                                      kernels.dense_step)))
            else:
                self._stages.append(("embedding", layer, layer.params["W"]))
        self._dtype = model.dtype

    def step(self, x):
        """x (B,) int tokens or (B, F) features -> the outputs (B, O) of this step."""
        out = x
        for kind, layer, part in self._stages:
            if kind == "embedding":
                out = part[out]
            elif kind == "dense":
                weights, dense_step = part
                out = dense_step(weights, np.ascontiguousarray(out, dtype=self._dtype))
            else:
                out = np.ascontiguousarray(out, dtype=self._dtype)
                for cell in part:
                    out = cell.step(out)
        return out

    def expect(self, steps):
        """`steps` calls of step follow back to back: a team of threads that has
        gone to sleep is woken at the first of them if the run repays the wake
        (fastlstm._threads._Wake), instead of once it has run long enough."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise TypeError(f"steps: expected an int, got {type(steps).__name__}")
        if steps < 0:
            raise ValueError(f"steps: expected >= 0, got {steps}")
        expect(int(steps) * self.batch_size * self._work)

    def select(self, rows):
        """Keep the state of these rows (an int array, repeats allowed), in this order:
        beam search carries on from the best beams."""
        rows = np.asarray(rows, dtype=np.intp)
        self.batch_size = len(rows)
        for kind, _, cells in self._stages:
            if kind == "cells":
                for cell in cells:
                    cell.h = cell.h[rows]
                    cell.h_next = np.empty_like(cell.h)
                    if cell.c is not None:
                        cell.c = cell.c[rows]

    @property
    def state(self):
        """The state now, in the model's format: one entry per recurrent layer, each
        (h,) or (h, c) of shape (num_layers, B, H)."""
        out = []
        for kind, _, cells in self._stages:
            if kind == "cells":
                parts = [np.stack([cell.h for cell in cells])]
                if cells[0].c is not None:
                    parts.append(np.stack([cell.c for cell in cells]))
                out.append(tuple(parts))
        return tuple(out)
