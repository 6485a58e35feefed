"""to_onnx: ONNX Runtime runs the exported graph to what Model.predict gives, for
every kind of model, cell, stack and direction, with lengths where the model
reads them."""
import numpy as np
import pytest

import fastlstm
from fastlstm import Dense, Last, LSTM
from fastlstm.layers import RECURRENT
from fastlstm.model import Model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(model, *inputs):
    session = ort.InferenceSession(fastlstm.to_onnx(model).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))[0]


CELLS = ["rnn", "lstm", "gru"]
STACKS = [(1, False), (2, False), (1, True), (2, True)]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers, bidirectional", STACKS)
@pytest.mark.parametrize("kind", ["classes", "regression"])
def test_one_output_a_row_with_lengths(cell, num_layers, bidirectional, kind):
    rng = np.random.default_rng(num_layers)
    make = Model.for_classes if kind == "classes" else Model.for_regression
    model = make(3, 4, cell=cell, hidden_size=5, num_layers=num_layers,
                 bidirectional=bidirectional, seed=2)
    X = rng.normal(size=(6, 7, 3)).astype(np.float32)
    lengths = rng.integers(1, 8, 6)
    lengths[0] = 7
    y = _run(model, X, lengths.astype(np.int64))
    assert y.shape == (6, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, model.predict(X, lengths=lengths), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers, bidirectional", STACKS)
def test_token_and_series_models(cell, num_layers, bidirectional):
    rng = np.random.default_rng(0)
    tokens = Model.for_tokens(9, cell=cell, hidden_size=6, num_layers=num_layers,
                              embed_size=4, seed=1)
    X = rng.integers(0, 9, (3, 8))
    np.testing.assert_allclose(_run(tokens, X), tokens.predict(X), rtol=0, atol=1e-5)
    series = Model([RECURRENT[cell](2, 6, num_layers, bidirectional=bidirectional,
                                    seed=3),
                    Dense(6 * (1 + bidirectional), 3, seed=4)], loss="mse")
    X = rng.normal(size=(3, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(_run(series, X), series.predict(X), rtol=0, atol=1e-5)


def test_a_float64_model_runs_in_float32():
    model = Model.for_regression(2, 1, hidden_size=8, num_layers=2, dtype=np.float64, seed=5)
    X = np.random.default_rng(1).normal(size=(4, 30, 2))
    y = _run(model, X.astype(np.float32), np.full(4, 30, np.int64))
    np.testing.assert_allclose(y, model.predict(X), rtol=0, atol=1e-5)


def test_charlm_and_forecaster_export_their_models(tmp_path):
    lm = fastlstm.CharLM.create("abc cab bca\n" * 5, hidden_size=6, seed=1)
    ids = lm.vocab.encode("abc ca")[None].astype(np.int64)
    fastlstm.to_onnx(lm, tmp_path / "lm.onnx")
    session = ort.InferenceSession(str(tmp_path / "lm.onnx"),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": ids})[0], lm.model.predict(ids),
                               rtol=0, atol=1e-5)
    fc = fastlstm.Forecaster.create(fastlstm.data.price_series(200), hidden_size=4)
    z = fc.inputs(fastlstm.data.price_series(50))[None].astype(np.float32)
    np.testing.assert_allclose(_run(fc, z), fc.model.predict(z), rtol=0, atol=1e-5)


def test_what_onnx_cannot_say_is_a_clear_error():
    model = Model([LSTM(2, 4), Dense(4, 4), Last(4), Dense(4, 1)], loss="mse")
    with pytest.raises(ValueError, match="layer 2, a Last, cannot be exported here "
                                         r"\(after a Dense\)"):
        fastlstm.to_onnx(model)
    with pytest.raises(TypeError, match="expected a fastlstm Model"):
        fastlstm.to_onnx("model.npz")


def test_without_onnx_the_export_says_what_to_install(python):
    r = python("""
        import sys
        sys.modules["onnx"] = None
        import fastlstm
        from fastlstm.model import Model
        try:
            fastlstm.to_onnx(Model.for_series(1, hidden_size=2))
        except ImportError as exc:
            print(exc)
    """)
    assert "pip install 'fastlstm[onnx]'" in r.stdout, r.stderr
