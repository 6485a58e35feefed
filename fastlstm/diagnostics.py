"""Diagnostics: how far back the gradient reaches, and how large it gets.

In BPTT the gradient with respect to an earlier hidden state is multiplied by
the recurrent Jacobian once per step. For a tanh RNN it shrinks (or grows)
geometrically with the distance from the loss; the LSTM's cell path carries it.
gradient_norms measures this on a batch; GradientNorms records the global
gradient norm of every training step, to watch for explosion.
"""
import numpy as np

from .layers import Recurrent
from .losses import LOSSES
from .model import Model, to_time_major

__all__ = ["gradient_norms", "GradientNorms"]


def gradient_norms(net, X, Y=None, state=None):
    """||dL/dh_t|| for every step t (T,), when the loss sits on the last step only.

    net: a Model, with X (N, T) tokens or (N, T, F) values and Y its targets,
    batch-first; L is the model's loss on step T-1 and h_t the output of the top
    layer of its last recurrent stack. Or a bare recurrent layer (RNN, LSTM, GRU
    with the weights it holds), with X (T, B, I) time-major and Y = dL/dh_{T-1}
    (B, H), default all ones, i.e. L = sum of h_{T-1}.

    dL/dh_t is the total derivative through every later step (for the LSTM, with
    the cell state c_t held fixed); the norm is over the whole (B, H) array.
    Costs one forward over t+1 steps and a forward and backward over the rest per
    t: O(T^2) steps, made for diagnosis, not training. Overwrites the layers' grads.
    """
    if isinstance(net, Recurrent):
        x = np.ascontiguousarray(X, dtype=net.dtype)
        if x.ndim != 3:
            raise ValueError(f"X: expected (T, B, I) for a bare layer, got {x.shape}")
        B = x.shape[1]
        g = np.ones((B, net.hidden_size), net.dtype) if Y is None else \
            np.asarray(Y, dtype=net.dtype)
        if g.shape != (B, net.hidden_size):
            raise ValueError(f"Y: expected dL/dh_T of shape (B, H) = "
                             f"{(B, net.hidden_size)}, got {g.shape}")
        return _norms(net, x, g, state)
    if not isinstance(net, Model) or not net.recurrent:
        raise TypeError("net: expected a Model with a recurrent layer, or a recurrent layer")
    if Y is None:
        raise ValueError("Y: a model's targets are needed for its loss")
    k = max(i for i, layer in enumerate(net.layers) if isinstance(layer, Recurrent))
    rec = net.layers[k]
    x = to_time_major(X)
    for layer in net.layers[:k]:
        x = layer.forward(x)[0]
    y, _, _ = rec.forward(x, state)
    out, backprops = y, []
    for layer in net.layers[k + 1:]:
        out, bp = layer.forward(out)
        backprops.append(bp)
    last = np.zeros(out.shape[:2], bool)
    last[-1] = True
    _, dout = LOSSES[net.loss_name](out, to_time_major(Y), last)
    for bp in reversed(backprops):
        dout = bp(dout)
    return _norms(rec, x, dout[-1], state)


def _norms(rec, x, g, state):
    """||dL/dh_t|| of rec's top layer for L = <h_{T-1}, g>, from x (T, B, I)."""
    T = x.shape[0]
    top = rec.num_layers - 1
    norms = np.empty(T)
    norms[-1] = np.linalg.norm(g)
    for t in range(T - 1):
        _, state_t, _ = rec.forward(x[:t + 1], state)
        rest = x[t + 1:]
        _, _, backprop = rec.forward(rest, state_t)
        dy = np.zeros(rest.shape[:2] + (rec.hidden_size,), rec.dtype)
        dy[-1] = g
        _, dstate = backprop(dy)
        norms[t] = np.linalg.norm(dstate[0][top])
    return norms


class GradientNorms:
    """A fastlstm.train callback that records the global gradient norm (before
    clipping) of every step: `norms`, and the `losses` beside them."""

    def __init__(self):
        self.norms, self.losses = [], []

    def on_step(self, info):
        self.norms.append(info.grad_norm)
        self.losses.append(info.loss)
