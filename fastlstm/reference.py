"""NumPy reference kernels: the specification every compiled backend must match.

Written to be read next to the equations of docs/DESIGN.md, not to be fast: one
Python iteration per time step, weight gradients accumulated step by step. The
compiled kernels use a different schedule (hoisted GEMMs, fused gate passes) and
must give the same numbers. The steps carry the kernels' numbers: forward
1. x_t Wx (+ b), the input projection, 2. h_{t-1} Wh, the step's product, 3. the
gate pass; backward 4. the gate pass backwards (dA_t), 5. dh_{t-1} = dA_t Wh.T,
6. the weight gradients (here added up step by step, in the kernels one GEMM each
after the loop).

Shapes (time-major, row vectors): x (T, B, I); Wx (I, G*H); Wh (H, G*H);
b (G*H,); h0, c0 (B, H); y (T, B, H). G is 1 for the RNN, 4 for the LSTM (gate
blocks i, f, g, o) and 3 for the GRU (blocks r, z, n).

The cache each forward returns is a dict of arrays, the same in every backend, so
that any backend's backward can consume any backend's forward (with cache=False
a forward keeps only the state from one step to the next, and returns None):

- RNN:  x, Wx, Wh, h0, y
- LSTM: x, Wx, Wh, h0, c0, y, c (T, B, H), gates (T, B, 4H) = [i, f, g, o] after
  their nonlinearities
- GRU:  x, Wx, Wh, h0, y, gates (T, B, 3H) = [r, z, n] after their nonlinearities,
  hn (T, B, H) = h_{t-1} Wh_n + bh_n (the term the reset gate scales)
"""
import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def round_bf16(a):
    """float32 a rounded to bf16 (8 bits of mantissa; to nearest, ties to even),
    as float32: the upper 16 bits of each number's fp32 encoding."""
    bits = np.array(a, np.float32, order="C").view(np.uint32)
    bits = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def _rounding(cache):
    """What the backward's operands go through: round_bf16 where the forward ran
    in bf16 (its cache says so), else nothing."""
    return round_bf16 if cache.get("precision") == "bf16" else (lambda a: a)


def _operands(precision, x, Wx, Wh):
    """What the forward multiplies: x, Wx, Wh and the map h_{t-1} goes through
    before its product; with precision "bf16" each rounded to bf16 (docs/DESIGN.md,
    "bf16"). A product of two bf16 numbers is exact in float32, so the float32
    sums of NumPy's @ on them are the kernels' bf16 dot products."""
    if precision is None:
        return x, Wx, Wh, lambda h: h
    return round_bf16(x), round_bf16(Wx), round_bf16(Wh), round_bf16


def _h_prev(y, h0, t):
    return h0 if t == 0 else y[t - 1]


def _alive(lengths, t):
    """(B, 1) bool: the rows still running at step t (lengths[b] > t); None for
    every row, where lengths is None."""
    return None if lengths is None else (lengths > t)[:, None]


def _keep(alive, new, old):
    """new where the row runs at this step, else old: an ended row's state stays."""
    return new if alive is None else np.where(alive, new, old)


def _out(alive, h):
    """The step's output: h, and 0 for the rows that have ended."""
    return h if alive is None else np.where(alive, h, 0)


# ----------------------------------------------------------------------------- RNN


def rnn_forward(x, Wx, Wh, b, h0, cache=True, lengths=None, precision=None):
    """h_t = tanh(x_t Wx + h_{t-1} Wh + b).  Returns y (T, B, H), hT (B, H), cache.

    lengths (B,) int, 1 <= lengths[b] <= T, or None (every row runs T steps): past
    a row's length its state stays and its outputs are 0, and hT is each row's
    state at its own end (likewise in every forward below). precision None, or
    "bf16" (float32): x, Wx, Wh and h_{t-1} rounded to bf16 before their products,
    and the cache holds x, Wx, Wh so rounded (likewise below)."""
    x, Wx, Wh, mm = _operands(precision, x, Wx, Wh)
    T, B, _ = x.shape
    H = Wh.shape[0]
    y = np.empty((T, B, H), dtype=x.dtype)
    h = h0
    for t in range(T):
        alive = _alive(lengths, t)
        # 1. x_t Wx, 2. h_{t-1} Wh, 3. h_t = tanh(... + b)
        h_new = np.tanh(x[t] @ Wx + mm(h) @ Wh + b)
        h = _keep(alive, h_new, h)
        y[t] = _out(alive, h_new)
    cache = dict(x=x, Wx=Wx, Wh=Wh, h0=h0, y=y, lengths=lengths,
                 precision=precision) if cache else None
    return y, np.array(h), cache


def rnn_backward(cache, dy, dhT):
    """Gradients of a scalar loss L given dy = dL/dy (T, B, H) and dhT = dL/dhT (B, H).

    Returns dx, dWx, dWh, db, dh0. After a forward in bf16 (its cache says so),
    dA_t is rounded to bf16 once db has it, and h_{t-1} before dWh's product: every
    product of the backward on bf16 operands, as the forward's (likewise below).
    """
    x, Wx, Wh, h0, y = (cache[k] for k in ("x", "Wx", "Wh", "h0", "y"))
    lengths = cache.get("lengths")
    mm = _rounding(cache)
    dx = np.zeros_like(x)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    db = np.zeros(Wh.shape[1], dtype=x.dtype)
    dh = dhT.copy()
    for t in reversed(range(x.shape[0])):
        # an ended row passed its state through this step unchanged: its gradient
        # passes back unchanged, and dy past its end counts for nothing
        alive = _alive(lengths, t)
        # 4. dA_t = (dh_t + dy_t) tanh'(a_t), tanh' = 1 - h_t^2
        dh_t = dh + dy[t]
        h_prev = _h_prev(y, h0, t)
        da = _out(alive, dh_t * (1.0 - y[t] ** 2))
        db += da.sum(axis=0)
        da = mm(da)
        # 6. the weight gradients and dx
        dWx += x[t].T @ da
        dWh += mm(h_prev).T @ da
        dx[t] = da @ Wx.T
        # 5. dh_{t-1} = dA_t Wh.T
        dh = _keep(alive, da @ Wh.T, dh)
    return dx, dWx, dWh, db, dh


# ---------------------------------------------------------------------------- LSTM


def lstm_forward(x, Wx, Wh, b, h0, c0, cache=True, lengths=None, precision=None):
    """a = x_t Wx + h_{t-1} Wh + b;  i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g);
    c_t = f*c_{t-1} + i*g;  h_t = o*tanh(c_t).

    Returns y (T, B, H), hT, cT (B, H), cache.
    """
    x, Wx, Wh, mm = _operands(precision, x, Wx, Wh)
    T, B, _ = x.shape
    H = Wh.shape[0]
    y = np.empty((T, B, H), dtype=x.dtype)
    c = np.empty((T if cache else 1, B, H), dtype=x.dtype)
    gates = np.empty((T if cache else 1, B, 4 * H), dtype=x.dtype)
    h_t, c_t = h0, c0
    for t in range(T):
        alive = _alive(lengths, t)
        # 1. x_t Wx, 2. h_{t-1} Wh, + b
        a = x[t] @ Wx + mm(h_t) @ Wh + b
        # 3. the gate pass
        i = sigmoid(a[:, 0 * H:1 * H])
        f = sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:4 * H])
        c_new = f * c_t + i * g
        h_new = o * np.tanh(c_new)
        c_t, h_t = _keep(alive, c_new, c_t), _keep(alive, h_new, h_t)
        k = t if cache else 0
        gates[k] = np.concatenate([i, f, g, o], axis=1)
        c[k], y[t] = c_t, _out(alive, h_new)
    cache = dict(x=x, Wx=Wx, Wh=Wh, h0=h0, c0=c0, y=y, c=c, gates=gates,
                 lengths=lengths, precision=precision) if cache else None
    return y, np.array(h_t), np.array(c_t), cache


def lstm_backward(cache, dy, dhT, dcT):
    """Returns dx, dWx, dWh, db, dh0, dc0 for dy (T, B, H), dhT and dcT (B, H)."""
    x, Wx, Wh, h0, c0, y, c, gates = (
        cache[k] for k in ("x", "Wx", "Wh", "h0", "c0", "y", "c", "gates"))
    lengths = cache.get("lengths")
    mm = _rounding(cache)
    H = Wh.shape[0]
    dx = np.zeros_like(x)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    db = np.zeros(4 * H, dtype=x.dtype)
    dh, dc = dhT.copy(), dcT.copy()
    for t in reversed(range(x.shape[0])):
        # an ended row passed its state through this step unchanged (see rnn_backward)
        alive = _alive(lengths, t)
        # 4. the gate pass backwards: dA_t, and dc_{t-1} below
        i, f, g, o = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
        h_prev = _h_prev(y, h0, t)
        c_prev = c0 if t == 0 else c[t - 1]
        tanh_c = np.tanh(c[t])
        dh_t = dh + dy[t]
        do = dh_t * tanh_c
        dc_t = dc + dh_t * o * (1.0 - tanh_c ** 2)
        di, df, dg = dc_t * g, dc_t * c_prev, dc_t * i
        da = _out(alive, np.concatenate([
            di * i * (1.0 - i),
            df * f * (1.0 - f),
            dg * (1.0 - g ** 2),
            do * o * (1.0 - o),
        ], axis=1))
        db += da.sum(axis=0)
        da = mm(da)
        # 6. the weight gradients and dx
        dWx += x[t].T @ da
        dWh += mm(h_prev).T @ da
        dx[t] = da @ Wx.T
        # 5. dh_{t-1} = dA_t Wh.T
        dh = _keep(alive, da @ Wh.T, dh)
        dc = _keep(alive, dc_t * f, dc)
    return dx, dWx, dWh, db, dh, dc


# ----------------------------------------------------------------------------- GRU


def gru_forward(x, Wx, Wh, bx, bh, h0, cache=True, lengths=None, precision=None):
    """PyTorch's GRU: r = sigmoid(x Wx_r + bx_r + h Wh_r + bh_r), z likewise,
    n = tanh(x Wx_n + bx_n + r*(h Wh_n + bh_n)),  h_t = (1 - z)*n + z*h_{t-1}.

    Returns y (T, B, H), hT (B, H), cache.
    """
    x, Wx, Wh, mm = _operands(precision, x, Wx, Wh)
    T, B, _ = x.shape
    H = Wh.shape[0]
    y = np.empty((T, B, H), dtype=x.dtype)
    gates = np.empty((T if cache else 1, B, 3 * H), dtype=x.dtype)
    hn = np.empty((T if cache else 1, B, H), dtype=x.dtype)
    h = h0
    for t in range(T):
        alive = _alive(lengths, t)
        # 1. x_t Wx + bx, 2. h_{t-1} Wh (+ bh)
        ax = x[t] @ Wx + bx
        ah = mm(h) @ Wh + bh
        k = t if cache else 0
        # 3. the gate pass
        r = sigmoid(ax[:, 0 * H:1 * H] + ah[:, 0 * H:1 * H])
        z = sigmoid(ax[:, 1 * H:2 * H] + ah[:, 1 * H:2 * H])
        hn[k] = ah[:, 2 * H:3 * H]
        n = np.tanh(ax[:, 2 * H:3 * H] + r * hn[k])
        h_new = (1.0 - z) * n + z * h
        h = _keep(alive, h_new, h)
        gates[k] = np.concatenate([r, z, n], axis=1)
        y[t] = _out(alive, h_new)
    cache = dict(x=x, Wx=Wx, Wh=Wh, h0=h0, y=y, gates=gates, hn=hn,
                 lengths=lengths, precision=precision) if cache else None
    return y, np.array(h), cache


def gru_backward(cache, dy, dhT):
    """Returns dx, dWx, dWh, dbx, dbh, dh0 for dy (T, B, H) and dhT (B, H)."""
    x, Wx, Wh, h0, y, gates, hn = (
        cache[k] for k in ("x", "Wx", "Wh", "h0", "y", "gates", "hn"))
    lengths = cache.get("lengths")
    mm = _rounding(cache)
    H = Wh.shape[0]
    dx = np.zeros_like(x)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    dbx = np.zeros(3 * H, dtype=x.dtype)
    dbh = np.zeros(3 * H, dtype=x.dtype)
    dh = dhT.copy()
    for t in reversed(range(x.shape[0])):
        # an ended row passed its state through this step unchanged (see rnn_backward)
        alive = _alive(lengths, t)
        # 4. the gate pass backwards: dAX_t, dAH_t, and z dh_t of dh_{t-1}
        r, z, n = (gates[t][:, k * H:(k + 1) * H] for k in range(3))
        h_prev = _h_prev(y, h0, t)
        dh_t = dh + dy[t]
        dn = dh_t * (1.0 - z)
        dz = dh_t * (h_prev - n)
        dan = dn * (1.0 - n ** 2)
        dar = dan * hn[t] * r * (1.0 - r)
        daz = dz * z * (1.0 - z)
        dax = _out(alive, np.concatenate([dar, daz, dan], axis=1))
        dah = _out(alive, np.concatenate([dar, daz, dan * r], axis=1))
        dbx += dax.sum(axis=0)
        dbh += dah.sum(axis=0)
        dax, dah = mm(dax), mm(dah)
        # 6. the weight gradients and dx
        dWx += x[t].T @ dax
        dWh += mm(h_prev).T @ dah
        dx[t] = dax @ Wx.T
        # 5. dh_{t-1} = z dh_t + dAH_t Wh.T
        dh = _keep(alive, dh_t * z + dah @ Wh.T, dh)
    return dx, dWx, dWh, dbx, dbh, dh


# ---------------------------------------------------------- one step at a time
# Generation runs a cell one step per call, on weights prepared once (the compiled
# backends pack them into panels). A step is the forward over one time step.


def rnn_step_weights(Wx, Wh, b, precision=None):
    return Wx, Wh, b, precision


def rnn_step(weights, x, h, h_next):
    """x (B, I), h (B, H) -> h_next (B, H), the next state."""
    *W, precision = weights
    h_next[...] = rnn_forward(x[None], *W, h, cache=False, precision=precision)[1]


def lstm_step_weights(Wx, Wh, b, precision=None):
    return Wx, Wh, b, precision


def lstm_step(weights, x, h, c, h_next):
    """x (B, I), h, c (B, H) -> h_next (B, H); c becomes the next cell state."""
    *W, precision = weights
    _, h_next[...], c[...], _ = lstm_forward(x[None], *W, h, c, cache=False,
                                             precision=precision)


def gru_step_weights(Wx, Wh, bx, bh, precision=None):
    return Wx, Wh, bx, bh, precision


def gru_step(weights, x, h, h_next):
    """x (B, I), h (B, H) -> h_next (B, H), the next state."""
    *W, precision = weights
    h_next[...] = gru_forward(x[None], *W, h, cache=False, precision=precision)[1]


# ------------------------------------------------- the rest of a training step
# The layers around the cells, the losses and the optimizers, each over rows:
# M = T*B steps of a batch, flattened. The compiled backends run them on the same
# threads as the cells (src_cy/_dense.pyx, _loss.pyx, _optim.pyx).


def dense_forward(x, W, b):
    """y = x W + b for x (M, K), W (K, N), b (N,).  Returns y (M, N)."""
    return x @ W + b


def dense_step_weights(W, b):
    return W, b


def dense_step(weights, x):
    """dense_forward for a few rows x (B, K), on the weights of dense_step_weights."""
    return dense_forward(x, *weights)


def dense_backward(x, W, dy, need_dx=True):
    """dW = x.T dy, db = dy summed over rows, dx = dy W.T (None without need_dx).

    Returns dx (M, K), dW (K, N), db (N,).
    """
    return (dy @ W.T if need_dx else None), x.T @ dy, dy.sum(axis=0)


def embedding_backward(ids, dy, V):
    """dW (V, E): row v sums the rows dy[m] (M, E) with ids[m] == v."""
    dW = np.zeros((V, dy.shape[1]), dtype=dy.dtype)
    np.add.at(dW, ids, dy)
    return dW


def softmax_xent(z, t, keep, scale, dz):
    """Cross-entropy of the logits z (M, V) against the targets t (M,) int, over the
    rows where keep (M,) is 1 (None: every row).

    Returns sum_r keep_r (log sum_j exp z_rj - z_r,t_r) in float64 and writes
    dz := scale * keep_r * (softmax(z_r) - onehot(t_r)) (dz may be z).
    """
    zmax = z.max(axis=1, keepdims=True)
    log_p = z - zmax
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    rows = np.arange(len(t))
    nll = -log_p[rows, t]
    p = np.exp(log_p)
    p[rows, t] -= 1
    if keep is not None:
        nll = np.where(keep, nll, 0)
        p *= keep[:, None]
    np.multiply(p, scale, out=dz)
    return float(nll.sum(dtype=np.float64))


def mse(p, y, keep, scale, dp):
    """Squared error of the predictions p (M, F) against y (M, F), over the rows where
    keep (M,) is 1 (None: every row).

    Returns the sum of the kept squares in float64 and writes dp := 2 * scale * keep_r
    * (p - y).
    """
    diff = p - y
    if keep is not None:
        diff *= keep[:, None]
    np.multiply(diff, 2 * scale, out=dp)
    return float(np.square(diff, dtype=np.float64).sum())


def sum_squares(a):
    """sum_k a_k^2 of a (n,), in float64."""
    a = a.astype(np.float64)
    return float(a @ a)


def adam_update(p, g, m, v, lr_t, beta1, beta2, eps, decay=0.0):
    """Adam on p (n,) from g, in place: p *= 1 - decay (decoupled weight decay, AdamW);
    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t m / (sqrt(v) + eps),
    the step taken in float64; lr_t is the learning rate with Adam's bias
    corrections, decay the learning rate times the weight decay."""
    if decay:
        p *= 1 - decay
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * np.square(g)
    p -= (np.float64(lr_t) * m / (np.sqrt(v) + eps)).astype(p.dtype)


def sgd_update(p, g, v, lr, momentum, decay=0.0):
    """SGD on p (n,) from g, in place: p *= 1 - decay (decoupled weight decay);
    v = momentum v + g; p -= lr v. v is None without momentum (p -= lr g)."""
    if decay:
        p *= 1 - decay
    if v is not None:
        v *= momentum
        v += g
        g = v
    p -= lr * g
