"""Numba backend: the functions of the kernel contract (docs/DESIGN.md, "The kernel
contract") over the Numba kernels of rnn.py, lstm.py, gru.py and step.py.
Compiled code is cached on disk, so only a process's first call ever compiles;
`warm_up()` does that ahead of time. On an empty cache, the first training
forward of a cell and dtype has a worker process compile part of the training
step meanwhile (ahead.py).

These wrappers allocate and call, like the Cython drivers; shapes are trusted
(fastlstm.ops checks them).
"""
import numba
import numpy as np

from .._buffers import empty
from .._rows import running_counts
from .._threads import single_threaded_blas, team_size
from ..cells import CELLS
from . import ahead, gru, lstm, rnn, step
from .common import input_projection, step_panels, weight_grads
from .panels import blocks
from .simd import lanes_of


def _threads():
    n = min(team_size(), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


# Without a cache, a forward runs in windows of at most this many elements of the
# gates' pre-activations, the only ones kept (src_cy/_common.pxd does the same).
WINDOW_ELEMENTS = 262144


def _windows(T, step_elements, cache):
    """(t0, t1) of the windows a forward runs in: one without a cache."""
    W = T if cache else max(1, min(T, WINDOW_ELEMENTS // step_elements))
    return [(t0, min(T, t0 + W)) for t0 in range(0, T, W)]


def _padded_dh(dhT):
    """dhT in a (B, Hp) array padded to whole blocks of units, as the backward
    kernels' dh: the panel kernel writes whole vectors."""
    B, H = dhT.shape
    U = lanes_of(dhT.dtype)
    dh = np.zeros((B, blocks(H, U) * U), dhT.dtype)
    dh[:, :H] = dhT
    return dh


def _running(lengths, T, B):
    """The rows running at each step (T,): lengths' counts, or B at every step."""
    counts = running_counts(lengths, T, B)
    return np.full(T, B, np.intp) if counts is None else counts


def _full_precision(precision):
    """A ValueError for precision="bf16": these kernels run the dtype's own only."""
    if precision is not None:
        raise ValueError(f"precision={precision!r}: the numba backend has no bf16 kernels; "
                         "use backend='cython'")


def _ahead(cache, cell, dtype):
    """For a forward with a cache (training), whether it is the first of its cell
    and dtype to start ahead.py's worker: then it compiles its part of the step
    after (_after_first_forward)."""
    return cache and ahead.begin(cell, np.dtype(dtype).name, weight_grads._cache.cache_path)


def _weight_grads(cache, dAX, dAH):
    """dx, dWx, dWh of a cell's backward (common.weight_grads)."""
    ahead.ready("weight_grads")
    with single_threaded_blas():
        return weight_grads(cache["x"], cache["h0"], cache["y"], cache["Wx"], dAX, dAH,
                            _threads())


def rnn_forward(x, Wx, Wh, b, h0, cache=True, lengths=None, precision=None):
    _full_precision(precision)
    first = _ahead(cache, "rnn", x.dtype)
    T, B, _ = x.shape
    y = empty((T, B, Wh.shape[0]), x.dtype)
    hT = h0.copy()   # rows of length 0 keep their state
    with single_threaded_blas():
        rnn.forward(x, Wx, Wh, b, h0, y, hT, _running(lengths, T, B), _threads())
    if first:
        _after_first_forward("rnn", x.dtype)
    return y, hT, dict(x=x, Wx=Wx, Wh=Wh, h0=h0, y=y, lengths=lengths) if cache else None


def _rnn_bptt(cache, dy, dhT):
    """The BPTT kernel of rnn_backward: dA (T, B, H) and dh (B, Hp)."""
    ahead.ready("bptt")
    T, B, _ = dy.shape
    dA = empty(dy.shape, dy.dtype)
    dh = _padded_dh(dhT)
    with single_threaded_blas():
        rnn.backward(cache["Wh"], cache["y"], dy, dA, dh, _running(cache.get("lengths"), T, B),
                     _threads())
    return dA, dh


def rnn_backward(cache, dy, dhT):
    dA, dh = _rnn_bptt(cache, dy, dhT)
    dx, dWx, dWh = _weight_grads(cache, dA, dA)
    return dx, dWx, dWh, dA.sum(axis=(0, 1)), np.ascontiguousarray(dh[:, :dhT.shape[1]])


def lstm_forward(x, Wx, Wh, b, h0, c0, cache=True, lengths=None, precision=None):
    _full_precision(precision)
    T, B, _ = x.shape
    H = Wh.shape[0]
    windows = _windows(T, B * 4 * H, cache)
    W = windows[0][1]
    y = empty((T, B, H), x.dtype)
    c = empty((W, B, H), x.dtype)
    gates = empty((W, B, 4 * H), x.dtype)
    hT, cT = h0.copy(), c0.copy()   # rows of length 0 keep their state
    active = _running(lengths, T, B)
    h, c_prev = h0, c0
    first = _ahead(cache, "lstm", x.dtype)
    with single_threaded_blas():
        n = _threads()
        for t0, t1 in windows:
            # the counts of the window and of the step after it: a row ends in the
            # window where the next count drops below it
            lstm.forward(x[t0:t1], Wx, Wh, b, h, c_prev, y[t0:t1], c[:t1 - t0],
                         gates[:t1 - t0], hT, cT, active[t0:t1 + 1], n)
            h, c_prev = y[t1 - 1], c[t1 - t0 - 1].copy()
    if first:
        _after_first_forward("lstm", x.dtype)
    if not cache:
        return y, hT, cT, None
    cache = dict(x=x, Wx=Wx, Wh=Wh, h0=h0, c0=c0, y=y, c=c, gates=gates, lengths=lengths)
    return y, hT, cT, cache


def _lstm_bptt(cache, dy, dhT, dcT):
    """The BPTT kernel of lstm_backward: dA (T, B, 4H), dh (B, Hp) and dc (B, H)."""
    ahead.ready("bptt")
    T, B, _ = dy.shape
    dA = empty(cache["gates"].shape, dy.dtype)
    dh, dc = _padded_dh(dhT), dcT.copy()
    with single_threaded_blas():
        lstm.backward(cache["Wh"], cache["c0"], cache["c"], cache["gates"], dy, dA, dh, dc,
                      _running(cache.get("lengths"), T, B), _threads())
    return dA, dh, dc


def lstm_backward(cache, dy, dhT, dcT):
    dA, dh, dc = _lstm_bptt(cache, dy, dhT, dcT)
    dx, dWx, dWh = _weight_grads(cache, dA, dA)
    return dx, dWx, dWh, dA.sum(axis=(0, 1)), np.ascontiguousarray(dh[:, :dhT.shape[1]]), dc


def gru_forward(x, Wx, Wh, bx, bh, h0, cache=True, lengths=None, precision=None):
    _full_precision(precision)
    T, B, _ = x.shape
    H = Wh.shape[0]
    windows = _windows(T, B * 3 * H, cache)
    W = windows[0][1]
    y = empty((T, B, H), x.dtype)
    hn = empty((W, B, H), x.dtype)
    gates = empty((W, B, 3 * H), x.dtype)
    hT = h0.copy()   # rows of length 0 keep their state
    active = _running(lengths, T, B)
    h = h0
    first = _ahead(cache, "gru", x.dtype)
    with single_threaded_blas():
        n = _threads()
        for t0, t1 in windows:
            gru.forward(x[t0:t1], Wx, Wh, bx, bh, h, y[t0:t1], gates[:t1 - t0],
                        hn[:t1 - t0], hT, active[t0:t1 + 1], n)
            h = y[t1 - 1]
    if first:
        _after_first_forward("gru", x.dtype)
    if not cache:
        return y, hT, None
    return y, hT, dict(x=x, Wx=Wx, Wh=Wh, h0=h0, y=y, gates=gates, hn=hn, lengths=lengths)


def _gru_bptt(cache, dy, dhT):
    """The BPTT kernel of gru_backward: dAX, dAH (T, B, 3H) and dh (B, Hp)."""
    ahead.ready("bptt")
    T, B, _ = dy.shape
    dAX = empty(cache["gates"].shape, dy.dtype)
    dAH = empty(dAX.shape, dAX.dtype)
    dh = _padded_dh(dhT)
    with single_threaded_blas():
        gru.backward(cache["Wh"], cache["h0"], cache["y"], cache["gates"], cache["hn"], dy,
                     dAX, dAH, dh, _running(cache.get("lengths"), T, B), _threads())
    return dAX, dAH, dh


def gru_backward(cache, dy, dhT):
    dAX, dAH, dh = _gru_bptt(cache, dy, dhT)
    dx, dWx, dWh = _weight_grads(cache, dAX, dAH)
    return (dx, dWx, dWh, dAX.sum(axis=(0, 1)), dAH.sum(axis=(0, 1)),
            np.ascontiguousarray(dh[:, :dhT.shape[1]]))


def rnn_step_weights(Wx, Wh, b, precision=None):
    _full_precision(precision)
    return Wx, step_panels(Wh, 1), b


def rnn_step(weights, x, h, h_next):
    rnn.step(x, *weights, h, h_next)


def lstm_step_weights(Wx, Wh, b, precision=None):
    _full_precision(precision)
    return Wx, step_panels(Wh, 4), b


def lstm_step(weights, x, h, c, h_next):
    lstm.step(x, *weights, h, c, h_next)


def gru_step_weights(Wx, Wh, bx, bh, precision=None):
    _full_precision(precision)
    return Wx, step_panels(Wh, 3), bx, bh


def gru_step(weights, x, h, h_next):
    gru.step(x, *weights, h, h_next)


def dense_step_weights(W, b):
    return W, b


def dense_step(weights, x):
    W, b = weights
    return x @ W + b


_EVERY_ROW = np.zeros(0, np.uint8)


def _keep(keep):
    """keep, or an empty array for "every row" (Numba's kernels take no None)."""
    return _EVERY_ROW if keep is None else keep


def dense_forward(x, W, b):
    y = empty((x.shape[0], W.shape[1]), x.dtype)
    with single_threaded_blas():
        input_projection(x, W, b, y, _threads())
    return y


def dense_backward(x, W, dy, need_dx=True):
    ahead.ready("dense_backward")
    M, K = x.shape
    dx = empty((M if need_dx else 0, K), x.dtype)
    dW = empty(W.shape, x.dtype)
    db = empty(W.shape[1], x.dtype)
    with single_threaded_blas():
        step.dense_backward(x, W, dy, dx, dW, db, step.parts(M, dy.size, _threads()))
    return (dx if need_dx else None), dW, db


def embedding_backward(ids, dy, V):
    ahead.ready("embedding_backward")
    dW = np.zeros((V, dy.shape[1]), dy.dtype)
    step.embedding_backward(ids, dy, dW, step.parts(V, dy.size, _threads()))
    return dW


def softmax_xent(z, t, keep, scale, dz):
    ahead.ready("softmax_xent")
    return step.softmax_xent(z, t, _keep(keep), scale, dz,
                             step.parts(z.shape[0], z.size, _threads()))


def mse(p, y, keep, scale, dp):
    ahead.ready("mse")
    return step.mse(p, y, _keep(keep), scale, dp, step.parts(p.shape[0], p.size, _threads()))


def sum_squares(a):
    ahead.ready("sum_squares")
    return step.sum_squares(a, step.parts(a.size, a.size, _threads()))


def adam_update(p, g, m, v, lr_t, beta1, beta2, eps, decay=0.0):
    ahead.ready("adam_update")
    step.adam_update(p, g, m, v, lr_t, beta1, beta2, eps, decay,
                     step.parts(p.size, p.size, _threads()))


def sgd_update(p, g, v, lr, momentum, decay=0.0):
    ahead.ready("sgd_update")
    step.sgd_update(p, g, v if v is not None else np.zeros(0, p.dtype), lr, momentum, decay,
                    step.parts(p.size, p.size, _threads()))


def _small(cell, dtype, rng):
    """Small inputs of cell in dtype: x (2, 2, 3), its weights, biases and states
    for H = 2."""
    def draw(*shape):
        return rng.standard_normal(shape).astype(dtype)
    G = CELLS[cell].G
    weights = (draw(3, 2 * G), draw(2, 2 * G))
    biases = [np.zeros(2 * G, dtype)] * len(CELLS[cell].biases)
    states = [np.zeros((2, 2), dtype) for _ in CELLS[cell].states]
    return draw(2, 2, 3), weights, biases, states


_BPTT = dict(rnn=_rnn_bptt, lstm=_lstm_bptt, gru=_gru_bptt)


def _compile(names, dtype, cell=None):
    """Compiles (or loads) the kernels of a training step in dtype that names name
    ("bptt": cell's BPTT kernel), in that order, on small arrays; yields each name
    once done. The forward's are not among them (nor the Dense layer's, which is
    the forward's input projection)."""
    rng = np.random.default_rng(0)

    def draw(*shape):
        return rng.standard_normal(shape).astype(dtype)
    z, t, keep = draw(4, 3), np.array([0, 2, 1, 0]), np.array([1, 0, 1, 1], np.uint8)
    x, W, p = draw(4, 3), draw(3, 2), draw(5)

    def bptt():
        # a forward's cache by hand: running the forward would compile it
        x, (Wx, Wh), _, states = _small(cell, dtype, rng)
        G = CELLS[cell].G
        cache = dict(x=x, Wx=Wx, Wh=Wh, h0=states[0], y=draw(2, 2, 2), gates=draw(2, 2, 2 * G),
                     c0=states[-1], c=draw(2, 2, 2), hn=draw(2, 2, 2), lengths=None)
        _BPTT[cell](cache, draw(2, 2, 2), *states)
    calls = dict(
        bptt=bptt,
        softmax_xent=lambda: [softmax_xent(z, t, k, 0.5, np.empty_like(z)) for k in (keep, None)],
        mse=lambda: [mse(z, z + 1, k, 0.5, np.empty_like(z)) for k in (keep, None)],
        weight_grads=lambda: weight_grads(draw(2, 2, 3), draw(2, 2), draw(2, 2, 2), draw(3, 8),
                                          *[draw(2, 2, 8)] * 2, 1),
        dense_backward=lambda: dense_backward(x, W, draw(4, 2), need_dx=True),
        sum_squares=lambda: sum_squares(p),
        adam_update=lambda: adam_update(p, draw(5), np.zeros_like(p), np.zeros_like(p), 1e-3,
                                        0.9, 0.999, 1e-8),
        sgd_update=lambda: [sgd_update(p, draw(5), v, 0.1, 0.9 if v is not None else 0.0)
                            for v in (np.zeros_like(p), None)],
        embedding_backward=lambda: embedding_backward(np.array([0, 1, 1, 0]), x, 2))
    for name in names:
        calls[name]()
        yield name


def _after_first_forward(cell, dtype):
    """This process's part of the first training step's compile, while ahead.py's
    worker compiles its own."""
    for _ in _compile(ahead.AFTER_FORWARD, dtype):
        pass


def compile_training(cell, dtype, marker):
    """ahead.py's worker: compiles its kernels of a training step of cell in dtype
    (a name) into the disk cache, printing each name once cached, then writes the
    file marker."""
    for name in _compile(ahead.WORKER, np.dtype(dtype), cell):
        print(name, flush=True)
    with open(marker, "w"):
        pass


def warm_up(dtypes=(np.float32, np.float64)):
    """Compile (or load from the disk cache) every kernel for the given dtypes: each
    cell's forward (with and without its cache), backward and step, and the rest of
    a training step."""
    for dtype in dtypes:
        for cell in CELLS:
            x, weights, biases, states = _small(cell, dtype, np.random.default_rng(0))
            forward = globals()[f"{cell}_forward"]
            forward(x, *weights, *biases, *states, cache=False)
            out = forward(x, *weights, *biases, *states)
            globals()[f"{cell}_backward"](out[-1], np.ones((2, 2, 2), dtype), *states)
            prepared = globals()[f"{cell}_step_weights"](*weights, *biases)
            globals()[f"{cell}_step"](prepared, x[0], *states, np.empty((2, 2), dtype))
        x, W = np.ones((4, 3), dtype), np.ones((3, 2), dtype)
        dense_forward(x, W, np.zeros(2, dtype))
        for _ in _compile(("mse", "softmax_xent", "dense_backward", "sum_squares",
                           "adam_update", "sgd_update", "embedding_backward"), dtype):
            pass
