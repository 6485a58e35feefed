"""Layers, losses and whole models against finite differences (float64), and
truncated BPTT against full BPTT."""
import numpy as np
import pytest

import fastlstm
from fastlstm import losses
from fastlstm.layers import GRU, LSTM, RNN, Dense, Embedding
from fastlstm.model import Model

from gradcheck import assert_grad

F64 = np.float64
CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
rng = np.random.default_rng(0)


def test_dense_gradients():
    layer = Dense(3, 4, seed=1, dtype=F64)
    x = rng.standard_normal((2, 3, 3))
    dy = rng.standard_normal((2, 3, 4))
    y, backprop = layer.forward(x)
    np.testing.assert_allclose(y, x @ layer.params["W"] + layer.params["b"])
    dx = backprop(dy)

    def loss():
        return np.sum(layer.forward(x)[0] * dy)
    assert_grad(dx, loss, x, "x")
    for name, p in layer.params.items():
        assert_grad(layer.grads[name].copy(), loss, p, name)


def test_embedding_gradient_sums_repeated_tokens():
    layer = Embedding(5, 3, seed=1, dtype=F64)
    tokens = np.array([[0, 4], [4, 4], [2, 0]])
    dy = rng.standard_normal((3, 2, 3))
    y, backprop = layer.forward(tokens)
    np.testing.assert_array_equal(y, layer.params["W"][tokens])
    backprop(dy)
    assert_grad(layer.grads["W"].copy(), lambda: np.sum(layer.forward(tokens)[0] * dy),
                layer.params["W"], "W")


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("num_layers", [1, 2])
def test_recurrent_stack_gradients(cell, num_layers):
    """Through every layer of the stack, into x, the parameters and the initial
    state, from a loss on y and on the final state."""
    layer = CELLS[cell](3, 4, num_layers, seed=2, dtype=F64)
    T, B = 4, 2
    x = rng.standard_normal((T, B, 3))
    state = tuple(rng.standard_normal((num_layers, B, 4)) for _ in layer.state_names)
    dy = rng.standard_normal((T, B, 4))
    dstate = tuple(rng.standard_normal((num_layers, B, 4)) for _ in layer.state_names)

    def loss():
        y, final, _ = layer.forward(x, state)
        return np.sum(y * dy) + sum(np.sum(f * d) for f, d in zip(final, dstate))
    _, _, backprop = layer.forward(x, state)
    dx, dstate0 = backprop(dy, dstate)
    assert_grad(dx, loss, x, "x")
    for k, s in enumerate(state):
        assert_grad(dstate0[k], loss, s, f"state {layer.state_names[k]}")
    for name, p in layer.params.items():
        assert_grad(layer.grads[name].copy(), loss, p, name)


@pytest.mark.parametrize("masked", [False, True])
def test_softmax_cross_entropy_gradient_and_value(masked):
    logits = rng.standard_normal((3, 2, 5))
    targets = rng.integers(0, 5, (3, 2))
    mask = np.array([[1, 0], [1, 1], [0, 1]], bool) if masked else None
    loss, dlogits = losses.softmax_cross_entropy(logits, targets, mask)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])
    keep = np.ones((3, 2), bool) if mask is None else mask
    assert loss == pytest.approx(nll[keep].mean(), rel=1e-12)
    assert_grad(dlogits, lambda: losses.softmax_cross_entropy(logits, targets, mask)[0],
                logits)


@pytest.mark.parametrize("masked", [False, True])
def test_mse_gradient_and_value(masked):
    pred, target = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    mask = np.array([[1, 0], [1, 1], [0, 1]], bool) if masked else None
    loss, dpred = losses.mse(pred, target, mask)
    keep = np.ones((3, 2), bool) if mask is None else mask
    assert loss == pytest.approx(np.mean((pred - target)[keep] ** 2), rel=1e-12)
    assert_grad(dpred, lambda: losses.mse(pred, target, mask)[0], pred)


def token_model(cell, num_layers=2, backend="auto"):
    return Model.for_tokens(6, cell=cell, hidden_size=4, num_layers=num_layers,
                            embed_size=3, seed=3, dtype=F64, backend=backend)


@pytest.mark.parametrize("cell", list(CELLS))
def test_token_model_gradient_through_stacked_layers(cell):
    """Embedding -> 2-layer stack -> Dense -> masked cross-entropy, from a given
    state: every parameter against finite differences."""
    model = token_model(cell)
    X = rng.integers(0, 6, (5, 2))
    Y = rng.integers(0, 6, (5, 2))
    mask = rng.random((5, 2)) > 0.3
    state = tuple(tuple(rng.standard_normal(s.shape) for s in layer)
                  for layer in model.zero_state(2))
    model.loss_and_grads(X, Y, mask, state)
    grads = {k: g.copy() for k, g in model.grads.items()}
    for name, p in model.params.items():
        assert_grad(grads[name], lambda: model.evaluate(X, Y, mask, state)[0], p, name)


def test_series_model_gradient():
    model = Model.for_series(2, n_outputs=1, cell="lstm", hidden_size=3, num_layers=2,
                             seed=4, dtype=F64)
    X, Y = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 1))
    model.loss_and_grads(X, Y)
    grads = {k: g.copy() for k, g in model.grads.items()}
    for name, p in model.params.items():
        assert_grad(grads[name], lambda: model.evaluate(X, Y)[0], p, name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_stateful_windows_give_the_forward_of_the_whole_sequence(cell):
    """Carrying the state from window to window is the same forward pass."""
    model = token_model(cell)
    X = rng.integers(0, 6, (3, 11))
    whole, final = model.predict(X, return_state=True)
    state, parts = None, []
    for t0 in range(0, 11, 4):
        out, state = model.predict(X[:, t0:t0 + 4], state, return_state=True)
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-12)
    for a, b in zip(np.concatenate([np.ravel(s) for layer in state for s in layer]),
                    np.concatenate([np.ravel(s) for layer in final for s in layer])):
        assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("cell", list(CELLS))
def test_truncated_bptt_with_one_window_equals_full_bptt(cell):
    """seq_len >= T trains the same as no truncation; seq_len < T differs (the
    gradient is cut between windows), so the option really acts."""
    X = rng.integers(0, 6, (4, 9))
    Y = rng.integers(0, 6, (4, 9))
    weights = {}
    for seq_len in (None, 9, 50, 3):
        model = token_model(cell)
        fastlstm.train(model, X, Y, epochs=2, batch_size=2, seq_len=seq_len, progress=False)
        weights[seq_len] = model.params
    for seq_len in (9, 50):
        for k, w in weights[None].items():
            np.testing.assert_allclose(weights[seq_len][k], w, rtol=1e-12, err_msg=k)
    assert any(not np.allclose(weights[3][k], w) for k, w in weights[None].items())


def test_parameters_are_reproducible_from_the_seed():
    a, b, c = token_model("lstm"), token_model("lstm"), Model.for_tokens(
        6, hidden_size=4, num_layers=2, embed_size=3, seed=4, dtype=F64)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


@pytest.mark.parametrize("bad, error", [
    (lambda: Embedding(0, 3), ValueError),
    (lambda: Dense(3, 4, dtype=np.int32), TypeError),
    (lambda: LSTM(3, 4, num_layers=0), ValueError),
    (lambda: Model([]), ValueError),
    (lambda: Model([Dense(2, 2)], loss="hinge"), ValueError),
    (lambda: Model([Dense(2, 2), Embedding(2, 2)]), ValueError),
    (lambda: Model.for_tokens(5, cell="transformer"), ValueError),
    (lambda: token_model("lstm").predict(np.full((2, 3), 9)), ValueError),
    (lambda: token_model("lstm").predict(np.zeros((2, 3))), TypeError),
    (lambda: LSTM(3, 4).forward(np.zeros((2, 2, 3)), (np.zeros((1, 2, 4)),)), TypeError),
    (lambda: LSTM(3, 4).forward(np.zeros((2, 2, 3)), (np.zeros((1, 3, 4)),) * 2), ValueError),
    (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError),
    (lambda: losses.mse(np.zeros((2, 3)), np.zeros((2, 2))), ValueError),
])
def test_bad_arguments_raise_clear_errors(bad, error):
    with pytest.raises(error):
        bad()
