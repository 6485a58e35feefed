"""Export to ONNX: to_onnx(model, path) writes a graph of ONNX's own RNN, LSTM and
GRU operators (opset 14), which any ONNX runtime runs.

Inputs: "x", batch-first (N, T, F) float32, or (N, T) int64 tokens for a model
that starts with an Embedding; for a model of one output per row (for_classes,
for_regression), "lengths" (N,) int64, each row's steps. Output: "y", what
Model.predict gives for the same arrays: (N, T, O) a step, or (N, O) a row.
Needs the onnx package (fastlstm[onnx]).

ONNX orders the gate blocks i, o, f, c (LSTM) and z, r, h (GRU), its weights
are (G*H, K) where ours are (K, G*H), and it keeps an input bias and a recurrent
bias where the RNN and LSTM have one (b, and zeros). The GRU is ONNX's with
linear_before_reset=1, which is torch's GRU and ours.
"""
import os

import numpy as np

from .layers import Dense, Embedding, Last, Recurrent
from .model import Model

__all__ = ["to_onnx", "onnx_weights", "OPSET"]

OPSET = 14
# ONNX's order of our gate blocks (fastlstm.cells): LSTM i f g o -> i o f g(=c),
# GRU r z n -> z r n(=h).
ONNX_BLOCKS = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def onnx_weights(cell, Wx, Wh, biases):
    """ONNX's W (G*H, I), R (G*H, H) and B (2*G*H,) of one direction of a cell from
    ours: Wx (I, G*H), Wh (H, G*H) and the cell's biases (b, or bx and bh)."""
    H = Wh.shape[0]

    def blocks(W):
        return np.concatenate([W[..., k * H:(k + 1) * H] for k in ONNX_BLOCKS[cell]],
                              axis=-1)

    bx, bh = (biases[0], np.zeros_like(biases[0])) if len(biases) == 1 else biases
    return blocks(Wx).T, blocks(Wh).T, np.concatenate([blocks(bx), blocks(bh)])


def to_onnx(model, path=None):
    """Write model (a Model, or a CharLM or Forecaster: their model) to path as an
    ONNX graph, float32 whatever the model's dtype; returns the onnx ModelProto
    (path None: only returns it). A model of layers this exporter cannot express
    is a ValueError that names the layer."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError("fastlstm.to_onnx needs onnx: pip install 'fastlstm[onnx]'") \
            from exc
    net = model if isinstance(model, Model) else getattr(model, "model", None)
    if not isinstance(net, Model):
        raise TypeError(f"model: expected a fastlstm Model, or an object wrapping one, "
                        f"got {type(model).__name__}")
    graph = _Graph(helper, numpy_helper)
    x_type = TensorProto.INT64 if net.takes_tokens else TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(
        "x", x_type, ["N", "T"] if net.takes_tokens else ["N", "T", net.n_features])]
    lengths = None
    if net.per_sequence:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["N"]))
        lengths = graph.node("Cast", ["lengths"], to=TensorProto.INT32)
    # Time-major inside, as ONNX's recurrent operators want: (T, N, F), or (N, F)
    # once Last has taken each row's end.
    current = graph.node("Transpose", ["x"], perm=[1, 0] if net.takes_tokens else [1, 0, 2])
    per_step, final = True, None
    for k, layer in enumerate(net.layers):
        if not isinstance(layer, (Recurrent, Last)):
            final = None   # Last reads a recurrent stack's ends, not other outputs
        if isinstance(layer, Embedding):
            current = graph.node("Gather", [graph.weight(layer.params["W"]), current], axis=0)
        elif isinstance(layer, Dense):
            current = graph.node("Add", [graph.node("MatMul", [current, graph.weight(
                layer.params["W"])]), graph.weight(layer.params["b"])])
        elif isinstance(layer, Recurrent) and per_step:
            current, final = _recurrent(graph, layer, current, lengths)
        elif isinstance(layer, Last) and final is not None and per_step:
            current = graph.node("Reshape", [graph.node("Transpose", [final], perm=[1, 0, 2]),
                                             graph.constant([0, -1])])
            per_step = False
        else:
            raise ValueError(f"to_onnx: layer {k}, a {type(layer).__name__}, cannot be "
                             f"exported here (after a {type(net.layers[k - 1]).__name__})")
    graph.node("Transpose", [current], perm=[1, 0, 2], out="y") if per_step \
        else graph.node("Identity", [current], out="y")
    out_shape = ["N", "T", net.n_outputs] if per_step else ["N", net.n_outputs]
    proto = helper.make_model(
        helper.make_graph(graph.nodes, "fastlstm", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fastlstm")
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


def _recurrent(graph, layer, x, lengths):
    """The nodes of a recurrent stack on x (T, N, F): its outputs (T, N, D*H) and
    the top layer's final h (D, N, H)."""
    D, H = layer.directions, layer.hidden_size
    for k in range(layer.num_layers):
        W, R, B = zip(*(onnx_weights(layer.cell, Wx, Wh, biases) for (Wx, Wh, *biases), _
                        in (layer.layer_params(k, d) for d in range(D))))
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if layer.cell == "gru":
            attrs["linear_before_reset"] = 1
        inputs = [x] + [graph.weight(np.stack(w)) for w in (W, R, B)] \
            + ([lengths] if lengths else [])
        y, final = graph.node(layer.cell.upper(), inputs, n_out=2, **attrs)
        # Y (T, D, N, H) -> (T, N, D*H): the directions side by side, as ours
        x = graph.node("Reshape", [graph.node("Transpose", [y], perm=[0, 2, 1, 3]),
                                   graph.constant([0, 0, -1])])
    return x, final


class _Graph:
    """Nodes and initializers, each given a fresh name."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def _name(self, stem):
        return f"{stem}_{len(self.nodes) + len(self.initializers)}"

    def weight(self, a):
        name = self._name("w")
        self.initializers.append(self.numpy_helper.from_array(
            np.ascontiguousarray(a, dtype=np.float32), name))
        return name

    def constant(self, values):
        name = self._name("c")
        self.initializers.append(self.numpy_helper.from_array(
            np.asarray(values, dtype=np.int64), name))
        return name

    def node(self, op, inputs, out=None, n_out=1, **attrs):
        names = [out or self._name(op.lower()) + (f"_{j}" if n_out > 1 else "")
                 for j in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), names, **attrs))
        return names[0] if n_out == 1 else names
