"""Weight decay, learning-rate schedules and early stopping against closed forms."""
import math

import numpy as np
import pytest

import fastlstm
from fastlstm.callbacks import CosineLR, EarlyStopping, ReduceLROnPlateau, StepLR
from fastlstm.model import Model

BACKENDS = fastlstm.available_backends()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [
    lambda b: fastlstm.Adam(lr=0.1, weight_decay=0.5, backend=b),
    lambda b: fastlstm.SGD(lr=0.1, momentum=0.9, weight_decay=0.5, backend=b),
    lambda b: fastlstm.SGD(lr=0.1, momentum=0.0, weight_decay=0.5, backend=b)])
def test_decoupled_weight_decay_shrinks_parameters_geometrically(backend, make):
    """With a zero gradient only the decay acts: p_n = p_0 (1 - lr * wd)^n, also in
    Adam, whose moments stay 0 (AdamW, not an L2 term in the gradient)."""
    p = {"w": np.array([1.0, -2.0, 3.0])}
    opt = make(backend)
    for _ in range(4):
        opt.step(p, {"w": np.zeros(3)})
    np.testing.assert_allclose(p["w"], np.array([1.0, -2.0, 3.0]) * 0.95 ** 4, rtol=1e-12)


def test_weight_decay_is_not_an_l2_term():
    """AdamW: the decay does not go through Adam's normalisation. With a constant
    gradient g the update is lr * sign(g) plus the decay's lr * wd * p."""
    p = {"w": np.array([2.0])}
    opt = fastlstm.Adam(lr=0.01, eps=0.0, weight_decay=0.1)
    opt.step(p, {"w": np.array([0.5])})
    assert p["w"][0] == pytest.approx(2.0 * (1 - 0.001) - 0.01)


def test_bad_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        fastlstm.Adam(weight_decay=-1.0)


class LR:
    """Records the optimizer's lr at every update."""

    def on_train_begin(self, model, optimizer, history):
        self.optimizer, self.seen = optimizer, []

    def on_step(self, info):
        self.seen.append((info.epoch, self.optimizer.lr))


def lrs(callback, epochs=6, **kwargs):
    X = np.random.default_rng(0).integers(0, 3, (2, 4))
    model = Model.for_tokens(3, hidden_size=2, embed_size=2, seed=0)
    rec = LR()
    fastlstm.train(model, X, X, epochs=epochs, batch_size=2, lr=0.1,
                   callbacks=[callback, rec], progress=False, **kwargs)
    return [lr for _, lr in rec.seen]


def test_step_schedule():
    assert lrs(StepLR(2, gamma=0.5)) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_schedule():
    want = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)] + [0.01] * 2
    assert lrs(CosineLR(4, min_lr=0.01)) == pytest.approx(want)


class Losses:
    """Replaces the recorded losses with a fixed sequence, to drive the callbacks."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, history):
        history.loss[-1] = self.values[epoch - 1]


def test_reduce_on_plateau():
    """Losses 5, 4, 4, 4, 4, 3: no fall for more than 1 epoch after epoch 2 halves
    the lr once per 2 flat epochs."""
    losses = Losses([5, 4, 4, 4, 4, 3])
    seen = lrs(_Chain(losses, ReduceLROnPlateau(factor=0.5, patience=1, monitor="loss")))
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


class _Chain:
    """Two callbacks as one, the first's on_epoch_end first."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def on_train_begin(self, *args):
        self.second.on_train_begin(*args)

    def on_epoch_end(self, epoch, history):
        self.first.on_epoch_end(epoch, history)
        return self.second.on_epoch_end(epoch, history)

    def on_train_end(self, history):
        if hasattr(self.second, "on_train_end"):
            self.second.on_train_end(history)


def test_early_stopping_restores_the_best_weights(tmp_path):
    """Validation losses 3, 2, 2.5, 2.6: the best is epoch 2, patience 2 stops after
    epoch 4, and the model (and its checkpoint) ends with epoch 2's weights."""
    X = np.random.default_rng(0).integers(0, 3, (4, 6))
    model = Model.for_tokens(3, hidden_size=3, embed_size=2, seed=0)
    weights = []

    class Fake:
        def on_epoch_end(self, epoch, history):
            history.val_loss[-1] = [3, 2, 2.5, 2.6, 1, 1][epoch - 1]
            weights.append({k: p.copy() for k, p in model.params.items()})

    stop = EarlyStopping(patience=2, restore_best=True)
    path = tmp_path / "ck.npz"
    h = fastlstm.train(model, X, X, epochs=6, batch_size=2, validation=(X, X),
                       callbacks=[_Chain(Fake(), stop)], checkpoint=path, progress=False)
    assert h.epoch == [1, 2, 3, 4] and stop.best_epoch == 2
    for k, p in model.params.items():
        np.testing.assert_array_equal(p, weights[1][k])
        np.testing.assert_array_equal(fastlstm.load(path).params[k], weights[1][k])
        assert not np.array_equal(weights[3][k], weights[1][k]) or k.endswith("b")


def test_masks_that_keep_nothing_are_errors():
    X = np.random.default_rng(0).integers(0, 3, (4, 6))
    model = Model.for_tokens(3, hidden_size=3, embed_size=2, seed=0)
    mask = np.ones((4, 6), bool)
    mask[2] = False
    with pytest.raises(ValueError, match=r"mask: 1 rows keep no step \(rows 2\)"):
        fastlstm.train(model, X, X, mask=mask, epochs=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="validation mask: keeps no step"):
        fastlstm.train(model, X, X, epochs=1, batch_size=2, progress=False,
                       validation=(X, X, np.zeros((4, 6), bool)))


def test_a_window_that_keeps_no_step_makes_no_update():
    """Only the second window of each row keeps steps: Adam counts one update an
    epoch (an update on the first window, with its zero gradient, would still move
    the weights through Adam's moments), and the callbacks see only those."""
    X = np.random.default_rng(0).integers(0, 3, (2, 8))
    mask = np.zeros((2, 8), bool)
    mask[:, 4:] = True
    model = Model.for_tokens(3, hidden_size=3, embed_size=2, seed=0)
    opt = fastlstm.Adam(1e-2)
    steps = []

    class Count:
        def on_step(self, info):
            steps.append(info.tokens)
    fastlstm.train(model, X, X, mask=mask, epochs=2, batch_size=2, seq_len=4,
                   optimizer=opt, progress=False, callbacks=[Count()])
    assert int(opt.state["t"]) == 2 and steps == [8, 8]
