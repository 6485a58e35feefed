"""Optimizers and clipping against closed forms; fastlstm.train's guarantees:
reproducible, resumable, learns, stops on NaN."""
import numpy as np
import pytest

import fastlstm
from fastlstm import Adam, SGD, clip_grads
from fastlstm.model import Model


def test_clip_grads_closed_form():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grads(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g["a"], [0.6, 0.0])
    np.testing.assert_allclose(g["b"], [[0.8]])
    assert clip_grads(g, None) == pytest.approx(1.0)


def test_clip_grads_leaves_small_gradients_alone():
    rng = np.random.default_rng(0)
    g = [rng.standard_normal(7).astype(np.float32), rng.standard_normal((2, 3))]
    before = [a.copy() for a in g]
    norm = clip_grads(g, 100.0)
    assert norm == pytest.approx(np.sqrt(sum(np.sum(a.astype(float) ** 2) for a in before)))
    for a, b in zip(g, before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grads(g, 0.0)


def test_sgd_momentum_closed_form():
    p = {"w": np.array([1.0])}
    opt = SGD(lr=0.1, momentum=0.5)
    for _ in range(3):
        opt.step(p, {"w": np.array([2.0])})
    # v = 2, 3, 3.5: w = 1 - 0.1 * (2 + 3 + 3.5)
    assert p["w"][0] == pytest.approx(1 - 0.85)


def test_adam_closed_form():
    """With a constant gradient the bias-corrected step is lr * g/|g| every time."""
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam(lr=0.01, eps=0.0)
    for _ in range(4):
        opt.step(p, {"w": np.array([0.3, -5.0])})
    np.testing.assert_allclose(p["w"], [1.0 - 0.04, -2.0 + 0.04], rtol=1e-12)


def toy_tokens(n=16, T=20, V=5, seed=0):
    """Targets are the input shifted back by two steps: learnable only with memory."""
    X = np.random.default_rng(seed).integers(0, V, (n, T))
    Y = np.roll(X, 2, axis=1)
    mask = np.ones((n, T), bool)
    mask[:, :2] = False
    return X, Y, mask


def small_model(cell="lstm", seed=0):
    return Model.for_tokens(5, cell=cell, hidden_size=16, embed_size=8, seed=seed)


def test_same_seed_same_data_same_weights():
    X, Y, mask = toy_tokens()
    runs = []
    for _ in range(2):
        model = small_model()
        fastlstm.train(model, X, Y, mask=mask, epochs=2, batch_size=4, seq_len=7,
                       progress=False)
        runs.append(model.params)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_training_learns_a_two_step_memory(cell):
    """Loss well below chance (log 5 = 1.61) on held-out rows, from state carried
    through truncated windows."""
    X, Y, mask = toy_tokens(n=64)
    Xv, Yv, mv = toy_tokens(n=16, seed=1)
    model = small_model(cell)
    h = fastlstm.train(model, X, Y, mask=mask, epochs=25, batch_size=16, seq_len=5,
                       lr=0.02, validation=(Xv, Yv, mv), progress=False)
    assert len(h.loss) == len(h.val_loss) == 25
    assert h.val_loss[-1] < min(0.3, h.val_loss[0])
    assert h.perplexity[-1] == pytest.approx(np.exp(h.loss[-1]))
    assert all(v > 0 for v in h.tokens_per_s)


def test_resume_from_a_checkpoint_equals_training_straight_through(tmp_path):
    X, Y, mask = toy_tokens()
    straight = small_model()
    fastlstm.train(straight, X, Y, mask=mask, epochs=4, batch_size=4, seq_len=7,
                   progress=False)
    path = tmp_path / "ck.npz"
    first = small_model()
    fastlstm.train(first, X, Y, mask=mask, epochs=2, batch_size=4, seq_len=7,
                   checkpoint=path, progress=False)
    resumed = small_model(seed=99)  # its own weights are replaced by the checkpoint's
    h = fastlstm.train(resumed, X, Y, mask=mask, epochs=4, batch_size=4, seq_len=7,
                       checkpoint=path, resume=True, progress=False)
    assert h.epoch == [1, 2, 3, 4]
    for k, w in straight.params.items():
        np.testing.assert_array_equal(resumed.params[k], w, err_msg=k)


def overfitting_tokens():
    """toy_tokens to train on and noisier rows to validate on: with lr 0.02 the
    validation loss of small_model is lowest at epoch 4 of 6."""
    X, Y, _ = toy_tokens()
    rng = np.random.default_rng(1)
    VX = rng.integers(0, 5, (8, 20))
    VY = np.roll(VX, 2, axis=1)
    VY[:, ::3] = rng.integers(0, 5, (8, 7))
    return X, Y, (VX, VY)


class Weights:
    """Copies of the model's weights at each epoch's end."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def on_epoch_end(self, epoch, history):
        self.seen.append({k: p.copy() for k, p in self.model.params.items()})


def test_restore_best_keeps_the_epoch_of_the_lowest_validation_loss(tmp_path):
    X, Y, val = overfitting_tokens()
    model, path = small_model(), tmp_path / "ck.npz"
    weights = Weights(model)
    h = fastlstm.train(model, X, Y, epochs=6, batch_size=4, seq_len=7, lr=0.02,
                       validation=val, restore_best=True, checkpoint=path,
                       callbacks=[weights], progress=False)
    best = h.epoch[int(np.argmin(h.val_loss))]
    assert 1 < best < 6 and h.best_epoch[-1] == best
    saved, state = fastlstm.io.load_checkpoint(path)
    for k, w in weights.seen[best - 1].items():
        np.testing.assert_array_equal(model.params[k], w, err_msg=k)
        np.testing.assert_array_equal(saved.params[k], w, err_msg=k)
        np.testing.assert_array_equal(state["last"][k], weights.seen[-1][k], err_msg=k)
    # the saved model, evaluated afresh, has the run's lowest validation loss
    VX, VY = val
    loss, _ = saved.evaluate(VX.T, VY.T)
    assert loss == pytest.approx(min(h.val_loss), rel=1e-6)
    marked = [line for line in h.summary().splitlines() if line.endswith("best")]
    assert len(marked) == 1 and marked[0].startswith(f"epoch {best:4d}")


def test_restore_best_without_validation_takes_the_training_loss():
    X, Y, _ = overfitting_tokens()
    h = fastlstm.train(small_model(), X, Y, epochs=3, batch_size=4, seq_len=7, lr=0.02,
                       restore_best=True, progress=False)
    assert h.best_epoch[-1] == h.epoch[int(np.argmin(h.loss))]


@pytest.mark.parametrize("stop", [1, 2, 4, 5])
def test_resuming_a_run_that_keeps_its_best_epoch_equals_training_straight_through(
        tmp_path, stop):
    """The best epochs are 1, 1, 1, 4, 4, 4. Stopped after epoch 1 or 4 (the best
    so far is the last), 2 or 5 (it is an earlier one), then resumed to 6: the
    same weights, best epochs and checkpoint as one run of 6."""
    X, Y, val = overfitting_tokens()
    kwargs = dict(batch_size=4, seq_len=7, lr=0.02, validation=val, restore_best=True,
                  progress=False)
    straight = small_model()
    h = fastlstm.train(straight, X, Y, epochs=6, checkpoint=tmp_path / "a.npz", **kwargs)
    path = tmp_path / "b.npz"
    fastlstm.train(small_model(), X, Y, epochs=stop, checkpoint=path, **kwargs)
    resumed = small_model(seed=99)
    r = fastlstm.train(resumed, X, Y, epochs=6, checkpoint=path, resume=True, **kwargs)
    assert r.epoch == h.epoch and r.best_epoch == h.best_epoch == [1, 1, 1, 4, 4, 4]
    a, sa = fastlstm.io.load_checkpoint(tmp_path / "a.npz")
    b, sb = fastlstm.io.load_checkpoint(path)
    for k, w in straight.params.items():
        np.testing.assert_array_equal(resumed.params[k], w, err_msg=k)
        np.testing.assert_array_equal(b.params[k], a.params[k], err_msg=k)
        np.testing.assert_array_equal(sb["last"][k], sa["last"][k], err_msg=k)


class Recorder:
    def __init__(self, stop_after=None):
        self.steps, self.epochs, self.stop_after = [], [], stop_after

    def on_step(self, info):
        self.steps.append(info)

    def on_epoch_end(self, epoch, history):
        self.epochs.append(epoch)
        return epoch == self.stop_after


def test_callbacks_see_every_step_and_can_stop():
    X, Y, mask = toy_tokens(n=8, T=20)
    rec = Recorder(stop_after=2)
    h = fastlstm.train(small_model(), X, Y, epochs=5, batch_size=4, seq_len=10,
                       callbacks=[rec], clip_norm=1e-3, progress=False)
    assert rec.epochs == [1, 2] and h.epoch == [1, 2]
    assert [s.step for s in rec.steps] == list(range(8))
    assert all(s.tokens == 40 and s.grad_norm > 1e-3 for s in rec.steps)


def overflowing():
    """A linear model whose gradient overflows float32 on inputs of 1e30."""
    return Model([fastlstm.Dense(1, 1, seed=0)], loss="mse")


def test_nan_loss_stops_training_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    X = np.full((4, 30, 1), 1e30, np.float32)
    Y = np.zeros((4, 30, 1), np.float32)
    path = tmp_path / "ck.npz"
    model = overflowing()
    fastlstm.save(model, path)
    before = path.read_bytes()
    weights = {k: p.copy() for k, p in model.params.items()}
    with pytest.raises(fastlstm.TrainingDiverged, match=r"epoch 1, step 1: .*clip_norm"):
        fastlstm.train(model, X, Y, epochs=1, batch_size=4, clip_norm=None,
                       checkpoint=path, progress=False)
    assert path.read_bytes() == before
    for k, p in model.params.items():
        np.testing.assert_array_equal(p, weights[k])


def test_on_nan_skip_leaves_the_bad_steps_out():
    X = np.ones((4, 10, 1), np.float32)
    X[:, :5] = 1e30
    Y = np.zeros((4, 10, 1), np.float32)
    model = overflowing()
    rec = Recorder()
    h = fastlstm.train(model, X, Y, epochs=1, batch_size=4, seq_len=5, on_nan="skip",
                       clip_norm=None, callbacks=[rec], progress=False)
    assert [np.isfinite(s.grad_norm) for s in rec.steps] == [False, True]
    assert h.loss[0] == pytest.approx(rec.steps[1].loss)
    assert all(np.isfinite(p).all() for p in model.params.values())


@pytest.mark.parametrize("kwargs, error", [
    (dict(epochs=0), ValueError),
    (dict(batch_size=-1), ValueError),
    (dict(seq_len=0), ValueError),
    (dict(optimizer="rmsprop"), ValueError),
    (dict(lr=-1.0), ValueError),
    (dict(on_nan="ignore"), ValueError),
    (dict(restore_best="yes"), TypeError),
    (dict(validation=[1]), TypeError),
    (dict(mask=np.ones((3, 3), bool)), ValueError),
    (dict(validation=(np.zeros((2, 6), int), np.zeros((2, 5), int))), ValueError),
])
def test_bad_training_arguments(kwargs, error):
    X, Y, _ = toy_tokens(n=4, T=6)
    with pytest.raises(error):
        fastlstm.train(small_model(), X, Y, progress=False, **kwargs)


def test_bad_training_data():
    X, Y, _ = toy_tokens(n=4, T=6)
    with pytest.raises(TypeError, match="X"):
        fastlstm.train(small_model(), X.astype(float), Y, progress=False)
    with pytest.raises(ValueError, match="Y"):
        fastlstm.train(small_model(), X, Y[:, :3], progress=False)
    with pytest.raises(ValueError, match="tokens"):
        fastlstm.train(small_model(), X + 10, Y, progress=False)
    series = Model.for_series(1, hidden_size=2)
    with pytest.raises(ValueError, match="NaN"):
        fastlstm.train(series, np.full((2, 3, 1), np.nan), np.zeros((2, 3, 1)), progress=False)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_every_backend_trains_to_the_same_weights(dtype, tol, optimizer):
    """Two epochs of truncated BPTT through a 2-layer LSTM, its head, loss, clipping
    and updates: every backend gives the NumPy reference's weights to rounding, so
    training does not depend on which one runs it."""
    X, Y, mask = toy_tokens(n=8)
    weights = {}
    for backend in fastlstm.available_backends():
        model = Model.for_tokens(5, hidden_size=6, num_layers=2, embed_size=3, seed=0,
                                 dtype=dtype, backend=backend)
        fastlstm.train(model, X, Y, mask=mask, epochs=2, batch_size=4, seq_len=7,
                       optimizer=optimizer, clip_norm=0.5, progress=False)
        weights[backend] = model.params
    assert len(weights) >= 2
    for backend, w in weights.items():
        for k in w:
            scale = np.abs(weights["numpy"][k]).max()
            np.testing.assert_allclose(w[k], weights["numpy"][k], rtol=tol,
                                       atol=tol * scale, err_msg=f"{backend} {k}")


def test_a_series_of_one_feature_needs_no_reshape():
    """(N, T) in and out where the model takes and gives one feature; a 1-D series
    gets an error that says how to shape it."""
    z = np.sin(np.arange(201) / 5.0)
    X, Y = fastlstm.data.next_step_rows(z, 50)
    assert X.shape == (4, 50)
    model = Model.for_series(1, hidden_size=4, seed=0, dtype=np.float64)
    twin = Model.for_series(1, hidden_size=4, seed=0, dtype=np.float64)
    fastlstm.train(model, X, Y, epochs=2, batch_size=2, progress=False)
    fastlstm.train(twin, X[..., None], Y[..., None], epochs=2, batch_size=2, progress=False)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], twin.params[k])
    np.testing.assert_array_equal(model.predict(z[None]), twin.predict(z[None, :, None]))
    with pytest.raises(ValueError, match=r"X\[None, :, None\]"):
        model.predict(z)
    with pytest.raises(ValueError, match=r"\(N, T, F\)"):
        fastlstm.train(Model.for_series(2, hidden_size=2), X, Y, progress=False)


def test_distributed_argument(python):
    X, Y, mask = toy_tokens(n=4, T=6)
    with pytest.raises(ValueError, match="distributed: expected None or 'mpi', got 'gloo'"):
        fastlstm.train(small_model(), X, Y, distributed="gloo", progress=False)
    r = python("""
        import sys
        sys.modules["mpi4py"] = None   # as if it were not installed
        import numpy as np, fastlstm
        m = fastlstm.Model.for_tokens(3, hidden_size=4)
        try:
            fastlstm.train(m, np.zeros((2, 3), int), np.zeros((2, 3), int), distributed="mpi")
        except ImportError as exc:
            print(exc)
    """)
    assert 'needs mpi4py and an MPI library: pip install "fastlstm[mpi]"' in r.stdout, r.stderr


@pytest.mark.parametrize("progress, lines", [("lines", 3), (False, 0), ("auto", 3)])
def test_progress_in_a_log_is_one_line_per_epoch(capfd, progress, lines):
    """Where stderr is not a terminal (here a pipe pytest captures), "auto" writes a
    line per epoch with the figures of History.line, and no bar's carriage returns."""
    X, Y, mask = toy_tokens(n=8, T=10)
    h = fastlstm.train(small_model(), X, Y, mask=mask, epochs=3, batch_size=4,
                       validation=(X, Y, mask), progress=progress)
    err = capfd.readouterr().err
    assert "\r" not in err
    got = err.splitlines()
    assert len(got) == lines
    for k, line in enumerate(got):
        assert line.startswith(h.line(k) + "  ") and line.endswith(f"s  ({k + 1}/3)")


def test_bad_progress():
    X, Y, _ = toy_tokens(n=4, T=4)
    for bad in ("verbose", 2, None):
        with pytest.raises(ValueError, match="progress: expected one of"):
            fastlstm.train(small_model(), X, Y, progress=bad)
