"""Model: a sequence of layers with a loss, e.g. Embedding -> LSTM -> Dense.

The public methods take batch-first arrays, as data sets come: tokens (N, T) int
or features (N, T, F). Inside, arrays are time-major (T, N, ...), as the layers and
kernels want; `forward` and `loss_and_grads` work on time-major arrays for
fastlstm.train, which cuts the windows itself.

The state of a model is a tuple with one entry per recurrent layer, each that
layer's state ((h,) or (h, c), arrays of shape (num_layers, N, H)).
"""
import numpy as np

from . import ops
from ._threads import single_threaded_blas
from .layers import RECURRENT, Dense, Embedding, Recurrent, _features
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
                   embed_size=32, seed=0, dtype=np.float32, backend="auto"):
        """Embedding -> recurrent stack -> Dense to vocab_size logits; cross-entropy."""
        seeds = np.random.SeedSequence(seed).spawn(3)
        return cls([Embedding(vocab_size, embed_size, seed=seeds[0], dtype=dtype),
                    _cell(cell)(embed_size, hidden_size, num_layers, seed=seeds[1],
                                dtype=dtype, backend=backend),
                    Dense(hidden_size, vocab_size, seed=seeds[2], dtype=dtype,
                          backend=backend)],
                   loss="xent")

    @classmethod
    def for_series(cls, n_features, *, n_outputs=None, cell="lstm", hidden_size=32,
                   num_layers=1, seed=0, dtype=np.float32, backend="auto"):
        """Recurrent stack on n_features inputs -> Dense to n_outputs; MSE."""
        seeds = np.random.SeedSequence(seed).spawn(2)
        return cls([_cell(cell)(n_features, hidden_size, num_layers, seed=seeds[0],
                                dtype=dtype, backend=backend),
                    Dense(hidden_size, n_outputs or n_features, seed=seeds[1],
                          dtype=dtype, backend=backend)],
                   loss="mse")

    # -- parameters -----------------------------------------------------------

    @property
    def params(self):
        """{"<layer index>.<name>": array}: the arrays themselves, updated in place."""
        return {f"{k}.{n}": a for k, layer in enumerate(self.layers)
                for n, a in layer.params.items()}

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
    def takes_tokens(self):
        return isinstance(self.layers[0], Embedding)

    @property
    def n_features(self):
        """Features a step of the input has (None for a token model)."""
        first = self.layers[0]
        return None if self.takes_tokens else getattr(first, "input_size",
                                                      getattr(first, "in_size", None))

    @property
    def n_outputs(self):
        """Outputs a step has: logits for a token model, values for a series model."""
        last = self.layers[-1]
        return getattr(last, "out_size", getattr(last, "hidden_size", None))

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

    def forward(self, X, state=None):
        """X (T, B) tokens or (T, B, F) features -> outputs (T, B, O), final state,
        backprop(dout) (which fills the layers' grads).

        What is not checked here is left to the caller (fastlstm.train and predict
        check X once): the finiteness of features and of a state passed in."""
        return self._pass(X, state, train=True)

    def _pass(self, X, state, train):
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
                    out, final, bp = layer._forward(x, next(states))
                else:
                    (out, final), bp = layer._infer(x, next(states)), None
                finals.append(final)
            elif isinstance(layer, Dense):
                out, bp = layer.forward(out, need_dx=k > 0)
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

    def loss_and_grads(self, X, Y, mask=None, state=None):
        """Mean loss over a time-major batch; fills self.grads. Returns (loss, final
        state). The gradient stops at the initial and final states (truncated BPTT).
        Where the loss is NaN/inf, the grads are NaN."""
        out, final, backprop = self.forward(X, state)
        # The gradient of the outputs overwrites them: the head's backward needs
        # only its input and weights.
        loss, dout = LOSSES[self.loss_name](out, Y, mask, backend=self.backend, out=out)
        if np.isfinite(loss):
            backprop(dout)
        else:
            _poison(self.layers)
        return loss, final

    def evaluate(self, X, Y, mask=None, state=None):
        """Mean loss over a time-major batch, without gradients or caches. Returns
        (loss, state)."""
        out, final, _ = self._pass(X, state, train=False)
        return LOSSES[self.loss_name](out, Y, mask, backend=self.backend, out=out)[0], final

    # -- batch-first use --------------------------------------------------------

    def predict(self, X, state=None, return_state=False):
        """Outputs (N, T, O) for X (N, T) tokens or (N, T, F) features ((N, T) for a
        model of one feature): logits for a token model, values for a series model.
        With return_state, also the final state, to continue from.

        The model reads X a window of steps at a time, each layer after the other,
        the state carried: it keeps no caches, and nothing of the size of X beside
        the outputs (a window's arrays have at most PREDICT_ELEMENTS elements a
        layer)."""
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
        widest = max(max(getattr(layer, "hidden_size", 0), getattr(layer, "out_size", 0),
                         getattr(layer, "embed_size", 0)) for layer in self.layers)
        steps = max(1, PREDICT_ELEMENTS // (N * widest))
        out = None
        with single_threaded_blas():
            for t0 in range(0, T, steps):
                y, state, _ = self._pass(to_time_major(X[:, t0:t0 + steps]), state,
                                         train=False)
                if out is None:
                    out = np.empty((N, T) + y.shape[2:], y.dtype)
                out[:, t0:t0 + steps] = y.swapaxes(0, 1)
        return (out, state) if return_state else out

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
