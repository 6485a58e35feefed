"""Losses over every step of a batch, with an optional per-step mask.

Each returns (loss, dL/d(prediction)). The loss is the mean over the steps the mask
keeps (all steps without a mask), so a batch's loss does not depend on its size.
"""
import numpy as np

__all__ = ["log_softmax", "softmax_cross_entropy", "mse", "LOSSES"]


def _mask(mask, shape):
    """The mask as float weights of shape, and how many steps it keeps."""
    if mask is None:
        return None, int(np.prod(shape))
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask: expected shape {shape} (as the targets), got {mask.shape}")
    return mask.astype(bool), int(np.count_nonzero(mask))


def log_softmax(a):
    """log softmax over the last axis, shifted by the maximum so exp cannot overflow."""
    a = a - a.max(axis=-1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean of -log softmax(logits)[target] over the kept steps.

    logits (..., V) float; targets (...) int in [0, V); mask (...) bool or None.
    Returns (loss, dlogits); with no step kept, the loss is 0.
    """
    V = logits.shape[-1]
    targets = np.asarray(targets)
    if targets.shape != logits.shape[:-1] or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets: expected int ids of shape {logits.shape[:-1]}, got "
                         f"{targets.dtype} {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets: expected ids in [0, {V}), got "
                         f"[{targets.min()}, {targets.max()}]")
    mask, n = _mask(mask, targets.shape)
    log_p = log_softmax(logits)
    nll = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    dlogits = np.exp(log_p)
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1) - 1, axis=-1)
    if mask is not None:
        nll = np.where(mask, nll, 0)
        dlogits *= mask[..., None]
    scale = 1.0 / max(n, 1)
    dlogits *= scale
    return float(nll.sum(dtype=np.float64)) * scale, dlogits


def mse(pred, target, mask=None):
    """Mean of (pred - target)^2 over the kept steps and every feature.

    pred, target (..., F); mask (...) bool or None (over the steps, not features).
    Returns (loss, dpred).
    """
    target = np.asarray(target, dtype=pred.dtype)
    if target.shape != pred.shape:
        raise ValueError(f"targets: expected shape {pred.shape}, got {target.shape}")
    mask, n = _mask(mask, pred.shape[:-1])
    diff = pred - target
    if mask is not None:
        diff *= mask[..., None]
    scale = 1.0 / max(n * pred.shape[-1], 1)
    return float(np.square(diff, dtype=np.float64).sum()) * scale, (2 * scale) * diff


LOSSES = {"xent": softmax_cross_entropy, "mse": mse}
