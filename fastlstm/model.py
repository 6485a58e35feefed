"""Model: a sequence of layers with a loss, e.g. Embedding -> LSTM -> Dense.

The public methods take batch-first arrays, as data sets come: tokens (N, T) int
or features (N, T, F). Inside, arrays are time-major (T, N, ...), as the layers and
kernels want; `forward` and `loss_and_grads` work on time-major arrays for
fastlstm.train, which cuts the windows itself.

The state of a model is a tuple with one entry per recurrent layer, each that
layer's state ((h,) or (h, c), arrays of shape (num_layers * directions, N, H)).

lengths (N,) int, 1 <= lengths[n] <= T: row n has lengths[n] steps. The recurrent
layers stop each row at its end, the losses count only the steps before it, and a
model of one label per sequence (for_classes) reads each row's last step.
"""
import numpy as np

from . import ops
from ._rows import by_length, put
from ._threads import single_threaded_blas
from .layers import RECURRENT, Dense, Embedding, Last, Recurrent, _features, _size
from .losses import LOSSES
from .stepper import Stepper

__all__ = ["Model"]

# The most elements of a layer's outputs in one window of Model.predict: 16 MB of
# float32, so that predict on a long series holds little more than its outputs.
PREDICT_ELEMENTS = 1 << 22


class Model:
    """Layers applied in order, and the loss ("xent" on int targets, or "mse")."""

    def __init__(self, layers, loss="xent"):
        layers = list(layers)
        if not layers:
            raise ValueError("layers: expected at least one layer")
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {loss!r}")
        dtypes = {layer.dtype for layer in layers}
        if len(dtypes) != 1:
            raise TypeError(f"layers: expected one dtype, got {sorted(map(str, dtypes))}")
        for layer in layers[1:]:
            if isinstance(layer, Embedding):
                raise ValueError("layers: an Embedding can only be the first layer")
        for before, layer in zip(layers, layers[1:]):
            if layer.in_features != before.out_features:
                raise ValueError(f"layers: a {type(layer).__name__} that reads "
                                 f"{layer.in_features} features follows a "
                                 f"{type(before).__name__} that gives {before.out_features}")
        backends = {layer.backend for layer in layers if isinstance(layer, Recurrent)}
        if len(backends) > 1:
            raise ValueError(f"layers: expected one backend, got {sorted(backends)}")
        self.layers = layers
        self.loss_name = loss
        self.dtype = layers[0].dtype
        # Every layer runs on the recurrent layers' backend: one thread pool a step.
        self.backend = backends.pop() if backends else "auto"

    @classmethod
    def for_tokens(cls, vocab_size, *, cell="lstm", hidden_size=128, num_layers=1,
                   embed_size=32, dropout=0.0, seed=0, dtype=np.float32, backend="auto"):
        """Embedding -> recurrent stack -> Dense to vocab_size logits; cross-entropy."""
        seeds = np.random.SeedSequence(seed).spawn(3)
        return cls([Embedding(vocab_size, embed_size, seed=seeds[0], dtype=dtype),
                    _cell(cell)(embed_size, hidden_size, num_layers, dropout=dropout,
                                seed=seeds[1], dtype=dtype, backend=backend),
                    Dense(hidden_size, vocab_size, seed=seeds[2], dtype=dtype,
                          backend=backend)],
                   loss="xent")

    @classmethod
    def for_series(cls, n_features, *, n_outputs=None, cell="lstm", hidden_size=32,
                   num_layers=1, dropout=0.0, seed=0, dtype=np.float32, backend="auto"):
        """Recurrent stack on n_features inputs -> Dense to n_outputs; MSE."""
        seeds = np.random.SeedSequence(seed).spawn(2)
        return cls([_cell(cell)(n_features, hidden_size, num_layers, dropout=dropout,
                                seed=seeds[0], dtype=dtype, backend=backend),
                    Dense(hidden_size, n_outputs or n_features, seed=seeds[1],
                          dtype=dtype, backend=backend)],
                   loss="mse")

    @classmethod
    def for_classes(cls, n_features, n_classes, **kwargs):
        """Recurrent stack on n_features inputs -> each row's last step (Last) ->
        Dense to n_classes logits; cross-entropy against one int label per row.
        kwargs: cell, hidden_size, num_layers, bidirectional, dropout, seed, dtype,
        backend."""
        _size("n_classes", n_classes, least=2)
        return cls._per_row(n_features, n_classes, "xent", **kwargs)

    @classmethod
    def for_regression(cls, n_features, n_outputs=1, **kwargs):
        """Recurrent stack on n_features inputs -> each row's last step (Last) ->
        Dense to n_outputs values; MSE against one value (or n_outputs) per row, as
        Keras's LSTM(return_sequences=False) -> Dense(k). kwargs as for_classes."""
        _size("n_outputs", n_outputs)
        return cls._per_row(n_features, n_outputs, "mse", **kwargs)

    @classmethod
    def _per_row(cls, n_features, n_out, loss, *, cell="lstm", hidden_size=64,
                 num_layers=1, bidirectional=False, dropout=0.0, seed=0,
                 dtype=np.float32, backend="auto"):
        """stack -> Last -> Dense(n_out) with loss: one output per row."""
        seeds = np.random.SeedSequence(seed).spawn(2)
        stack = _cell(cell)(n_features, hidden_size, num_layers, bidirectional=bidirectional,
                            dropout=dropout, seed=seeds[0], dtype=dtype, backend=backend)
        return cls([stack, Last(hidden_size, stack.directions, dtype=dtype),
                    Dense(stack.out_size, n_out, seed=seeds[1], dtype=dtype,
                          backend=backend)],
                   loss=loss)

    # -- parameters -----------------------------------------------------------

    @property
    def params(self):
        """{"<layer index>.<name>": array}: the arrays themselves, updated in place."""
        return {f"{k}.{n}": a for k, layer in enumerate(self.layers)
                for n, a in layer.params.items()}

    def param_shapes(self):
        """{name: shape} of params, from the layers' configs (Layer.param_shapes)."""
        return {f"{k}.{n}": shape for k, layer in enumerate(self.layers)
                for n, shape in layer.param_shapes().items()}

    @property
    def grads(self):
        """The gradients of the last loss_and_grads, keyed as params."""
        return {f"{k}.{n}": a for k, layer in enumerate(self.layers)
                for n, a in layer.grads.items()}

    @property
    def recurrent(self):
        return [layer for layer in self.layers if isinstance(layer, Recurrent)]

    @property
    def backend(self):
        """The backend every layer runs on."""
        return self.layers[0].backend

    @backend.setter
    def backend(self, name):
        for layer in self.layers:
            layer.backend = name

    @property
    def precision(self):
        """None (the dtype's own) or "bf16": the recurrent layers' products in mixed
        precision (fastlstm.ops); the head, the loss and the optimizer stay in the
        dtype."""
        return self.layers[0].precision

    @precision.setter
    def precision(self, precision):
        precision = ops.check_precision(precision, self.dtype, self.backend)
        for layer in self.layers:
            layer.precision = precision

    @property
    def takes_tokens(self):
        return isinstance(self.layers[0], Embedding)

    @property
    def per_sequence(self):
        """True for a model of one output per row (for_classes, for_regression), not
        one per step."""
        return any(isinstance(layer, Last) for layer in self.layers)

    @property
    def classifies(self):
        """True for a model of one class label per row (for_classes)."""
        return self.per_sequence and self.loss_name == "xent"

    @property
    def whole_sequences(self):
        """True where a pass must see each row whole (a bidirectional layer, or one
        output per row), so that it cannot be cut into windows of steps."""
        return self.per_sequence or any(layer.bidirectional for layer in self.recurrent)

    @property
    def n_features(self):
        """Features a step of the input has (None for a token model)."""
        return self.layers[0].in_features

    @property
    def n_outputs(self):
        """Outputs a step has: logits for a token model, values for a series model."""
        return self.layers[-1].out_features

    def features(self, X, what="X"):
        """X (N, T, F) as the model's dtype; (N, T) where the model takes one feature
        (a series of shape (T,) is X[None])."""
        X = np.asarray(X)
        if X.ndim == 2 and self.n_features == 1:
            X = X[..., None]
        if X.ndim != 3:
            hint = (" (one series of shape (T,) is X[None, :, None], or X[None] for a "
                    "model of one feature)" if X.ndim == 1 else "")
            raise ValueError(f"{what}: expected features of shape (N, T, F), got "
                             f"{X.shape}{hint}")
        return X.astype(self.dtype, copy=False)

    def zero_state(self, batch_size):
        return tuple(layer.zero_state(batch_size) for layer in self.recurrent)

    # -- time-major passes ------------------------------------------------------

    def forward(self, X, state=None, lengths=None, rng=None):
        """X (T, B) tokens or (T, B, F) features -> outputs (T, B, O) ((1, B, O) for
        one output per row), final state, backprop(dout) (which fills the layers'
        grads). lengths (B,) int in [0, T], checked, or None; rng, a numpy
        Generator, draws the dropout masks (None: no dropout).

        What is not checked here is left to the caller (fastlstm.train and predict
        check X once): the finiteness of features and of a state passed in."""
        return self._pass(X, state, train=True, lengths=lengths, rng=rng)

    def _pass(self, X, state, train, lengths=None, rng=None):
        """forward, or without train the pass that keeps no caches (inference):
        outputs, final state and backprop (None without train)."""
        X = np.asarray(X)
        states = self._states(state, X.shape[1] if X.ndim >= 2 else 0)
        finals, backprops = [], []
        out = X
        for k, layer in enumerate(self.layers):
            if isinstance(layer, Recurrent):
                x = _features(out, layer.dtype, layer.input_size,
                              f"{type(layer).__name__} input")
                if train:
                    out, final, bp = layer._forward(x, next(states), lengths, rng)
                else:
                    (out, final), bp = layer._infer(x, next(states), lengths), None
                finals.append(final)
            elif isinstance(layer, Dense):
                out, bp = layer.forward(out, need_dx=k > 0)
            elif isinstance(layer, Last):
                out, bp = layer.forward(out, lengths)
            else:
                out, bp = layer.forward(out)
            backprops.append(bp)
        if not train:
            return out, tuple(finals), None

        def backprop(dout):
            # A NaN or inf on the way reaches the gradients, where fastlstm.train's
            # guard sees it; the kernels compute through it.
            for bp in reversed(backprops):
                dout = bp(dout)
                if isinstance(dout, tuple):
                    dout = dout[0]

        return out, tuple(finals), backprop

    def _states(self, state, B):
        """An iterator over the recurrent layers' checked states (None: zeros)."""
        if state is None:
            return iter([None] * len(self.recurrent))
        if len(state) != len(self.recurrent):
            raise ValueError(f"state: expected {len(self.recurrent)} entries (one per "
                             f"recurrent layer), got {len(state)}")
        return iter([layer._check_state(s, B) for layer, s in zip(self.recurrent, state)])

    def _mask(self, mask, lengths, T):
        """The steps a loss over T steps counts: mask's, and of those only the steps
        before each row's end (one output per row: every row counts, mask None)."""
        if lengths is None or self.per_sequence:
            return mask
        alive = np.arange(T)[:, None] < lengths[None, :]
        return alive if mask is None else mask & alive

    def step(self, X, Y, mask=None, state=None, *, lengths=None, rng=None, train=True):
        """One batch through the loss: (mean loss, final state, rows classified
        right (for one label per row; None otherwise)). With train, fills self.grads
        (NaN where the loss is NaN/inf); without, keeps no caches and never drops."""
        out, final, backprop = self._pass(X, state, train, lengths, rng if train else None)
        hits = None
        if self.classifies:
            hits = int(np.count_nonzero(out.argmax(axis=-1) == Y))
        # The gradient of the outputs overwrites them: the head's backward needs
        # only its input and weights.
        loss, dout = LOSSES[self.loss_name](out, Y, self._mask(mask, lengths, np.shape(Y)[0]),
                                            backend=self.backend, out=out)
        if train:
            if np.isfinite(loss):
                backprop(dout)
            else:
                _poison(self.layers)
        return loss, final, hits

    def loss_and_grads(self, X, Y, mask=None, state=None, *, lengths=None, rng=None):
        """Mean loss over a time-major batch; fills self.grads. Returns (loss, final
        state). The gradient stops at the initial and final states (truncated BPTT).
        Where the loss is NaN/inf, the grads are NaN."""
        return self.step(X, Y, mask, state, lengths=lengths, rng=rng)[:2]

    def evaluate(self, X, Y, mask=None, state=None, *, lengths=None):
        """Mean loss over a time-major batch, without gradients or caches. Returns
        (loss, state)."""
        return self.step(X, Y, mask, state, lengths=lengths, train=False)[:2]

    # -- batch-first use --------------------------------------------------------

    def predict(self, X, state=None, return_state=False, lengths=None):
        """Outputs (N, T, O) for X (N, T) tokens or (N, T, F) features ((N, T) for a
        model of one feature): logits for a token model, values for a series model;
        (N, n_classes) logits for a model of one label per row, (N, n_outputs)
        values for one value per row. With return_state,
        also the final state, to continue from. lengths (N,): each row's steps (its
        outputs past them are 0).

        The model reads X a window of steps at a time (of rows, where it must see
        each row whole), each layer after the other, the state carried: it keeps no
        caches, and nothing of the size of X beside the outputs (a window's arrays
        have at most PREDICT_ELEMENTS elements a layer)."""
        X = np.asarray(X)
        if X.ndim < 2:
            raise ValueError(f"X: expected shape (N, T) or (N, T, F), got {X.shape}"
                             + ("" if self.takes_tokens else
                                " (one series of shape (T,) is X[None, :, None], or "
                                "X[None] for a model of one feature)"))
        if not self.takes_tokens:
            X = self.features(X)
        if X.dtype.kind == "f" and not ops.all_finite(X):
            raise ValueError("X: contains NaN or inf")
        if state is not None and not all(ops.all_finite(s) for layer in state for s in layer):
            raise ValueError("state: contains NaN or inf")
        N, T = X.shape[:2]
        if N == 0 or T == 0:
            raise ValueError(f"X: expected at least one row and one step, got shape "
                             f"{X.shape}")
        lengths = row_lengths(lengths, N, T)
        widest = max(layer.out_features for layer in self.layers)
        with single_threaded_blas():
            if self.whole_sequences:
                out, state = self._predict_rows(X, state, lengths, widest)
            else:
                out, state = self._predict_steps(X, state, lengths, widest)
        return (out, state) if return_state else out

    def _predict_steps(self, X, state, lengths, widest):
        """predict in windows of steps, the state carried from one to the next."""
        N, T = X.shape[:2]
        steps = max(1, PREDICT_ELEMENTS // (N * widest))
        order = None
        if lengths is not None:   # sorted once, so that no window moves rows
            order, lengths = by_length(lengths)
            X = X if order is None else X[order]
            state = _rows_of(state, order)
        out = None
        for t0 in range(0, T, steps):
            t1 = min(T, t0 + steps)
            window = None if lengths is None else np.clip(lengths - t0, 0, t1 - t0)
            y, state, _ = self._pass(to_time_major(X[:, t0:t1]), state, train=False,
                                     lengths=window)
            if out is None:
                out = np.empty((N, T) + y.shape[2:], y.dtype)
            out[:, t0:t1] = y.swapaxes(0, 1)
        if order is not None:
            out, state = put(out, order, 0), _rows_of(state, np.argsort(order))
        return out, state

    def _predict_rows(self, X, state, lengths, widest):
        """predict on whole rows, in batches of rows."""
        N, T = X.shape[:2]
        rows = max(1, PREDICT_ELEMENTS // (T * widest))
        outs, finals = [], []
        for r0 in range(0, N, rows):
            r = slice(r0, min(N, r0 + rows))
            y, final, _ = self._pass(to_time_major(X[r]),
                                     _rows_of(state, np.arange(N)[r]), train=False,
                                     lengths=None if lengths is None else lengths[r])
            outs.append(y.swapaxes(0, 1))
            finals.append(final)
        out = np.concatenate(outs, axis=0)
        if self.per_sequence:
            out = out[:, 0]
        state = tuple(tuple(np.concatenate([f[k][j] for f in finals], axis=1)
                            for j in range(len(finals[0][k])))
                      for k in range(len(finals[0])))
        return out, state

    def stepper(self, batch_size=1, state=None):
        """A Stepper: this model one time step at a time on batch_size rows, from
        state (None: zeros), for generation."""
        return Stepper(self, batch_size, state)

    def __repr__(self):
        parts = ", ".join(f"{type(layer).__name__}({_args(layer.config())})"
                          for layer in self.layers)
        return f"Model([{parts}], loss={self.loss_name!r})"


def _poison(layers):
    """Set every gradient of layers to NaN: the gradient of a non-finite value."""
    for layer in layers:
        for g in layer.grads.values():
            g.fill(np.nan)


def row_lengths(lengths, N, T):
    """lengths of N rows of T steps checked (fastlstm.ops.lengths_array): intp (N,),
    or None where every row has all T steps."""
    return ops.lengths_array(lengths, T, N, rows="N", steps="T (the steps of X)")


def _rows_of(state, rows):
    """A model's state (None, or one tuple of (L, N, H) arrays per recurrent layer)
    at the rows given."""
    if state is None:
        return None
    return tuple(tuple(np.asarray(s)[:, rows] for s in layer) for layer in state)


def to_time_major(X):
    """(N, T, ...) -> a contiguous (T, N, ...) copy."""
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"X: expected shape (N, T) or (N, T, F), got {X.shape}")
    return np.ascontiguousarray(X.swapaxes(0, 1))


def _cell(name):
    if name not in RECURRENT:
        raise ValueError(f"cell: expected one of {sorted(RECURRENT)}, got {name!r}")
    return RECURRENT[name]


def _args(config):
    return ", ".join(f"{k}={v}" for k, v in config.items())
