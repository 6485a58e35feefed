"""One value per sequence (Model.for_regression: a recurrent stack, each row's last
step, Dense to k values, MSE): equal to torch's same model, loss and every
gradient, padded and packed (float64, 1e-10); it learns, predicts (N, k), saves,
and refuses targets of the wrong shape."""
import numpy as np
import pytest

import fastlstm
from fastlstm import Dense, Last, Model

from cells import COMPILED, TOL

N, T, F, H, K = 6, 9, 3, 5, 2
LENGTHS = np.array([4, 9, 1, 7, 9, 2])   # unsorted, 1 and T among them


def draw(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, T, F)), rng.standard_normal((N, K))


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "lengths"])
def test_equals_torch(backend, cell, packed):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = getattr(torch.nn, cell.upper())(F, H, num_layers=2, batch_first=True,
                                          dtype=torch.float64)
    head = torch.nn.Linear(H, K, dtype=torch.float64)
    X, Y = draw()
    lengths = LENGTHS if packed else None
    x = torch.tensor(X)
    inp = x if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    _, final = net(inp)
    h_top = (final[0] if cell == "lstm" else final)[-1]   # each row's last step
    loss_t = torch.nn.functional.mse_loss(head(h_top), torch.tensor(Y))
    loss_t.backward()

    model = Model([fastlstm.from_torch(net, backend=backend), Last(H, dtype=np.float64),
                   Dense(H, K, dtype=np.float64, backend=backend)], loss="mse")
    model.params["2.W"][...] = head.weight.detach().numpy().T
    model.params["2.b"][...] = head.bias.detach().numpy()
    loss, _ = model.loss_and_grads(X.swapaxes(0, 1).copy(), Y[None], lengths=lengths)
    assert loss == pytest.approx(loss_t.item(), rel=TOL[np.float64])
    grads = model.grads
    torch_grads = {f"0.{name}": p.grad.numpy() for name, p in net.named_parameters()}
    want = {"2.W": head.weight.grad.numpy().T, "2.b": head.bias.grad.numpy()}
    for k in range(2):
        s = f"_l{k}"
        want[f"0.{k}.Wx"] = torch_grads[f"0.weight_ih{s}"].T
        want[f"0.{k}.Wh"] = torch_grads[f"0.weight_hh{s}"].T
        if cell == "gru":
            want[f"0.{k}.bx"] = torch_grads[f"0.bias_ih{s}"]
            want[f"0.{k}.bh"] = torch_grads[f"0.bias_hh{s}"]
        else:
            want[f"0.{k}.b"] = torch_grads[f"0.bias_ih{s}"]
    assert set(want) == set(grads)
    for name, g in want.items():
        tol = TOL[np.float64] * max(np.abs(g).max(), 1e-30)
        np.testing.assert_allclose(grads[name], g, rtol=TOL[np.float64], atol=tol,
                                   err_msg=name)


def sums_task(n, seed=0):
    """The sum and the last value of each row's own steps: (N, 8, 1), (N, 2)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 8, 1)).astype(np.float32)
    lengths = rng.integers(1, 9, n)
    kept = np.arange(8)[None, :] < lengths[:, None]
    Y = np.stack([(X[..., 0] * kept).sum(axis=1), X[np.arange(n), lengths - 1, 0]], axis=1)
    return X, Y, lengths


def test_learns_two_values_per_sequence_of_its_own_length(tmp_path):
    X, Y, lengths = sums_task(1024)
    Xv, Yv, lv = sums_task(256, seed=1)
    model = Model.for_regression(1, 2, cell="gru", hidden_size=32, num_layers=2, seed=0)
    h = fastlstm.train(model, X, Y, lengths=lengths, epochs=30, batch_size=32, lr=0.01,
                       validation=(Xv, Yv, None, lv), restore_best=True,
                       checkpoint=tmp_path / "r.npz", progress=False)
    assert h.accuracy[-1] is None and h.perplexity[-1] is None
    pred = model.predict(Xv, lengths=lv)
    assert pred.shape == (256, 2) and pred.dtype == np.float32
    mse = np.mean((pred - Yv) ** 2)
    assert mse == pytest.approx(min(h.val_loss), rel=1e-4)
    assert mse < 0.02 * Yv.var(axis=0).mean(), h.summary()
    back = fastlstm.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.predict(Xv, lengths=lv), pred)


def test_one_value_per_row_takes_y_of_shape_n():
    X, Y, lengths = sums_task(16)
    one, two = (Model.for_regression(1, hidden_size=4, dtype=np.float64) for _ in range(2))
    h1 = fastlstm.train(one, X, Y[:, 0], lengths=lengths, epochs=1, progress=False)
    h2 = fastlstm.train(two, X, Y[:, :1], lengths=lengths, epochs=1, progress=False)
    assert h1.loss == h2.loss
    assert two.predict(X, lengths=lengths).shape == (16, 1)


@pytest.mark.parametrize("Y, kwargs, error, match", [
    (np.zeros((16, 3)), {}, ValueError, r"expected 2 values per row, shape \(N, 2\)"),
    (np.zeros(16), {}, ValueError, r"expected 2 values per row"),
    (np.zeros((8, 2)), {}, ValueError, r"= \(16, 2\), got float64 \(8, 2\)"),
    (np.zeros((16, 2)), dict(mask=np.ones((16, 8), bool)), ValueError, "takes lengths="),
    (np.full((16, 2), np.nan), {}, ValueError, "Y: contains NaN"),
    (np.zeros((16, 2)), dict(seq_len=4), ValueError, "leave seq_len None"),
])
def test_bad_targets(Y, kwargs, error, match):
    X, _, _ = sums_task(16)
    with pytest.raises(error, match=match):
        fastlstm.train(Model.for_regression(1, 2, hidden_size=4), X, Y, progress=False,
                       **kwargs)
    with pytest.raises(ValueError, match="n_outputs"):
        Model.for_regression(1, 0)
