"""Weights to and from torch: from_torch(torch.nn.RNN / LSTM / GRU) gives the
equivalent fastlstm layer, to_torch(layer) the torch module back.

torch is imported here only, when one of them is called. The weights map as

    Wx = weight_ih_l{k}[_reverse].T       (I, G*H), the gate blocks in one order
    Wh = weight_hh_l{k}[_reverse].T       (H, G*H)  (i f g o; r z n)
    b  = bias_ih + bias_hh                (RNN, LSTM: one bias; to_torch puts it
                                           all in bias_ih, bias_hh = 0)
    bx, bh = bias_ih, bias_hh             (GRU: the reset gate scales bh's n block)

and the state's entries are in torch's order (layer k, direction d at k * 2 + d).
"""
import numpy as np

from .layers import RECURRENT

__all__ = ["from_torch", "to_torch"]

_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("fastlstm.from_torch / to_torch need PyTorch, which is not "
                          "installed (pip install torch)") from exc
    return torch


def _suffix(layer, d):
    return f"_l{layer}" + ("_reverse" if d else "")


def from_torch(module, *, backend="auto"):
    """The fastlstm RNN, LSTM or GRU layer of a torch.nn.RNN (tanh), LSTM or GRU
    module: the same sizes, num_layers, bidirectional, batch_first, dropout and
    dtype (float32 or float64), and its weights copied."""
    torch = _torch()
    kinds = {torch.nn.RNN: "rnn", torch.nn.LSTM: "lstm", torch.nn.GRU: "gru"}
    cell = kinds.get(type(module))
    if cell is None:
        raise TypeError(f"module: expected a torch.nn.RNN, LSTM or GRU, got "
                        f"{type(module).__name__}")
    if cell == "rnn" and module.nonlinearity != "tanh":
        raise ValueError(f"module: fastlstm's RNN is the tanh RNN, this one uses "
                         f"{module.nonlinearity!r}")
    if getattr(module, "proj_size", 0):
        raise ValueError("module: an LSTM with proj_size has no fastlstm equivalent")
    dtype = _DTYPES.get(str(module.weight_ih_l0.dtype))
    if dtype is None:
        raise TypeError(f"module: expected float32 or float64 weights, got "
                        f"{module.weight_ih_l0.dtype}")
    layer = RECURRENT[cell](module.input_size, module.hidden_size, module.num_layers,
                            bidirectional=module.bidirectional, dropout=module.dropout,
                            batch_first=module.batch_first, dtype=dtype, backend=backend)
    weights = {k: v.detach().cpu().numpy() for k, v in module.named_parameters()}
    for k in range(layer.num_layers):
        for d in range(layer.directions):
            s = _suffix(k, d)
            params, names = layer.layer_params(k, d)
            Wx, Wh, *biases = params
            Wx[...] = weights[f"weight_ih{s}"].T
            Wh[...] = weights[f"weight_hh{s}"].T
            b_ih = weights.get(f"bias_ih{s}", 0.0)
            b_hh = weights.get(f"bias_hh{s}", 0.0)
            if cell == "gru":
                biases[0][...], biases[1][...] = b_ih, b_hh
            else:
                biases[0][...] = np.add(b_ih, b_hh)
    return layer


def to_torch(layer):
    """The torch.nn.RNN, LSTM or GRU module equal to a fastlstm recurrent layer:
    the same sizes, num_layers, bidirectional, batch_first, dropout, dtype and
    weights (biases in bias_ih, bias_hh 0, but the GRU's)."""
    torch = _torch()
    if type(layer) not in RECURRENT.values():
        raise TypeError(f"layer: expected a fastlstm RNN, LSTM or GRU, got "
                        f"{type(layer).__name__}")
    kind = getattr(torch.nn, layer.cell.upper())
    dtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    module = kind(layer.input_size, layer.hidden_size, layer.num_layers,
                  batch_first=layer.batch_first, dropout=layer.dropout,
                  bidirectional=layer.bidirectional, dtype=dtype)
    with torch.no_grad():
        for k in range(layer.num_layers):
            for d in range(layer.directions):
                s = _suffix(k, d)
                (Wx, Wh, *biases), _ = layer.layer_params(k, d)
                getattr(module, f"weight_ih{s}").copy_(torch.from_numpy(Wx.T.copy()))
                getattr(module, f"weight_hh{s}").copy_(torch.from_numpy(Wh.T.copy()))
                b_hh = biases[1] if layer.cell == "gru" else np.zeros_like(biases[0])
                getattr(module, f"bias_ih{s}").copy_(torch.from_numpy(biases[0].copy()))
                getattr(module, f"bias_hh{s}").copy_(torch.from_numpy(b_hh))
    return module
