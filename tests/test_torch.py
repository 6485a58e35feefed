"""fastlstm against torch.nn.RNN / LSTM / GRU on imported weights (Wx = weight_ih.T,
Wh = weight_hh.T): outputs and every gradient. Skipped where torch is missing."""
import numpy as np
import pytest

from fastlstm.cells import CELLS

from cells import COMPILED, OUTPUTS, problem, run

torch = pytest.importorskip("torch")

BACKENDS = ["numpy"] + COMPILED


def torch_run(cell, p, g):
    T, B, I = p["x"].shape
    H = p["Wh"].shape[0]
    kind = getattr(torch.nn, cell.upper())
    net = kind(I, H, dtype=torch.float64)
    t = lambda a: torch.tensor(a, dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(t(p["Wx"].T))
        net.weight_hh_l0.copy_(t(p["Wh"].T))
        if cell == "gru":
            net.bias_ih_l0.copy_(t(p["bx"]))
            net.bias_hh_l0.copy_(t(p["bh"]))
        else:  # one bias b = bias_ih + bias_hh
            net.bias_ih_l0.copy_(t(p["b"]))
            net.bias_hh_l0.zero_()
    x = t(p["x"]).requires_grad_(True)
    h0 = t(p["h0"])[None].requires_grad_(True)
    if cell == "lstm":
        c0 = t(p["c0"])[None].requires_grad_(True)
        y, (hT, cT) = net(x, (h0, c0))
        loss = (y * t(g["dy"])).sum() + (hT[0] * t(g["dhT"])).sum() \
            + (cT[0] * t(g["dcT"])).sum()
        final = [hT[0], cT[0]]
    else:
        y, hT = net(x, h0)
        loss = (y * t(g["dy"])).sum() + (hT[0] * t(g["dhT"])).sum()
        final = [hT[0]]
    loss.backward()
    grads = [x.grad, net.weight_ih_l0.grad.T, net.weight_hh_l0.grad.T]
    grads += [net.bias_ih_l0.grad] if cell != "gru" else [net.bias_ih_l0.grad,
                                                           net.bias_hh_l0.grad]
    grads += [h0.grad[0]] + ([c0.grad[0]] if cell == "lstm" else [])
    arrays = [y] + final + grads
    return dict(zip(OUTPUTS[cell], [a.detach().numpy() for a in arrays]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("T, B, I, H", [(1, 1, 2, 3), (5, 3, 4, 7), (4, 40, 6, 110)])
def test_matches_torch(backend, cell, T, B, I, H):
    p, g = problem(cell, T, B, I, H, np.float64, seed=7)
    ours = run(cell, backend, p, g)
    theirs = torch_run(cell, p, g)
    for name in OUTPUTS[cell]:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-9, atol=1e-10,
                                   err_msg=name)
