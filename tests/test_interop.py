"""fastlstm.from_torch / to_torch against torch.nn.RNN / LSTM / GRU: outputs, final
states and every gradient of a two-layer stack, one or two directions, on padded
input and on packed sequences against fastlstm's lengths (float64, 1e-10)."""
import numpy as np
import pytest

import fastlstm

from cells import TOL

torch = pytest.importorskip("torch")
pack = torch.nn.utils.rnn

BACKENDS = fastlstm.available_backends()
T, B, I, H = 7, 5, 3, 6
LENGTHS = np.array([4, 7, 1, 5, 7])   # unsorted, 1 and T among them


def torch_module(cell, bidirectional, batch_first=False, seed=0):
    torch.manual_seed(seed)
    net = getattr(torch.nn, cell.upper())(I, H, num_layers=2, bidirectional=bidirectional,
                                          batch_first=batch_first, dtype=torch.float64)
    with torch.no_grad():   # torch's default biases are tiny; these test the mapping
        for name, p in net.named_parameters():
            if name.startswith("bias"):
                p.uniform_(-1, 1)
    return net


def torch_pass(net, cell, x, state, lengths, dy, dstate):
    """torch's outputs, final state and gradients (dx, dstate0, {param: grad}) for
    the loss sum(y * dy) + sum(final * dstate), packed where lengths is given."""
    x = torch.tensor(x, requires_grad=True)
    state = [torch.tensor(s, requires_grad=True) for s in state]
    inp = x if lengths is None else pack.pack_padded_sequence(
        x, torch.tensor(lengths), enforce_sorted=False)
    out, final = net(inp, tuple(state) if cell == "lstm" else state[0])
    if lengths is not None:
        out, _ = pack.pad_packed_sequence(out, total_length=T)
    final = list(final) if cell == "lstm" else [final]
    loss = (out * torch.tensor(dy)).sum() + sum(
        (f * torch.tensor(d)).sum() for f, d in zip(final, dstate))
    net.zero_grad()
    loss.backward()
    grads = {k: p.grad.numpy().copy() for k, p in net.named_parameters()}
    return (out.detach().numpy(), [f.detach().numpy() for f in final], x.grad.numpy(),
            [s.grad.numpy() for s in state], grads)


def draw(cell, bidirectional, seed=1):
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    n_states = 2 if cell == "lstm" else 1
    x = rng.standard_normal((T, B, I))
    state = [rng.standard_normal((2 * D, B, H)) for _ in range(n_states)]
    dy = rng.standard_normal((T, B, D * H))
    dstate = [rng.standard_normal((2 * D, B, H)) for _ in range(n_states)]
    return x, state, dy, dstate


def close(a, e, what, tol=TOL[np.float64]):
    e = np.asarray(e)
    np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(np.abs(e).max(), 1e-30),
                               err_msg=what)


def param_grads(layer, cell, grads, k, d):
    """torch's gradients of layer k, direction d, in fastlstm's names and shapes."""
    s = f"_l{k}" + ("_reverse" if d else "")
    out = {"Wx": grads[f"weight_ih{s}"].T, "Wh": grads[f"weight_hh{s}"].T}
    if cell == "gru":
        out.update(bx=grads[f"bias_ih{s}"], bh=grads[f"bias_hh{s}"])
    else:   # one bias, the sum of torch's two: its gradient is either's
        out["b"] = grads[f"bias_ih{s}"]
    prefix = layer._directions(k)[d]
    return {prefix + n: g for n, g in out.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_equals_torch(backend, cell, bidirectional, packed):
    net = torch_module(cell, bidirectional)
    layer = fastlstm.from_torch(net, backend=backend)
    assert layer.dtype == np.float64 and layer.num_layers == 2
    x, state, dy, dstate = draw(cell, bidirectional)
    lengths = LENGTHS if packed else None
    y_t, final_t, dx_t, dstate0_t, grads_t = torch_pass(net, cell, x, state, lengths, dy,
                                                         dstate)
    y, final, backprop = layer.forward(x, tuple(state), lengths=lengths)
    dx, dstate0 = backprop(dy, tuple(dstate))
    close(y, y_t, "y")
    for a, e in zip(final, final_t):
        close(a, e, "final state")
    close(dx, dx_t, "dx")
    for a, e in zip(dstate0, dstate0_t):
        close(a, e, "d initial state")
    for k in range(2):
        for d in range(layer.directions):
            for name, g in param_grads(layer, cell, grads_t, k, d).items():
                close(layer.grads[name], g, name)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_batch_first_and_round_trip(cell):
    """A batch_first module gives a batch_first layer; to_torch gives back a module
    of the same configuration whose outputs are the first module's."""
    net = torch_module(cell, bidirectional=True, batch_first=True, seed=3)
    net.dropout = 0.25
    net.eval()   # torch drops in training mode; fastlstm's forward never does
    layer = fastlstm.from_torch(net)
    assert (layer.batch_first, layer.bidirectional, layer.dropout) == (True, True, 0.25)
    x = np.random.default_rng(0).standard_normal((B, T, I))
    y, _, _ = layer.forward(x)
    with torch.no_grad():
        y_t, _ = net(torch.tensor(x))
    close(y, y_t.numpy(), "y batch-first")
    back = fastlstm.to_torch(layer)
    assert type(back) is type(net) and back.batch_first and back.bidirectional
    assert back.dropout == 0.25 and back.weight_ih_l0.dtype == torch.float64
    back.eval()
    with torch.no_grad():
        close(back(torch.tensor(x))[0].numpy(), y_t.numpy(), "y of to_torch")


def test_float32_is_kept():
    net = torch.nn.LSTM(I, H)
    layer = fastlstm.from_torch(net)
    assert layer.dtype == np.float32
    assert fastlstm.to_torch(layer).weight_hh_l0.dtype == torch.float32


def test_what_has_no_equivalent_is_refused():
    with pytest.raises(ValueError, match="tanh RNN"):
        fastlstm.from_torch(torch.nn.RNN(I, H, nonlinearity="relu"))
    with pytest.raises(ValueError, match="proj_size"):
        fastlstm.from_torch(torch.nn.LSTM(I, H, proj_size=2))
    with pytest.raises(TypeError, match="torch.nn.RNN, LSTM or GRU"):
        fastlstm.from_torch(torch.nn.Linear(I, H))
    with pytest.raises(TypeError, match="float32 or float64"):
        fastlstm.from_torch(torch.nn.GRU(I, H, dtype=torch.float16))
    with pytest.raises(TypeError, match="fastlstm RNN, LSTM or GRU"):
        fastlstm.to_torch(fastlstm.Dense(3, 4))


def test_no_torch_is_a_clear_error(python):
    r = python("""
        import sys
        sys.modules["torch"] = None   # as if it were not installed
        import fastlstm
        try:
            fastlstm.to_torch(fastlstm.LSTM(2, 3))
        except ImportError as exc:
            print(exc)
    """)
    assert "need PyTorch, which is not installed" in r.stdout
