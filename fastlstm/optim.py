"""Optimizers (SGD with momentum, Adam) and gradient clipping by global L2 norm.

An optimizer updates a dict of parameter arrays in place from a dict of gradients
with the same keys. Its `state` is a dict of arrays (momenta, moments, step
count) that fastlstm.io saves with a checkpoint so training can resume exactly.
"""
import numpy as np

__all__ = ["SGD", "Adam", "clip_grads", "OPTIMIZERS", "make_optimizer"]


def clip_grads(grads, max_norm):
    """Scale every gradient by max_norm / ||g|| when ||g|| > max_norm, in place.

    ||g|| is the L2 norm of all the gradients together (a dict or a list of
    arrays), computed in float64. Returns ||g|| before clipping; a max_norm of
    None only measures.
    """
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    norm = float(np.sqrt(sum(np.vdot(g, g).real for g in
                             (np.asarray(a, dtype=np.float64).ravel() for a in arrays))))
    if max_norm is not None:
        if not max_norm > 0:
            raise ValueError(f"max_norm: expected > 0, got {max_norm!r}")
        if norm > max_norm:
            scale = max_norm / norm
            for g in arrays:
                g *= scale
    return norm


class Optimizer:
    def __init__(self, lr):
        if not lr > 0:
            raise ValueError(f"lr: expected > 0, got {lr!r}")
        self.lr = float(lr)
        self.state = {}

    def _slot(self, kind, key, like):
        name = f"{kind}/{key}"
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    def step(self, params, grads):
        raise NotImplementedError


class SGD(Optimizer):
    """v = momentum*v + g;  p -= lr*v  (momentum=0: plain SGD)."""

    def __init__(self, lr=0.1, momentum=0.9):
        super().__init__(lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def step(self, params, grads):
        for key, p in params.items():
            g = grads[key]
            if self.momentum:
                v = self._slot("v", key, p)
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected moments."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def step(self, params, grads):
        t = int(self.state.get("t", 0)) + 1
        self.state["t"] = np.array(t)
        lr = self.lr * np.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        for key, p in params.items():
            g = grads[key]
            m, v = self._slot("m", key, p), self._slot("v", key, p)
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * np.square(g)
            p -= (lr * m / (np.sqrt(v) + self.eps)).astype(p.dtype, copy=False)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}


def make_optimizer(optimizer, lr=None):
    """An Optimizer from a name ("adam", "sgd") or an Optimizer instance."""
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            optimizer.lr = float(lr)
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} or an "
                         f"Optimizer, got {optimizer!r}")
    return OPTIMIZERS[optimizer](lr=DEFAULT_LR[optimizer] if lr is None else lr)
