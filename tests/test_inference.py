"""Inference without caches: Model.predict in windows of time and the Stepper one
step at a time give the numbers of the training forward (float64)."""
import numpy as np
import pytest

import fastlstm
from fastlstm import model as model_module
from fastlstm.model import Model

BACKENDS = fastlstm.available_backends()
CELLS = ["rnn", "lstm", "gru"]


def token_model(cell, backend, num_layers=2):
    return Model.for_tokens(7, cell=cell, hidden_size=12, num_layers=num_layers,
                            embed_size=5, seed=1, dtype=np.float64, backend=backend)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_predict_in_windows_equals_the_training_forward(backend, cell, monkeypatch):
    """With windows of 3 steps (PREDICT_ELEMENTS made small), 10 steps carry the
    state across three window boundaries."""
    model = token_model(cell, backend)
    X = np.random.default_rng(0).integers(0, 7, (4, 10))
    out, final, _ = model.forward(np.ascontiguousarray(X.T))
    monkeypatch.setattr(model_module, "PREDICT_ELEMENTS", 4 * 12 * 3)
    got, got_final = model.predict(X, return_state=True)
    close(got, out.swapaxes(0, 1))
    for layer_final, layer_got in zip(final, got_final):
        for f, g in zip(layer_final, layer_got):
            close(g, f)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_stepper_equals_predict(backend, cell):
    model = token_model(cell, backend)
    rng = np.random.default_rng(1)
    X = rng.integers(0, 7, (3, 6))
    state = model.predict(X[:, :2], return_state=True)[1]
    want, want_state = model.predict(X[:, 2:], state=state, return_state=True)
    stepper = model.stepper(3, state)
    got = np.stack([stepper.step(X[:, t]) for t in range(2, 6)], axis=1)
    close(got, want)
    for layer_want, layer_got in zip(want_state, stepper.state):
        for w, g in zip(layer_want, layer_got):
            close(g, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stepper_select_carries_on_from_the_chosen_rows(backend):
    model = token_model("lstm", backend, num_layers=1)
    X = np.random.default_rng(2).integers(0, 7, (3, 4))
    stepper = model.stepper(3)
    for t in range(3):
        stepper.step(X[:, t])
    rows = np.array([2, 2, 0])
    state = tuple(tuple(s[:, rows] for s in layer) for layer in stepper.state)
    stepper.select(rows)
    assert stepper.batch_size == 3
    close(stepper.step(X[rows, 3]), model.predict(X[rows, 3:], state=state)[:, 0])


def test_series_stepper_takes_features():
    model = Model.for_series(2, cell="gru", hidden_size=8, seed=0, dtype=np.float64)
    X = np.random.default_rng(3).standard_normal((2, 5, 2))
    stepper = model.stepper(2)
    got = np.stack([stepper.step(X[:, t]) for t in range(5)], axis=1)
    close(got, model.predict(X))


def test_stepper_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        token_model("rnn", "numpy").stepper(0)


@pytest.mark.parametrize("steps, error", [(-1, ValueError), (2.5, TypeError),
                                          (True, TypeError), ("3", TypeError)])
def test_stepper_expect_rejects_a_bad_count(steps, error):
    with pytest.raises(error, match="steps"):
        token_model("rnn", "numpy").stepper(1).expect(steps)
