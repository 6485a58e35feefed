"""Gradient norms against finite differences, the adding problem's statistics, and
a short training run on it."""
import numpy as np
import pytest

import fastlstm
from fastlstm import diagnostics
from fastlstm.data import adding_problem
from fastlstm.layers import GRU, LSTM, RNN
from fastlstm.model import Model

from gradcheck import numeric_grad

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def dL_dh_by_finite_differences(rec, x, g, t):
    """Perturb h_t of the top layer between a forward over steps 0..t and one over
    the rest; L = <h_{T-1}, g>."""
    _, state_t, _ = rec.forward(x[:t + 1])
    h = state_t[0][-1]

    def loss():
        y, _, _ = rec.forward(x[t + 1:], state_t)
        return np.sum(y[-1] * g)
    return numeric_grad(loss, h)


@pytest.mark.parametrize("cell", list(CELLS))
def test_bare_layer_gradient_norms_match_finite_differences(cell):
    rng = np.random.default_rng(0)
    rec = CELLS[cell](3, 4, num_layers=2, seed=1, dtype=np.float64)
    x = rng.standard_normal((6, 2, 3))
    g = rng.standard_normal((2, 4))
    norms = diagnostics.gradient_norms(rec, x, g)
    expected = [np.linalg.norm(dL_dh_by_finite_differences(rec, x, g, t)) for t in range(5)]
    np.testing.assert_allclose(norms[:-1], expected, rtol=1e-6)
    assert norms[-1] == pytest.approx(np.linalg.norm(g))


def test_model_gradient_norms_match_finite_differences():
    """Through the head and the loss on the last step: the norm at T-1 is that of
    dL/dy_{T-1}, and the earlier ones follow the bare layer's with that g."""
    rng = np.random.default_rng(1)
    model = Model.for_series(2, n_outputs=1, hidden_size=4, seed=2, dtype=np.float64)
    X, Y = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 5, 1))
    norms = diagnostics.gradient_norms(model, X, Y)
    rec, head = model.layers
    x = np.ascontiguousarray(X.swapaxes(0, 1))
    y, _, _ = rec.forward(x)
    pred = y[-1] @ head.params["W"] + head.params["b"]
    g = 2 * (pred - Y[:, -1]) / 3 @ head.params["W"].T  # d mean((pred - y)^2) / dh
    assert norms[-1] == pytest.approx(np.linalg.norm(g), rel=1e-10)
    expected = [np.linalg.norm(dL_dh_by_finite_differences(rec, x, g, t)) for t in range(4)]
    np.testing.assert_allclose(norms[:-1], expected, rtol=1e-6)


def test_the_tanh_rnn_gradient_vanishes_and_the_lstm_gradient_does_not():
    """At initialisation, 40 steps back: the RNN's gradient has shrunk by orders
    of magnitude more than the LSTM's."""
    x = np.random.default_rng(2).standard_normal((41, 8, 4))
    ratio = {}
    for cell in ("rnn", "lstm"):
        norms = diagnostics.gradient_norms(CELLS[cell](4, 32, seed=3), x)
        ratio[cell] = norms[0] / norms[-1]
    assert ratio["rnn"] < 1e-4 and ratio["lstm"] > 100 * ratio["rnn"]


def test_gradient_norms_callback_records_every_step():
    X, Y, mask = adding_problem(16, 10, seed=0)
    rec = diagnostics.GradientNorms()
    fastlstm.train(Model.for_series(2, n_outputs=1, hidden_size=4), X, Y, mask=mask,
                   epochs=2, batch_size=8, callbacks=[rec], progress=False)
    assert len(rec.norms) == 4 and all(n > 0 for n in rec.norms)


def test_adding_problem_statistics():
    X, Y, mask = adding_problem(20000, 12, seed=3)
    assert X.shape == (20000, 12, 2) and Y.shape == (20000, 12, 1)
    assert (X[:, :6, 1].sum(1) == 1).all() and (X[:, 6:, 1].sum(1) == 1).all()
    target = Y[:, -1, 0]
    np.testing.assert_allclose(target, (X[:, :, 0] * X[:, :, 1]).sum(1))
    assert np.mean((target - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.005)
    assert mask.sum() == 20000 and mask[:, -1].all()
    assert 0 <= X[:, :, 0].min() and X[:, :, 0].max() < 1


def test_lstm_beats_the_baseline_on_the_adding_problem_at_T10():
    X, Y, mask = adding_problem(2000, 10, seed=0)
    Xv, Yv, mv = adding_problem(500, 10, seed=1)
    model = Model.for_series(2, n_outputs=1, cell="lstm", hidden_size=16, seed=0)
    h = fastlstm.train(model, X, Y, mask=mask, epochs=15, batch_size=32, lr=0.01,
                       validation=(Xv, Yv, mv), progress=False)
    assert h.val_loss[-1] < 0.02 < 1 / 6
