"""Sequences as users have them, through layers, Model and fastlstm.train: per-row
lengths, bidirectional stacks, dropout, one label per sequence."""
import numpy as np
import pytest

import fastlstm
from fastlstm import Model
from fastlstm.layers import RECURRENT

from gradcheck import assert_grad

BACKENDS = fastlstm.available_backends()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", list(RECURRENT))
def test_bidirectional_is_two_directions_of_each_row(backend, cell):
    """Layer 0's reverse direction is the forward cell (its own weights) run over
    each row's own steps back to front, its outputs put back in order; layer 1
    reads [forward; reverse]. Checked against separate one-direction layers."""
    rng = np.random.default_rng(0)
    T, B, I, H = 6, 4, 3, 5
    bi = RECURRENT[cell](I, H, 2, bidirectional=True, seed=1, dtype=np.float64,
                         backend=backend)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([3, 6, 1, 4])
    y, (h, *_), _ = bi.forward(x, lengths=lengths)
    assert y.shape == (T, B, 2 * H) and h.shape == (4, B, H)

    def one(k, d, inp):
        layer = RECURRENT[cell](inp.shape[2], H, dtype=np.float64, backend=backend)
        for name in layer.params:
            layer.params[name][...] = bi.params[bi._directions(k)[d] + name[2:]]
        if d == 0:
            out, (hk, *_), _ = layer.forward(inp, lengths=lengths)
            return out, hk[0]
        rev = np.zeros_like(inp)
        for b, L in enumerate(lengths):
            rev[:L, b] = inp[:L, b][::-1]
        out, (hk, *_), _ = layer.forward(rev, lengths=lengths)
        back = np.zeros_like(out)
        for b, L in enumerate(lengths):
            back[:L, b] = out[:L, b][::-1]
        return back, hk[0]

    inp = x
    for k in range(2):
        (yf, hf), (yr, hr) = one(k, 0, inp), one(k, 1, inp)
        inp = np.concatenate([yf, yr], axis=2)
        np.testing.assert_allclose(h[2 * k], hf, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h[2 * k + 1], hr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y, inp, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", list(RECURRENT))
def test_bidirectional_with_lengths_matches_finite_differences(cell):
    rng = np.random.default_rng(2)
    layer = RECURRENT[cell](2, 3, 2, bidirectional=True, seed=3, dtype=np.float64)
    x = rng.standard_normal((4, 3, 2))
    lengths = np.array([2, 4, 1])
    dy = rng.standard_normal((4, 3, 6))

    def loss():
        return np.sum(layer.forward(x, lengths=lengths)[0] * dy)

    _, _, backprop = layer.forward(x, lengths=lengths)
    dx, _ = backprop(dy)
    assert_grad(dx, loss, x, "x")
    for name in ("0.reverse.Wx", "1.reverse.Wh", "1.Wx"):
        assert_grad(layer.grads[name], loss, layer.params[name], name)


def test_dropout_keeps_its_fraction_scaled_and_is_seeded():
    """Between layers, a fraction 1 - p of the outputs is kept, scaled by
    1 / (1 - p): the second layer sees exactly that (its input gradient shows it)."""
    p = 0.3
    layer = fastlstm.LSTM(4, 64, 2, dropout=p, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((20, 16, 4))
    y0, _, _ = layer._forward(x, None)
    y1, _, _ = layer._forward(x, None, rng=np.random.default_rng(5))
    y2, _, _ = layer._forward(x, None, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(y1, y2)        # the same seed, the same masks
    assert not np.allclose(y0, y1)
    _, _, caches, masks = layer._run(x, layer.zero_state(16), None, cache=True,
                                     rng=np.random.default_rng(5))
    mask = masks[0]
    assert masks[1] is None                      # never on the last layer's outputs
    kept = mask != 0
    assert abs(kept.mean() - (1 - p)) < 0.01     # 20480 draws: sd 0.003
    np.testing.assert_allclose(mask[kept], 1 / (1 - p))
    # what layer 1 reads is layer 0's output times the mask
    np.testing.assert_allclose(caches[1]["x"], caches[0]["y"] * mask, rtol=1e-15)


def test_dropout_acts_in_train_only_and_train_is_reproducible():
    X, Y = toy_series()
    model = Model.for_series(1, hidden_size=16, num_layers=2, dropout=0.5, dtype=np.float64)
    before = model.predict(X)
    np.testing.assert_array_equal(model.predict(X), before)   # predict never drops
    runs = []
    for _ in range(2):
        m = Model.for_series(1, hidden_size=16, num_layers=2, dropout=0.5, dtype=np.float64)
        fastlstm.train(m, X, Y, epochs=2, batch_size=8, progress=False, seed=4)
        runs.append(m.predict(X))
    np.testing.assert_array_equal(runs[0], runs[1])
    plain = Model.for_series(1, hidden_size=16, num_layers=2, dtype=np.float64)
    fastlstm.train(plain, X, Y, epochs=2, batch_size=8, progress=False, seed=4)
    assert not np.allclose(plain.predict(X), runs[0])   # the masks did something
    Xt, Yt = to_tm(X[..., None]), to_tm(Y[..., None])
    assert m.evaluate(Xt, Yt)[0] == m.evaluate(Xt, Yt)[0]     # evaluate never drops


def toy_series(n=24, T=15, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T))
    return X, np.cumsum(X, axis=1) * 0.3


def to_tm(a):
    return np.ascontiguousarray(np.asarray(a).swapaxes(0, 1))


def test_loss_counts_only_steps_before_each_end():
    """Training and evaluating with lengths is training with the steps past each
    end cut off: the targets there do not matter, and the loss is a mask's."""
    X, Y = toy_series(n=6, T=8)
    lengths = np.array([8, 3, 5, 1, 8, 6])
    alive = np.arange(8)[None, :] < lengths[:, None]
    noisy = np.where(alive, Y, 1e3)
    a = Model.for_series(1, hidden_size=8, dtype=np.float64)
    b = Model.for_series(1, hidden_size=8, dtype=np.float64)
    ha = fastlstm.train(a, X, noisy, lengths=lengths, epochs=3, batch_size=4, progress=False)
    hb = fastlstm.train(b, np.where(alive, X, 0.0), Y, mask=alive, epochs=3, batch_size=4,
                        progress=False)
    # b's padded steps see zeros and pass their outputs on, but its mask drops them:
    # the gradients agree, because past a row's end a's layers do nothing at all
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-9)
    pa = a.predict(X, lengths=lengths)
    assert not pa[~alive].any() or np.allclose(pa[~alive], a.layers[-1].params["b"])
    np.testing.assert_allclose(pa[alive], b.predict(np.where(alive, X, 0.0))[alive],
                               rtol=1e-9)


@pytest.mark.parametrize("cell", list(RECURRENT))
def test_predict_with_lengths_in_windows_equals_one_pass(cell, monkeypatch):
    """predict cuts long rows into windows of steps; with lengths the windows end
    rows inside them. The result is the one pass's, and a row's state is its own
    end's."""
    import fastlstm.model as M
    rng = np.random.default_rng(3)
    model = Model.for_series(2, cell=cell, hidden_size=8, num_layers=2, dtype=np.float64)
    X = rng.standard_normal((5, 30, 2))
    lengths = np.array([30, 7, 19, 1, 12])
    whole, state = model.predict(X, lengths=lengths, return_state=True)
    monkeypatch.setattr(M, "PREDICT_ELEMENTS", 5 * 8 * 4)   # windows of 4 steps
    cut, cut_state = model.predict(X, lengths=lengths, return_state=True)
    np.testing.assert_allclose(cut, whole, rtol=1e-12)
    for a, b in zip(cut_state[0], state[0]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for n, L in enumerate(lengths):
        alone = model.predict(X[n:n + 1, :L], return_state=True)
        np.testing.assert_allclose(whole[n, :L], alone[0][0], rtol=1e-12)
        np.testing.assert_allclose(state[0][0][:, n], alone[1][0][0][:, 0], rtol=1e-12)


def parity_task(n, T=12, seed=0):
    """Label: is the first step's sign the same as the last valid step's? Needs the
    row's end (lengths) and memory across it."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, 1))
    lengths = rng.integers(2, T + 1, n)
    last = X[np.arange(n), lengths - 1, 0]
    y = ((X[:, 0, 0] > 0) == (last > 0)).astype(int)
    return X, y, lengths


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_classification_learns_a_task_that_needs_the_row_end(bidirectional):
    X, y, lengths = parity_task(512)
    Xv, yv, lv = parity_task(256, seed=1)
    model = Model.for_classes(1, 2, hidden_size=24, bidirectional=bidirectional, seed=0)
    h = fastlstm.train(model, X, y, lengths=lengths, epochs=25, batch_size=32, lr=1e-2,
                       validation=(Xv, yv, None, lv), progress=False)
    assert h.val_accuracy[-1] > 0.9, h.summary()
    assert h.accuracy[-1] > 0.85 and h.perplexity[-1] is None
    logits = model.predict(Xv, lengths=lv)
    assert logits.shape == (256, 2)
    assert np.mean(logits.argmax(axis=1) == yv) == pytest.approx(h.val_accuracy[-1])
    # padding past the ends does not change a label
    noisy = np.where(np.arange(12)[None, :, None] < lv[:, None, None], Xv, 9.0)
    np.testing.assert_allclose(model.predict(noisy, lengths=lv), logits, rtol=1e-5)


def test_classification_model_saves_and_loads(tmp_path):
    X, y, lengths = parity_task(32)
    model = Model.for_classes(1, 3, cell="gru", hidden_size=8, num_layers=2,
                              bidirectional=True, dropout=0.1)
    path = tmp_path / "c.npz"
    fastlstm.save(model, path)
    back = fastlstm.load(path)
    assert repr(back) == repr(model)
    np.testing.assert_array_equal(back.predict(X, lengths=lengths),
                                  model.predict(X, lengths=lengths))


def test_bad_sequence_arguments():
    X, y, lengths = parity_task(8)
    model = Model.for_classes(1, 2, hidden_size=4)
    with pytest.raises(ValueError, match=r"lengths: expected 1 <= lengths\[n\] <= T \(the "
                                         r"steps of X\) = 12, got lengths\[0\] = 17"):
        fastlstm.train(model, X, y, lengths=lengths + 11, progress=False)
    with pytest.raises(ValueError, match=r"lengths: expected shape \(N,\) = \(8,\)"):
        model.predict(X, lengths=lengths[:3])
    with pytest.raises(TypeError, match="one int label per row"):
        fastlstm.train(model, X, np.zeros((8, 12), int), progress=False)
    with pytest.raises(ValueError, match="leave seq_len None"):
        fastlstm.train(model, X, y, seq_len=4, progress=False)
    with pytest.raises(ValueError, match="cannot run one step at a time"):
        model.stepper()
    with pytest.raises(ValueError, match="dropout: expected a probability in"):
        fastlstm.LSTM(2, 3, dropout=1.0)
    with pytest.raises(ValueError, match="n_classes"):
        Model.for_classes(1, 1)
