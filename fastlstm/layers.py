"""Layers: Embedding, Dense and the recurrent stacks RNN, LSTM, GRU.

Arrays are time-major, as in the kernels: tokens (T, B) int, features (T, B, F).
Each layer owns `params` and `grads`, two dicts of arrays with the same keys and
shapes. `forward` returns the output and a `backprop` closure; calling it with
the output's gradient writes the parameters' gradients into `grads` (overwriting)
and returns the input's gradient. The recurrent layers run every time step inside
fastlstm.ops, so no Python runs per step.

`config()` gives the constructor's arguments, which is how fastlstm.io rebuilds a
layer from a checkpoint. `backend` names the kernels a layer runs on
(fastlstm.backends); every layer of a Model runs on the same.

The layers call their backend's kernels directly: they check what a user passes
them once, and nothing a layer made itself, nor its own parameters, is scanned
again on the way (a forward of Model checks the tokens or features it is given).
"""
import numpy as np

from . import ops
from .backends import get_backend
from .cells import CELLS

__all__ = ["Embedding", "Dense", "RNN", "LSTM", "GRU", "LAYERS", "RECURRENT"]


def _dtype(dtype):
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {d}")
    return d


def _size(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {n!r}")
    return int(n)


def _features(x, dtype, size, what):
    """x as a C-contiguous (T, B, size) array of dtype, or a ValueError."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != size:
        raise ValueError(f"{what}: expected shape (T, B, {size}), got {x.shape}")
    return np.ascontiguousarray(x, dtype=dtype)


class Layer:
    """What every layer shares: parameters, their gradients, its config, its backend."""

    def __init__(self, dtype, backend="auto"):
        self.dtype = _dtype(dtype)
        self.backend = backend
        self.params = {}
        self.grads = {}

    @property
    def kernels(self):
        """The backend namespace this layer's work runs on."""
        return get_backend(self.backend)

    def _add(self, name, value):
        self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        self.grads[name] = np.zeros_like(self.params[name])

    def config(self):
        raise NotImplementedError


class Embedding(Layer):
    """Integer tokens (T, B) in [0, vocab_size) -> vectors (T, B, embed_size).

    W ~ N(0, 1), as torch.nn.Embedding.
    """

    def __init__(self, vocab_size, embed_size, *, seed=0, dtype=np.float32, backend="auto"):
        super().__init__(dtype, backend)
        self.vocab_size = _size("vocab_size", vocab_size)
        self.embed_size = _size("embed_size", embed_size)
        rng = np.random.default_rng(seed)
        self._add("W", rng.standard_normal((self.vocab_size, self.embed_size)))

    def config(self):
        return dict(vocab_size=self.vocab_size, embed_size=self.embed_size)

    def forward(self, tokens):
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"tokens: expected an int array of shape (T, B), got "
                            f"{tokens.dtype} {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"tokens: expected ids in [0, {self.vocab_size}), got "
                             f"[{tokens.min()}, {tokens.max()}]")
        W = self.params["W"]
        ids = tokens.reshape(-1).astype(np.intp, copy=False)

        def backprop(dy):
            dy2 = np.ascontiguousarray(dy).reshape(-1, self.embed_size)
            self.grads["W"][...] = self.kernels.embedding_backward(ids, dy2, self.vocab_size)
            return None

        return W[tokens], backprop


class Dense(Layer):
    """y_t = x_t W + b at every step: (T, B, in_size) -> (T, B, out_size).

    As the first layer it is the dense input of a real-valued series; on top of a
    recurrent stack it is the per-step head. W, b ~ U(-1/sqrt(in), 1/sqrt(in)),
    as torch.nn.Linear.
    """

    def __init__(self, in_size, out_size, *, seed=0, dtype=np.float32, backend="auto"):
        super().__init__(dtype, backend)
        self.in_size = _size("in_size", in_size)
        self.out_size = _size("out_size", out_size)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_size)
        self._add("W", rng.uniform(-k, k, (self.in_size, self.out_size)))
        self._add("b", rng.uniform(-k, k, self.out_size))

    def config(self):
        return dict(in_size=self.in_size, out_size=self.out_size)

    def forward(self, x, need_dx=True):
        """x (T, B, in_size) -> y (T, B, out_size), backprop(dy), which returns dL/dx
        (None where need_dx is False: a first layer has no input to pass it to)."""
        x = _features(x, self.dtype, self.in_size, "Dense input")
        T, B, _ = x.shape
        W, b = self.params["W"], self.params["b"]
        x2 = x.reshape(T * B, self.in_size)
        kernels = self.kernels
        y = kernels.dense_forward(x2, W, b).reshape(T, B, self.out_size)

        def backprop(dy):
            dy2 = np.ascontiguousarray(dy, dtype=self.dtype).reshape(T * B, self.out_size)
            dx, self.grads["W"][...], self.grads["b"][...] = kernels.dense_backward(
                x2, W, dy2, need_dx)
            return None if dx is None else dx.reshape(T, B, self.in_size)

        return y, backprop


class Recurrent(Layer):
    """num_layers stacked cells of one kind; layer k feeds its outputs to layer k+1.

    Parameters of layer k are named "{k}.Wx", "{k}.Wh", "{k}.b" (RNN, LSTM) or
    "{k}.bx", "{k}.bh" (GRU), shapes as fastlstm.cells states them. The state is a tuple of
    (num_layers, B, H) arrays: (h,) for the RNN and GRU, (h, c) for the LSTM; None
    means zeros. Initialised as torch.nn.RNN/LSTM/GRU: U(-1/sqrt(H), 1/sqrt(H)),
    except the LSTM's forget-gate bias, which starts at 1 so that the cell keeps
    its memory early in training (Jozefowicz et al., 2015).
    """

    spec = None   # the cell's facts (fastlstm.cells)

    @property
    def cell(self):
        return self.spec.name

    @property
    def G(self):
        return self.spec.G

    @property
    def biases(self):
        return self.spec.biases

    @property
    def state_names(self):
        return self.spec.states

    def __init__(self, input_size, hidden_size, num_layers=1, *, seed=0,
                 dtype=np.float32, backend="auto"):
        super().__init__(dtype, backend)
        self.input_size = _size("input_size", input_size)
        self.hidden_size = H = _size("hidden_size", hidden_size)
        self.num_layers = _size("num_layers", num_layers)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(H)
        for layer in range(self.num_layers):
            I = self.input_size if layer == 0 else H
            self._add(f"{layer}.Wx", rng.uniform(-k, k, (I, self.G * H)))
            self._add(f"{layer}.Wh", rng.uniform(-k, k, (H, self.G * H)))
            for name in self.biases:
                self._add(f"{layer}.{name}", self._bias(rng.uniform(-k, k, self.G * H)))

    def _bias(self, b):
        return b

    def config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers)

    def zero_state(self, batch_size):
        """The all-zero state for batch_size rows."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        return tuple(np.zeros(shape, self.dtype) for _ in self.state_names)

    def _check_state(self, state, B):
        if state is None:
            return self.zero_state(B)
        want = (self.num_layers, B, self.hidden_size)
        if not isinstance(state, (tuple, list)) or len(state) != len(self.state_names):
            raise TypeError(f"state: expected a tuple ({', '.join(self.state_names)}) of "
                            f"arrays of shape {want}")
        out = []
        for name, s in zip(self.state_names, state):
            s = np.asarray(s)
            if s.shape != want:
                raise ValueError(f"state {name}: expected shape (num_layers, B, H) = "
                                 f"{want}, got {s.shape}")
            out.append(np.ascontiguousarray(s, dtype=self.dtype))
        return tuple(out)

    def _layer_params(self, layer):
        names = ("Wx", "Wh") + self.biases
        return [self.params[f"{layer}.{n}"] for n in names], names

    def forward(self, x, state=None):
        """x (T, B, input_size) -> y (T, B, H), the final state, backprop.

        backprop(dy, dstate=None) takes dL/dy (T, B, H) and optionally dL/d(final
        state); it returns dL/dx and dL/d(initial state). It reads a copy of x, so
        writing into x in between changes nothing.
        """
        given = x
        x = _features(x, self.dtype, self.input_size, f"{type(self).__name__} input")
        if x is given:
            x = x.copy()
        if not ops.all_finite(x):
            raise ValueError(f"{type(self).__name__} input: contains NaN or inf")
        state = tuple(np.array(s) for s in self._check_state(state, x.shape[1]))
        if not all(ops.all_finite(s) for s in state):
            raise ValueError("state: contains NaN or inf")
        return self._forward(x, state)

    def _run(self, x, state, cache):
        """The stack over x (T, B, input_size), checked and in the layer's dtype, from
        state (None: zeros): y (T, B, H), the final state, the layers' caches (None
        each without cache)."""
        B = x.shape[1]
        state = self.zero_state(B) if state is None else state
        cell_forward = getattr(self.kernels, f"{self.cell}_forward")
        caches, finals = [], []
        y = x
        for layer in range(self.num_layers):
            params, _ = self._layer_params(layer)
            initial = [s[layer] for s in state]
            out = cell_forward(y, *params, *initial, cache=cache)
            y, final, layer_cache = out[0], out[1:-1], out[-1]
            caches.append(layer_cache)
            finals.append(final)
        final_state = tuple(np.stack([f[k] for f in finals])
                            for k in range(len(self.state_names)))
        return y, final_state, caches

    def _infer(self, x, state):
        """forward without caches or gradients: y (T, B, H), the final state."""
        return self._run(x, state, cache=False)[:2]

    def _forward(self, x, state):
        """forward on arrays already checked: x (T, B, input_size) C-contiguous in
        the layer's dtype, state as _check_state gives it (or None)."""
        state = self.zero_state(x.shape[1]) if state is None else state
        y, final_state, caches = self._run(x, state, cache=True)
        cell_backward = getattr(self.kernels, f"{self.cell}_backward")

        def backprop(dy, dstate=None):
            dy = np.ascontiguousarray(dy, dtype=self.dtype)
            dinitial = [np.empty_like(s) for s in state]
            for layer in reversed(range(self.num_layers)):
                dfinal = [np.zeros_like(s[layer]) if dstate is None
                          else np.ascontiguousarray(dstate[k][layer], dtype=self.dtype)
                          for k, s in enumerate(state)]
                out = cell_backward(caches[layer], dy, *dfinal)
                _, names = self._layer_params(layer)
                for name, g in zip(names, out[1:1 + len(names)]):
                    self.grads[f"{layer}.{name}"][...] = g
                for k, d0 in enumerate(out[1 + len(names):]):
                    dinitial[k][layer] = d0
                dy = out[0]
            return dy, tuple(dinitial)

        return y, final_state, backprop


class RNN(Recurrent):
    __doc__ = "tanh RNN stack: h_t = tanh(x_t Wx + h_{t-1} Wh + b).\n\n" + Recurrent.__doc__
    spec = CELLS["rnn"]


class LSTM(Recurrent):
    __doc__ = "LSTM stack, gates i, f, g, o.\n\n" + Recurrent.__doc__
    spec = CELLS["lstm"]

    def _bias(self, b):
        H = self.hidden_size
        b[H:2 * H] = 1.0
        return b


class GRU(Recurrent):
    __doc__ = "GRU stack, PyTorch semantics (gates r, z, n; biases bx, bh).\n\n" \
        + Recurrent.__doc__
    spec = CELLS["gru"]


LAYERS = {cls.__name__: cls for cls in (Embedding, Dense, RNN, LSTM, GRU)}
RECURRENT = {cls.spec.name: cls for cls in (RNN, LSTM, GRU)}
