"""Optimizers (SGD with momentum, Adam) and gradient clipping by global L2 norm.

An optimizer updates a dict of parameter arrays in place from a dict of gradients
with the same keys. Its `state` is a dict of arrays (momenta, moments, step
count) that fastlstm.io saves with a checkpoint so training can resume exactly.
The updates and the norm run on a backend's kernels (fastlstm.reference states
them), on the same threads as the cells.
"""
import numpy as np

from .backends import get_backend

__all__ = ["SGD", "Adam", "clip_grads", "OPTIMIZERS", "make_optimizer"]


def _flat(a, name, like=None):
    """a (C-contiguous, float32 or float64; like's dtype and shape where given) as a
    (n,) view, which the kernels read or update in place."""
    if not (isinstance(a, np.ndarray) and a.flags.c_contiguous
            and a.dtype in (np.float32, np.float64)):
        raise TypeError(f"{name}: expected a C-contiguous float32 or float64 array, got "
                        f"{type(a).__name__} {getattr(a, 'dtype', '')}")
    if like is not None and (a.dtype != like.dtype or a.shape != like.shape):
        raise ValueError(f"{name}: expected {like.dtype} {like.shape} as its parameter, "
                         f"got {a.dtype} {a.shape}")
    return a.reshape(-1)


def clip_grads(grads, max_norm, *, backend="auto"):
    """Scale every gradient by max_norm / ||g|| when ||g|| > max_norm, in place.

    ||g|| is the L2 norm of all the gradients together (a dict or a list of
    float arrays), accumulated in float64. Returns ||g|| before clipping; a
    max_norm of None only measures.
    """
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"max_norm: expected > 0, got {max_norm!r}")
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    kernels = get_backend(backend)
    norm = float(np.sqrt(sum(kernels.sum_squares(_flat(a, "grads")) for a in arrays)))
    if max_norm is not None and norm > max_norm:
        scale = max_norm / norm
        for g in arrays:
            g *= scale
    return norm


class Optimizer:
    """lr: the learning rate (a schedule may change it between epochs:
    fastlstm.callbacks). weight_decay: decoupled weight decay, each step taking
    lr * weight_decay of every parameter off before the update (AdamW; Loshchilov
    & Hutter, 2019), biases included. backend: the kernels the updates run on
    (fastlstm.train gives an optimizer it makes from a name the model's backend)."""

    slots = ()      # kinds of state array each parameter has: state["<kind>/<name>"]
    counters = ()   # int scalars in state (Adam's step count "t")

    def __init__(self, lr, weight_decay=0.0, backend="auto"):
        if not lr > 0:
            raise ValueError(f"lr: expected > 0, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay: expected >= 0, got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.backend = backend
        self.state = {}

    def _slot(self, kind, key, like):
        assert kind in self.slots
        name = f"{kind}/{key}"
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    def step(self, params, grads):
        raise NotImplementedError


class SGD(Optimizer):
    """p *= 1 - lr*weight_decay;  v = momentum*v + g;  p -= lr*v  (momentum=0: plain SGD)."""

    slots = ("v",)

    def __init__(self, lr=0.1, momentum=0.9, weight_decay=0.0, backend="auto"):
        super().__init__(lr, weight_decay, backend)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def step(self, params, grads):
        kernels = get_backend(self.backend)
        for key, p in params.items():
            v = self._slot("v", key, p).reshape(-1) if self.momentum else None
            kernels.sgd_update(_flat(p, key), _flat(grads[key], f"grads[{key!r}]", p), v,
                               self.lr, self.momentum, self.lr * self.weight_decay)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected moments; with weight_decay,
    AdamW."""

    slots = ("m", "v")
    counters = ("t",)

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 backend="auto"):
        super().__init__(lr, weight_decay, backend)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def step(self, params, grads):
        kernels = get_backend(self.backend)
        t = int(self.state.get("t", 0)) + 1
        self.state["t"] = np.array(t)
        lr_t = self.lr * np.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        for key, p in params.items():
            m, v = self._slot("m", key, p), self._slot("v", key, p)
            kernels.adam_update(_flat(p, key), _flat(grads[key], f"grads[{key!r}]", p),
                                m.reshape(-1), v.reshape(-1), lr_t, self.beta1, self.beta2,
                                self.eps, self.lr * self.weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}


def make_optimizer(optimizer, lr=None, backend="auto"):
    """An Optimizer from a name ("adam", "sgd") on backend, or an Optimizer instance."""
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            optimizer.lr = float(lr)
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} or an "
                         f"Optimizer, got {optimizer!r}")
    return OPTIMIZERS[optimizer](lr=DEFAULT_LR[optimizer] if lr is None else lr,
                                 backend=backend)
