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
"""
import numpy as np

from ._threads import team_size
from .backends import available_backends, get_backend
from .cells import CELLS

try:
    from ._cy._checks import all_finite as _compiled_all_finite
except ImportError:
    _compiled_all_finite = None

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward", "available_backends"]

_DTYPES = (np.float32, np.float64)


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
    return _compiled_all_finite(a.reshape(-1), team_size())


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
    return (T, B, I, H), x.dtype


def _kept(pairs):
    """The arrays a cache holds: each checked array, copied where it is the caller's
    own (given) rather than one the checks made."""
    return [a.copy() if a is given else a for a, given in pairs]


def _grads(T, B, H, dtype, dy, **final):
    dy = _array("dy", dy, (T, B, H), dtype, "(T, B, H)", optional=True)
    return [dy] + [_array(k, v, (B, H), dtype, "(B, H)", optional=True)
                   for k, v in final.items()]


def rnn_forward(x, Wx, Wh, b, h0=None, *, backend="auto", cache=True):
    """tanh RNN over a sequence.  Returns y (T, B, H), hT (B, H), cache."""
    given = (x, Wx, Wh, h0)
    x, Wx, Wh, (T, B, I, H) = _inputs(1, x, Wx, Wh)
    b = _array("b", b, (H,), x.dtype, "(H,)")
    h0 = _array("h0", h0, (B, H), x.dtype, "(B, H)", optional=True)
    if cache:
        x, Wx, Wh, h0 = _kept(zip((x, Wx, Wh, h0), given))
    return get_backend(backend).rnn_forward(x, Wx, Wh, b, h0, cache=bool(cache))


def rnn_backward(cache, dy=None, dhT=None, *, backend="auto"):
    """Gradients from dy = dL/dy (T, B, H) and dhT = dL/dhT (B, H); None means zeros.

    Returns dx, dWx, dWh, db, dh0.
    """
    (T, B, I, H), d = _cache(cache, "rnn")
    dy, dhT = _grads(T, B, H, d, dy, dhT=dhT)
    return get_backend(backend).rnn_backward(cache, dy, dhT)


def lstm_forward(x, Wx, Wh, b, h0=None, c0=None, *, backend="auto", cache=True):
    """LSTM (gates i, f, g, o) over a sequence.  Returns y (T, B, H), hT, cT (B, H), cache."""
    given = (x, Wx, Wh, h0, c0)
    x, Wx, Wh, (T, B, I, H) = _inputs(4, x, Wx, Wh)
    b = _array("b", b, (4 * H,), x.dtype, "(4H,)")
    h0 = _array("h0", h0, (B, H), x.dtype, "(B, H)", optional=True)
    c0 = _array("c0", c0, (B, H), x.dtype, "(B, H)", optional=True)
    if cache:
        x, Wx, Wh, h0, c0 = _kept(zip((x, Wx, Wh, h0, c0), given))
    return get_backend(backend).lstm_forward(x, Wx, Wh, b, h0, c0, cache=bool(cache))


def lstm_backward(cache, dy=None, dhT=None, dcT=None, *, backend="auto"):
    """Gradients from dy (T, B, H), dhT and dcT (B, H); None means zeros.

    Returns dx, dWx, dWh, db, dh0, dc0.
    """
    (T, B, I, H), d = _cache(cache, "lstm")
    dy, dhT, dcT = _grads(T, B, H, d, dy, dhT=dhT, dcT=dcT)
    return get_backend(backend).lstm_backward(cache, dy, dhT, dcT)


def gru_forward(x, Wx, Wh, bx, bh, h0=None, *, backend="auto", cache=True):
    """GRU (PyTorch semantics, gates r, z, n) over a sequence.

    Returns y (T, B, H), hT (B, H), cache.
    """
    given = (x, Wx, Wh, h0)
    x, Wx, Wh, (T, B, I, H) = _inputs(3, x, Wx, Wh)
    bx = _array("bx", bx, (3 * H,), x.dtype, "(3H,)")
    bh = _array("bh", bh, (3 * H,), x.dtype, "(3H,)")
    h0 = _array("h0", h0, (B, H), x.dtype, "(B, H)", optional=True)
    if cache:
        x, Wx, Wh, h0 = _kept(zip((x, Wx, Wh, h0), given))
    return get_backend(backend).gru_forward(x, Wx, Wh, bx, bh, h0, cache=bool(cache))


def gru_backward(cache, dy=None, dhT=None, *, backend="auto"):
    """Gradients from dy (T, B, H) and dhT (B, H); None means zeros.

    Returns dx, dWx, dWh, dbx, dbh, dh0.
    """
    (T, B, I, H), d = _cache(cache, "gru")
    dy, dhT = _grads(T, B, H, d, dy, dhT=dhT)
    return get_backend(backend).gru_backward(cache, dy, dhT)
