"""Losses over every step of a batch, with an optional per-step mask.

Each returns (loss, dL/d(prediction)). The loss is the mean over the steps the mask
keeps (all steps without a mask), so a batch's loss does not depend on its size.
The work runs on the backend's kernels (fastlstm.reference states them), on the
same threads as the cells.
"""
import numpy as np

from .backends import get_backend

__all__ = ["log_softmax", "softmax_cross_entropy", "mse", "LOSSES"]


def _keep(mask, shape):
    """The mask as a flat uint8 array over the steps of shape (None: every step), and
    how many steps it keeps."""
    if mask is None:
        return None, int(np.prod(shape))
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask: expected shape {shape} (as the targets), got {mask.shape}")
    keep = np.ascontiguousarray(mask, dtype=bool).reshape(-1).view(np.uint8)
    return keep, int(np.count_nonzero(keep))


def _rows(a, name):
    """a (..., F) as a C-contiguous (M, F) array."""
    if a.ndim < 1:
        raise ValueError(f"{name}: expected at least one axis, got a scalar")
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def log_softmax(a):
    """log softmax over the last axis, shifted by the maximum so exp cannot overflow."""
    a = a - a.max(axis=-1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, targets, mask=None, *, backend="auto", out=None):
    """Mean of -log softmax(logits)[target] over the kept steps.

    logits (..., V) float32 or float64; targets (...) int in [0, V); mask (...)
    bool or None. Returns (loss, dlogits), dlogits written into out where given
    (it may be logits itself). With no step kept, the loss is 0.
    """
    logits = np.asarray(logits)
    if logits.dtype not in (np.float32, np.float64):
        raise TypeError(f"logits: expected float32 or float64, got {logits.dtype}")
    V = logits.shape[-1]
    targets = np.asarray(targets)
    if targets.shape != logits.shape[:-1] or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets: expected int ids of shape {logits.shape[:-1]}, got "
                         f"{targets.dtype} {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets: expected ids in [0, {V}), got "
                         f"[{targets.min()}, {targets.max()}]")
    keep, n = _keep(mask, targets.shape)
    z = _rows(logits, "logits")
    dz = np.empty_like(z) if out is None else out.reshape(z.shape)
    t = np.ascontiguousarray(targets, dtype=np.intp).reshape(-1)
    scale = 1.0 / max(n, 1)
    total = get_backend(backend).softmax_xent(z, t, keep, scale, dz)
    return total * scale, dz.reshape(logits.shape)


def mse(pred, target, mask=None, *, backend="auto", out=None):
    """Mean of (pred - target)^2 over the kept steps and every feature.

    pred, target (..., F); mask (...) bool or None (over the steps, not features).
    Returns (loss, dpred), dpred written into out where given.
    """
    pred = np.asarray(pred)
    if pred.dtype not in (np.float32, np.float64):
        raise TypeError(f"pred: expected float32 or float64, got {pred.dtype}")
    target = np.asarray(target, dtype=pred.dtype)
    if target.shape != pred.shape:
        raise ValueError(f"targets: expected shape {pred.shape}, got {target.shape}")
    keep, n = _keep(mask, pred.shape[:-1])
    p, y = _rows(pred, "pred"), _rows(target, "targets")
    dp = np.empty_like(p) if out is None else out.reshape(p.shape)
    scale = 1.0 / max(n * pred.shape[-1], 1)
    total = get_backend(backend).mse(p, y, keep, scale, dp)
    return total * scale, dp.reshape(pred.shape)


LOSSES = {"xent": softmax_cross_entropy, "mse": mse}
