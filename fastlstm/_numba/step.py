"""The rest of a training step in Numba: the Dense layer, the embedding's
gradient, the losses and the optimizers (fastlstm.reference states each).

Rows, or elements, are split across Numba's threads in P near-equal parts; the
GEMMs are np.dot on each thread's rows (single-threaded BLAS: the wrappers hold
fastlstm._threads.single_threaded_blas).
"""
import numpy as np
from numba import njit, prange

from .jit import JIT
from .common import add_into, copy_into, one_of, span_lo, zero

# Elements below which one thread does the work (a parallel loop costs more).
PARALLEL_MIN = 65536


def parts(n, work, n_threads):
    """How many parts a loop over n rows with `work` elements in all is cut into."""
    return max(1, min(n_threads, n)) if work >= PARALLEL_MIN else 1


@njit(parallel=True, **JIT)
def dense_backward(x, W, dy, dx, dW, db, P):
    """dW = x.T dy and db = dy summed over rows, from P partial sums over the rows;
    dx = dy W.T where dx has rows (it is (0, K) without need_dx)."""
    M = x.shape[0]
    part_W = np.empty((P,) + dW.shape, dtype=dW.dtype)
    part_b = np.empty((P,) + db.shape, dtype=db.dtype)
    for p in prange(P):
        lo, hi = span_lo(M, P, p), span_lo(M, P, p + 1)
        zero(part_b[p])
        if hi > lo:
            np.dot(x[lo:hi].T, dy[lo:hi], part_W[p])
            for r in range(lo, hi):
                add_into(part_b[p], dy[r])
            if dx.shape[0]:
                np.dot(dy[lo:hi], W.T, dx[lo:hi])
        else:
            for k in range(dW.shape[0]):
                zero(part_W[p, k])
    for k in range(dW.shape[0]):
        copy_into(dW[k], part_W[0, k])
        for p in range(1, P):
            add_into(dW[k], part_W[p, k])
    copy_into(db, part_b[0])
    for p in range(1, P):
        add_into(db, part_b[p])


@njit(parallel=True, **JIT)
def embedding_backward(ids, dy, dW, P):
    """dW[ids[m]] += dy[m]; the parts split dW's rows, each reads every id."""
    V, E = dW.shape
    for p in prange(P):
        v0, v1 = span_lo(V, P, p), span_lo(V, P, p + 1)
        for m in range(ids.shape[0]):
            k = ids[m]
            if v0 <= k < v1:
                for e in range(E):
                    dW[k, e] += dy[m, e]


@njit(**JIT)
def _xent_row(z, t, scale, dz):
    """One row of softmax_xent; z[t] is read before dz, which may be z, is written."""
    zmax = z.max()
    zt = z[t]
    s = 0.0
    for j in range(z.shape[0]):
        dz[j] = np.exp(z[j] - zmax)
        s += dz[j]
    loss = np.log(s) - (zt - zmax)
    w = scale / s
    for j in range(z.shape[0]):
        dz[j] *= w
    dz[t] -= scale
    return loss


@njit(parallel=True, **JIT)
def softmax_xent(z, t, keep, scale, dz, P):
    """As fastlstm.reference.softmax_xent; keep has M entries, or none for every row."""
    M = z.shape[0]
    total = 0.0
    for p in prange(P):
        part = 0.0
        for r in range(span_lo(M, P, p), span_lo(M, P, p + 1)):
            if keep.shape[0] and not keep[r]:
                zero(dz[r])
            else:
                part += _xent_row(z[r], t[r], scale, dz[r])
        total += part
    return total


@njit(parallel=True, **JIT)
def mse(pred, y, keep, scale, dp, P):
    """As fastlstm.reference.mse; keep has M entries, or none for every row."""
    M, F = pred.shape
    total = 0.0
    two_scale = 2 * scale
    for p in prange(P):
        part = 0.0
        for r in range(span_lo(M, P, p), span_lo(M, P, p + 1)):
            w = 0 if keep.shape[0] and not keep[r] else 1
            for f in range(F):
                d = (pred[r, f] - y[r, f]) * w
                part += np.float64(d) * d
                dp[r, f] = two_scale * d
        total += part
    return total


@njit(parallel=True, **JIT)
def sum_squares(a, P):
    n = a.shape[0]
    total = 0.0
    for p in prange(P):
        part = 0.0
        for k in range(span_lo(n, P, p), span_lo(n, P, p + 1)):
            part += np.float64(a[k]) * a[k]
        total += part
    return total


@njit(parallel=True, **JIT)
def adam_update(p, g, m, v, lr_t, beta1, beta2, eps, decay, P):
    n = p.shape[0]
    one = one_of(p)
    b1, b2 = one * beta1, one * beta2
    c1, c2, e, keep = one * (1 - beta1), one * (1 - beta2), one * eps, one * (1 - decay)
    for q in prange(P):
        for k in range(span_lo(n, P, q), span_lo(n, P, q + 1)):
            if decay != 0:
                p[k] *= keep
            m[k] = b1 * m[k] + c1 * g[k]
            v[k] = b2 * v[k] + c2 * (g[k] * g[k])
            p[k] -= lr_t * m[k] / (np.sqrt(v[k]) + e)


@njit(parallel=True, **JIT)
def sgd_update(p, g, v, lr, momentum, decay, P):
    """v has n entries, or none without momentum."""
    n = p.shape[0]
    one = one_of(p)
    mu, step, keep = one * momentum, one * lr, one * (1 - decay)
    for q in prange(P):
        for k in range(span_lo(n, P, q), span_lo(n, P, q + 1)):
            if decay != 0:
                p[k] *= keep
            if v.shape[0]:
                v[k] = mu * v[k] + g[k]
                p[k] -= step * v[k]
            else:
                p[k] -= step * g[k]
