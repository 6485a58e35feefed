"""Public functional API: the six kernel-contract functions with input checks.

Each function checks shapes, dtypes and finiteness, copies non-contiguous input,
fills in zeros for the optional arguments, picks a backend and calls it. A compiled
kernel never sees an array this module has not checked. A forward with cache=False
(inference) keeps only what the next step needs and returns None for the cache. A
cache holds copies of the caller's inputs, so that the backward pass is true to
the forward one even where the caller writes into them in between.

Shapes: x (T, B, I); Wx (I, G*H); Wh (H, G*H); b (G*H,); h0, c0 (B, H);
y, dy (T, B, H); G = 1 (RNN), 4 (LSTM), 3 (GRU). One dtype per call: float32 or
float64, taken from x.

precision None (the dtype's own) or "bf16" (float32 only; the cython and numpy
backends): mixed precision, every product of the forward and the backward on
operands rounded to bf16, summed in fp32; the state, the gates and the sums stay
fp32; the cache holds x, Wx, Wh so rounded, and the precision, which the backward
follows (docs/DESIGN.md, "bf16"). Where the CPU has no bf16 dot product, the
cython backend runs the same sums on fp32 FMAs and warns once.

lengths (B,) int, 1 <= lengths[b] <= T, or None (every row runs all T steps): past
its length a row's state stays, its outputs are 0 and dy there counts for nothing;
the final state is each row's state at its own end. The backends take the rows
sorted longest first (docs/DESIGN.md, "The kernel contract"): this module sorts
them where they are not, and puts every result back in the caller's order.
"""
import warnings

import numpy as np

from . import _cy
from ._rows import put, sort_rows, take
from ._threads import team_size
from .backends import available_backends, get_backend
from .cells import CELLS

try:
    _compiled_all_finite = _cy.module("_checks").all_finite
except ImportError:
    _compiled_all_finite = None

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward", "available_backends", "check_precision"]

_DTYPES = (np.float32, np.float64)
PRECISIONS = (None, "bf16")
_warned_emulated = []


def _array(name, a, shape, dtype, shape_text, optional=False):
    """a as a C-contiguous array of dtype and shape, or a TypeError/ValueError.

    None gives zeros where the argument is optional.
    """
    if a is None and optional:
        return np.zeros(shape, dtype=dtype)
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: expected an array, got {type(a).__name__}") from exc
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype).name} (the dtype of x), "
                        f"got {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {shape_text} = {tuple(shape)}, "
                         f"got {a.shape}")
    a = np.ascontiguousarray(a)
    if not all_finite(a):
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def all_finite(a):
    """True when the float array a holds no NaN or inf: one compiled pass on the
    kernels' threads where the Cython extensions are built, else NumPy."""
    a = np.ascontiguousarray(a)
    if _compiled_all_finite is None or a.dtype not in _DTYPES:
        return bool(np.isfinite(a).all())
    return _compiled_all_finite(a.reshape(-1), team_size(a.size))


def _inputs(G, x, Wx, Wh):
    """Check x, Wx, Wh of a cell with G gate blocks; returns them and T, B, I, H."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype not in _DTYPES:
        raise TypeError(f"x: expected dtype float32 or float64, got {x.dtype}")
    if x.ndim != 3:
        raise ValueError(f"x: expected shape (T, B, I), got {x.shape}")
    T, B, I = x.shape
    Wh_shape = np.shape(Wh)
    if len(Wh_shape) != 2:
        raise ValueError(f"Wh: expected shape (H, {G}H), got {Wh_shape}")
    H = Wh_shape[0]
    if min(T, B, I, H) < 1:
        raise ValueError(f"sizes must be >= 1, got T={T}, B={B}, I={I}, H={H}")
    d = x.dtype
    x = _array("x", x, (T, B, I), d, "(T, B, I)")
    Wx = _array("Wx", Wx, (I, G * H), d, f"(I, {G}H)")
    Wh = _array("Wh", Wh, (H, G * H), d, f"(H, {G}H)")
    return x, Wx, Wh, (T, B, I, H)


def check_precision(precision, dtype, backend="auto"):
    """precision checked for a model of dtype on backend: None or "bf16". A
    ValueError for another value, for bf16 on float64 or on the numba backend
    (which has no bf16 kernels); bf16 on the cython backend of a CPU without a
    bf16 dot product warns once (RuntimeWarning) that it runs emulated, the same
    numbers more slowly."""
    if not (precision is None or isinstance(precision, str) and precision in PRECISIONS):
        raise ValueError(f"precision: expected None or 'bf16', got {precision!r}")
    if precision is None:
        return None
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"precision='bf16' needs float32 (bf16 operands, fp32 sums and "
                         f"state), got {np.dtype(dtype).name}")
    name = get_backend(backend).name
    if name == "numba":
        raise ValueError("precision='bf16': the numba backend has no bf16 kernels; the "
                         "cython backend has them")
    if name.startswith("cython") and not _warned_emulated:
        kernel, why = _cy.bf16_kernel(name.partition(":")[2] or None)
        if kernel == "emulated":
            _warned_emulated.append(why)
            warnings.warn(f"precision='bf16' runs emulated on fp32 FMAs ({why}): the same "
                          "numbers as bf16 dot products, about half their speed",
                          RuntimeWarning, stacklevel=3)
    return precision


def lengths_array(lengths, T, B, rows="B", steps="T"):
    """lengths checked against T steps and B rows, as an intp array (B,), or None
    where every row runs all T steps (None given, or all lengths T): a TypeError or
    ValueError that says what is wrong otherwise (naming the sizes rows and steps)."""
    if lengths is None:
        return None
    a = np.asarray(lengths)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"lengths: expected an int array of shape ({rows},) = ({B},), got "
                        f"dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"lengths: expected shape ({rows},) = ({B},), got {a.shape}")
    bad = (a < 1) | (a > T)
    if bad.any():
        b = int(np.argmax(bad))
        raise ValueError(f"lengths: expected 1 <= lengths[{rows.lower()}] <= {steps} = {T}, "
                         f"got lengths[{b}] = {a[b]}")
    return None if (a == T).all() else a.astype(np.intp)


def _cache(cache, cell):
    """Check a forward cache before a compiled kernel reads it."""
    keys = CELLS[cell].cache
    if not isinstance(cache, dict) or not all(k in cache for k in keys):
        raise TypeError(f"cache: expected the cache returned by {cell}_forward")
    x, Wh = cache["x"], cache["Wh"]
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.dtype not in _DTYPES \
            or not isinstance(Wh, np.ndarray) or Wh.ndim != 2:
        raise TypeError(f"cache: expected the cache returned by {cell}_forward")
    T, B, I = x.shape
    H = Wh.shape[0]
    want = CELLS[cell].shapes(T, B, I, H)
    for k in keys:
        a = cache[k]
        if not isinstance(a, np.ndarray) or a.shape != want[k] or a.dtype != x.dtype \
                or not a.flags.c_contiguous:
            raise ValueError(f"cache[{k!r}]: expected a C-contiguous {x.dtype} array of "
                             f"shape {want[k]}, got {getattr(a, 'shape', type(a))}; "
                             f"pass the cache returned by {cell}_forward unchanged")
    if cache.get("precision") not in PRECISIONS:
        raise ValueError(f"cache['precision']: expected None or 'bf16'; pass the cache "
                         f"returned by {cell}_forward unchanged")
    lengths = cache.get("lengths")
    if lengths is not None and (not isinstance(lengths, np.ndarray) or lengths.shape != (B,)
                                or lengths.dtype != np.intp):
        raise ValueError(f"cache['lengths']: expected None or an intp array of shape "
                         f"({B},); pass the cache returned by {cell}_forward unchanged")
    return (T, B, I, H), x.dtype


def _kept(pairs):
    """The arrays a cache holds: each checked array, copied where it is the caller's
    own (given) rather than one the checks or the sorting made."""
    return [a.copy() if a is given else a for a, given in pairs]


def _grads(T, B, H, dtype, dy, **final):
    dy = _array("dy", dy, (T, B, H), dtype, "(T, B, H)", optional=True)
    return [dy] + [_array(k, v, (B, H), dtype, "(B, H)", optional=True)
                   for k, v in final.items()]


def _forward(cell, backend, cache, lengths, x, Wx, Wh, biases, states, precision):
    """The forward of cell on checked arrays: sort the rows by length, run the
    backend, put y and the final state back in the caller's order. states are the
    initial states (B, H), biases the checked bias vectors."""
    precision = check_precision(precision, x.dtype, backend)
    given = (x, Wx, Wh) + tuple(states)
    T, B = x.shape[:2]
    order, lengths, (x, *states) = sort_rows(lengths_array(lengths, T, B),
                                             [(x, 1)] + [(s, 0) for s in states])
    arrays = (x, Wx, Wh) + tuple(states)
    if cache:
        # in bf16 the backend keeps x, Wx and Wh rounded, in arrays of its own
        own = 3 if precision else 0
        arrays = arrays[:own] + tuple(_kept(zip(arrays[own:], given[own:])))
    x, Wx, Wh, *states = arrays
    out = getattr(get_backend(backend), f"{cell}_forward")(
        x, Wx, Wh, *biases, *states, cache=bool(cache), lengths=lengths,
        precision=precision)
    y, finals, kept = out[0], out[1:-1], out[-1]
    if kept is not None:
        kept["order"] = order
    return (put(y, order, 1),) + tuple(put(f, order, 0) for f in finals) + (kept,)


def _backward(cell, backend, cache, dy, finals):
    """The backward of cell: the gradients in the rows' sorted order for the
    backend, its results back in the caller's order."""
    (T, B, I, H), d = _cache(cache, cell)
    dy, *finals = _grads(T, B, H, d, dy, **finals)
    order = cache.get("order")
    if order is not None and (not isinstance(order, np.ndarray) or order.shape != (B,)):
        raise ValueError(f"cache['order']: expected None or an array of shape ({B},); "
                         f"pass the cache returned by {cell}_forward unchanged")
    dy = take(dy, order, 1)
    finals = [take(f, order, 0) for f in finals]
    out = getattr(get_backend(backend), f"{cell}_backward")(cache, dy, *finals)
    n_states = len(CELLS[cell].states)
    return (put(out[0], order, 1),) + tuple(out[1:-n_states]) \
        + tuple(put(d0, order, 0) for d0 in out[-n_states:])


def rnn_forward(x, Wx, Wh, b, h0=None, *, lengths=None, backend="auto", cache=True,
                precision=None):
    """tanh RNN over a sequence.  Returns y (T, B, H), hT (B, H), cache."""
    x, Wx, Wh, (T, B, I, H) = _inputs(1, x, Wx, Wh)
    b = _array("b", b, (H,), x.dtype, "(H,)")
    h0 = _array("h0", h0, (B, H), x.dtype, "(B, H)", optional=True)
    return _forward("rnn", backend, cache, lengths, x, Wx, Wh, (b,), (h0,), precision)


def rnn_backward(cache, dy=None, dhT=None, *, backend="auto"):
    """Gradients from dy = dL/dy (T, B, H) and dhT = dL/dhT (B, H); None means zeros.

    Returns dx, dWx, dWh, db, dh0.
    """
    return _backward("rnn", backend, cache, dy, dict(dhT=dhT))


def lstm_forward(x, Wx, Wh, b, h0=None, c0=None, *, lengths=None, backend="auto",
                 cache=True, precision=None):
    """LSTM (gates i, f, g, o) over a sequence.  Returns y (T, B, H), hT, cT (B, H), cache."""
    x, Wx, Wh, (T, B, I, H) = _inputs(4, x, Wx, Wh)
    b = _array("b", b, (4 * H,), x.dtype, "(4H,)")
    h0 = _array("h0", h0, (B, H), x.dtype, "(B, H)", optional=True)
    c0 = _array("c0", c0, (B, H), x.dtype, "(B, H)", optional=True)
    return _forward("lstm", backend, cache, lengths, x, Wx, Wh, (b,), (h0, c0), precision)


def lstm_backward(cache, dy=None, dhT=None, dcT=None, *, backend="auto"):
    """Gradients from dy (T, B, H), dhT and dcT (B, H); None means zeros.

    Returns dx, dWx, dWh, db, dh0, dc0.
    """
    return _backward("lstm", backend, cache, dy, dict(dhT=dhT, dcT=dcT))


def gru_forward(x, Wx, Wh, bx, bh, h0=None, *, lengths=None, backend="auto", cache=True,
                precision=None):
    """GRU (PyTorch semantics, gates r, z, n) over a sequence.

    Returns y (T, B, H), hT (B, H), cache.
    """
    x, Wx, Wh, (T, B, I, H) = _inputs(3, x, Wx, Wh)
    bx = _array("bx", bx, (3 * H,), x.dtype, "(3H,)")
    bh = _array("bh", bh, (3 * H,), x.dtype, "(3H,)")
    h0 = _array("h0", h0, (B, H), x.dtype, "(B, H)", optional=True)
    return _forward("gru", backend, cache, lengths, x, Wx, Wh, (bx, bh), (h0,),
                    precision)


def gru_backward(cache, dy=None, dhT=None, *, backend="auto"):
    """Gradients from dy (T, B, H) and dhT (B, H); None means zeros.

    Returns dx, dWx, dWh, dbx, dbh, dh0.
    """
    return _backward("gru", backend, cache, dy, dict(dhT=dhT))
