"""Layers: Embedding, Dense, the recurrent stacks RNN, LSTM, GRU, and Last (each
row's last step, for one label per sequence).

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
from ._rows import put, reverse, sort_rows, take
from .backends import get_backend
from .cells import CELLS

__all__ = ["Embedding", "Dense", "RNN", "LSTM", "GRU", "Last", "LAYERS", "RECURRENT"]


def _dtype(dtype):
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {d}")
    return d


def _size(name, n, least=1):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < least:
        raise ValueError(f"{name}: expected an int >= {least}, got {n!r}")
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
        # None, or "bf16" (fastlstm.ops): the recurrent layers' products
        self.precision = None
        self.params = {}
        self.grads = {}

    @property
    def kernels(self):
        """The backend namespace this layer's work runs on."""
        return get_backend(self.backend)

    @classmethod
    def planned(cls, config, dtype):
        """A layer of config (as config() gives it), checked as the constructor
        checks it, with no parameter allocated: param_shapes() says what they would
        be. fastlstm.io reads a checkpoint against it before it builds anything."""
        layer = cls.__new__(cls)
        Layer.__init__(layer, dtype)
        layer._configure(**config)
        return layer

    def _configure(self, **config):
        """Check config and keep it as attributes; allocate nothing."""
        raise NotImplementedError

    def _add(self, name, value):
        self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        self.grads[name] = np.zeros_like(self.params[name])

    def param_shapes(self):
        """{name: shape} of the parameters, in the order they are drawn."""
        return {}

    def config(self):
        raise NotImplementedError

    @property
    def in_features(self):
        """The features of each step this layer reads; None for tokens."""
        raise NotImplementedError

    @property
    def out_features(self):
        """The features of each step this layer gives."""
        raise NotImplementedError


class Embedding(Layer):
    """Integer tokens (T, B) in [0, vocab_size) -> vectors (T, B, embed_size).

    W ~ N(0, 1), as torch.nn.Embedding.
    """

    def __init__(self, vocab_size, embed_size, *, seed=0, dtype=np.float32, backend="auto"):
        super().__init__(dtype, backend)
        self._configure(vocab_size, embed_size)
        rng = np.random.default_rng(seed)
        self._add("W", rng.standard_normal(self.param_shapes()["W"]))

    def _configure(self, vocab_size, embed_size):
        self.vocab_size = _size("vocab_size", vocab_size)
        self.embed_size = _size("embed_size", embed_size)

    def param_shapes(self):
        return {"W": (self.vocab_size, self.embed_size)}

    def config(self):
        return dict(vocab_size=self.vocab_size, embed_size=self.embed_size)

    in_features = None

    @property
    def out_features(self):
        return self.embed_size

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
        self._configure(in_size, out_size)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_size)
        for name, shape in self.param_shapes().items():
            self._add(name, rng.uniform(-k, k, shape))

    def _configure(self, in_size, out_size):
        self.in_size = _size("in_size", in_size)
        self.out_size = _size("out_size", out_size)

    def param_shapes(self):
        return {"W": (self.in_size, self.out_size), "b": (self.out_size,)}

    def config(self):
        return dict(in_size=self.in_size, out_size=self.out_size)

    @property
    def in_features(self):
        return self.in_size

    @property
    def out_features(self):
        return self.out_size

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
    "{k}.bx", "{k}.bh" (GRU), shapes as fastlstm.cells states them; a bidirectional
    stack has "{k}.reverse.Wx", ... beside them for the direction that reads each row
    from its own last step back. The outputs are (T, B, H), or (T, B, 2H) =
    [forward; reverse] where bidirectional, and the next layer reads them all. The
    state is a tuple of (num_layers * directions, B, H) arrays, entry
    k * directions + d for layer k, direction d (torch's order of h_n): (h,) for the
    RNN and GRU, (h, c) for the LSTM; None means zeros.

    lengths (B,) int, 1 <= lengths[b] <= T: row b has lengths[b] steps, its outputs
    past them are 0 and its final state is its state at its own end. dropout: while
    fastlstm.train runs, each output of every layer but the last is zeroed with this
    probability and the rest scaled by 1 / (1 - dropout) (torch's semantics);
    predict and evaluate never drop. batch_first: forward takes x (B, T, input_size)
    and gives y (B, T, out_size), and backprop takes and gives those (torch's
    batch_first; inside a Model the layers are time-major whatever it says).

    Initialised as torch.nn.RNN/LSTM/GRU: U(-1/sqrt(H), 1/sqrt(H)), except the
    LSTM's forget-gate bias, which starts at 1 so that the cell keeps its memory
    early in training (Jozefowicz et al., 2015).
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

    def __init__(self, input_size, hidden_size, num_layers=1, *, bidirectional=False,
                 dropout=0.0, batch_first=False, seed=0, dtype=np.float32, backend="auto"):
        super().__init__(dtype, backend)
        self._configure(input_size, hidden_size, num_layers, bidirectional, dropout,
                        batch_first)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self.param_shapes().items():
            w = rng.uniform(-k, k, shape)
            self._add(name, self._bias(w) if name.rsplit(".", 1)[1] in self.biases else w)

    def _configure(self, input_size, hidden_size, num_layers=1, bidirectional=False,
                   dropout=0.0, batch_first=False):
        if not isinstance(batch_first, (bool, np.bool_)):
            raise TypeError(f"batch_first: expected a bool, got {batch_first!r}")
        self.batch_first = bool(batch_first)
        self.input_size = _size("input_size", input_size)
        self.hidden_size = _size("hidden_size", hidden_size)
        self.num_layers = _size("num_layers", num_layers)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"bidirectional: expected a bool, got {bidirectional!r}")
        self.bidirectional = bool(bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)

    def param_shapes(self):
        G, H = self.G, self.hidden_size
        shapes = {}
        for layer in range(self.num_layers):
            I = self.input_size if layer == 0 else self.out_size
            for prefix in self._directions(layer):
                shapes[f"{prefix}Wx"] = (I, G * H)
                shapes[f"{prefix}Wh"] = (H, G * H)
                shapes.update({f"{prefix}{name}": (G * H,) for name in self.biases})
        return shapes

    @property
    def in_features(self):
        return self.input_size

    @property
    def out_features(self):
        return self.out_size

    def _bias(self, b):
        return b

    @property
    def directions(self):
        """2 where bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def out_size(self):
        """Features of the outputs: directions * hidden_size."""
        return self.directions * self.hidden_size

    def _directions(self, layer):
        """The parameter name prefixes of layer's directions, forward first."""
        return (f"{layer}.", f"{layer}.reverse.")[:self.directions]

    def config(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bidirectional=self.bidirectional,
                    dropout=self.dropout, batch_first=self.batch_first)

    def zero_state(self, batch_size):
        """The all-zero state for batch_size rows."""
        shape = (self.num_layers * self.directions, batch_size, self.hidden_size)
        return tuple(np.zeros(shape, self.dtype) for _ in self.state_names)

    def _check_state(self, state, B):
        if state is None:
            return self.zero_state(B)
        want = (self.num_layers * self.directions, B, self.hidden_size)
        if not isinstance(state, (tuple, list)) or len(state) != len(self.state_names):
            raise TypeError(f"state: expected a tuple ({', '.join(self.state_names)}) of "
                            f"arrays of shape {want}")
        out = []
        for name, s in zip(self.state_names, state):
            s = np.asarray(s)
            if s.shape != want:
                raise ValueError(f"state {name}: expected shape (num_layers * directions, "
                                 f"B, H) = {want}, got {s.shape}")
            out.append(np.ascontiguousarray(s, dtype=self.dtype))
        return tuple(out)

    def layer_params(self, layer, direction=0):
        """The arrays of one layer and direction, in the kernels' order, and their
        names in params (with the direction's prefix)."""
        names = ("Wx", "Wh") + self.biases
        prefix = self._directions(layer)[direction]
        return [self.params[f"{prefix}{n}"] for n in names], \
            [f"{prefix}{n}" for n in names]

    def forward(self, x, state=None, lengths=None):
        """x (T, B, input_size) -> y (T, B, out_size), the final state, backprop.

        backprop(dy, dstate=None) takes dL/dy (T, B, out_size) and optionally
        dL/d(final state); it returns dL/dx and dL/d(initial state). It reads a copy
        of x, so writing into x in between changes nothing. This forward never
        drops (dropout acts inside fastlstm.train only). With batch_first, x, y, dy
        and dx are (B, T, ...).
        """
        if self.batch_first:
            x = np.asarray(x).swapaxes(0, 1)
        given = x
        x = _features(x, self.dtype, self.input_size, f"{type(self).__name__} input")
        if x is given:
            x = x.copy()
        if not ops.all_finite(x):
            raise ValueError(f"{type(self).__name__} input: contains NaN or inf")
        state = tuple(np.array(s) for s in self._check_state(state, x.shape[1]))
        if not all(ops.all_finite(s) for s in state):
            raise ValueError("state: contains NaN or inf")
        y, final, backprop = self._forward(x, state, ops.lengths_array(lengths, *x.shape[:2]))
        if not self.batch_first:
            return y, final, backprop

        def backprop_batch_first(dy, dstate=None):
            dx, dstate0 = backprop(np.asarray(dy).swapaxes(0, 1), dstate)
            return np.ascontiguousarray(dx.swapaxes(0, 1)), dstate0

        return np.ascontiguousarray(y.swapaxes(0, 1)), final, backprop_batch_first

    def _run(self, x, state, lengths, cache, rng=None):
        """The stack over x (T, B, input_size), checked and in the layer's dtype, its
        rows sorted longest first by lengths (checked, or None), from state (None:
        zeros): y (T, B, out_size), the final state, each layer's caches (None each
        without cache) and dropout keep-masks (None where nothing was dropped)."""
        B = x.shape[1]
        state = self.zero_state(B) if state is None else state
        cell_forward = getattr(self.kernels, f"{self.cell}_forward")
        caches, finals, masks = [], [], []
        y = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.directions):
                params, _ = self.layer_params(layer, d)
                initial = [s[layer * self.directions + d] for s in state]
                out = cell_forward(y if d == 0 else reverse(y, lengths), *params, *initial,
                                   cache=cache, lengths=lengths, precision=self.precision)
                outs.append(out[0] if d == 0 else reverse(out[0], lengths))
                finals.append(out[1:-1])
                caches.append(out[-1])
            y = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
            mask = None
            if rng is not None and self.dropout > 0 and layer < self.num_layers - 1:
                mask = (rng.random(y.shape, dtype=self.dtype) >= self.dropout) \
                    * self.dtype.type(1.0 / (1.0 - self.dropout))
                y = y * mask
            masks.append(mask)
        final_state = tuple(np.stack([f[k] for f in finals])
                            for k in range(len(self.state_names)))
        return y, final_state, caches, masks

    def _infer(self, x, state, lengths=None):
        """forward without caches, gradients or dropout: y (T, B, out_size), the final
        state. lengths as _forward takes them."""
        order, lengths, x, state = _by_length(x, state, lengths)
        y, final, _, _ = self._run(x, state, lengths, cache=False)
        return put(y, order, 1), tuple(put(s, order, 1) for s in final)

    def _forward(self, x, state, lengths=None, rng=None):
        """forward on arrays already checked: x (T, B, input_size) C-contiguous in
        the layer's dtype, state as _check_state gives it (or None), lengths as
        ops.lengths_array gives them (rows in any order; sorted longest first, they
        cost no copies). rng, a numpy Generator, draws the dropout masks; None drops
        nothing."""
        state = self.zero_state(x.shape[1]) if state is None else state
        order, lengths, x, state = _by_length(x, state, lengths)
        y, final_state, caches, masks = self._run(x, state, lengths, cache=True, rng=rng)
        cell_backward = getattr(self.kernels, f"{self.cell}_backward")
        D, H = self.directions, self.hidden_size

        def backprop(dy, dstate=None):
            dy = take(np.ascontiguousarray(dy, dtype=self.dtype), order, 1)
            dstate = None if dstate is None else [take(np.asarray(s, self.dtype), order, 1)
                                                  for s in dstate]
            dinitial = [np.empty_like(s) for s in state]
            for layer in reversed(range(self.num_layers)):
                if masks[layer] is not None:
                    dy = dy * masks[layer]
                dx = None
                for d in range(D):
                    k = layer * D + d
                    dfinal = [np.zeros_like(s[k]) if dstate is None
                              else np.ascontiguousarray(dstate[j][k])
                              for j, s in enumerate(state)]
                    dyd = dy if D == 1 else np.ascontiguousarray(dy[:, :, d * H:(d + 1) * H])
                    out = cell_backward(caches[k], dyd if d == 0 else reverse(dyd, lengths),
                                        *dfinal)
                    _, names = self.layer_params(layer, d)
                    for name, g in zip(names, out[1:1 + len(names)]):
                        self.grads[name][...] = g
                    for j, d0 in enumerate(out[1 + len(names):]):
                        dinitial[j][k] = d0
                    dxd = out[0] if d == 0 else reverse(out[0], lengths)
                    dx = dxd if dx is None else dx + dxd
                dy = dx
            return put(dy, order, 1), tuple(put(s, order, 1) for s in dinitial)

        return put(y, order, 1), tuple(put(s, order, 1) for s in final_state), backprop


def _by_length(x, state, lengths):
    """(order, sorted lengths, x, state) with the rows longest first (_rows.sort_rows;
    state None stays None)."""
    order, lengths, (x, *state) = sort_rows(lengths, [(x, 1)] + [(s, 1) for s in state or ()])
    return order, lengths, x, tuple(state) if state else None


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


class Last(Layer):
    """Each row's last step of a recurrent stack's outputs, for one label per
    sequence: y (T, B, directions * H) -> (1, B, directions * H), the forward
    direction at the row's last step (lengths[b] - 1) and the reverse direction at
    step 0, where it ends (torch's h_n of the top layer)."""

    def __init__(self, hidden_size, directions=1, *, dtype=np.float32, backend="auto"):
        super().__init__(dtype, backend)
        self._configure(hidden_size, directions)

    def _configure(self, hidden_size, directions=1):
        self.hidden_size = _size("hidden_size", hidden_size)
        if isinstance(directions, bool) or directions not in (1, 2):
            raise ValueError(f"directions: expected 1 or 2, got {directions!r}")
        self.directions = int(directions)

    @property
    def out_size(self):
        return self.directions * self.hidden_size

    @property
    def in_features(self):
        return self.out_size

    @property
    def out_features(self):
        return self.out_size

    def config(self):
        return dict(hidden_size=self.hidden_size, directions=self.directions)

    def forward(self, y, lengths=None):
        """y (T, B, out_size), lengths (B,) or None (all T) -> (1, B, out_size),
        backprop(dout), which returns dL/dy (0 but at the steps taken)."""
        T, B, F = y.shape
        H = self.hidden_size
        rows = np.arange(B)
        last = np.full(B, T - 1) if lengths is None else np.asarray(lengths) - 1
        out = np.empty((1, B, F), y.dtype)
        out[0, :, :H] = y[last, rows, :H]
        if self.directions == 2:
            out[0, :, H:] = y[0, :, H:]

        def backprop(dout):
            dy = np.zeros((T, B, F), self.dtype)
            dy[last, rows, :H] = dout[0, :, :H]
            if self.directions == 2:
                dy[0, :, H:] = dout[0, :, H:]
            return dy

        return out, backprop


LAYERS = {cls.__name__: cls for cls in (Embedding, Dense, RNN, LSTM, GRU, Last)}
RECURRENT = {cls.spec.name: cls for cls in (RNN, LSTM, GRU)}
