"""The reference (the spec) against central finite differences, float64, for every
input, parameter and initial state of every cell."""
import numpy as np
import pytest

from fastlstm import reference as R
from fastlstm.cells import CELLS

from cells import problem, GATES
from gradcheck import assert_grad


def loss_and_grads(cell, p, g):
    """L = <y, dy> + <hT, dhT> (+ <cT, dcT>) and its gradients from the reference."""
    fwd = getattr(R, f"{cell}_forward")(**p)
    L = np.sum(fwd[0] * g["dy"]) + np.sum(fwd[1] * g["dhT"])
    if cell == "lstm":
        L += np.sum(fwd[2] * g["dcT"])
    grads = getattr(R, f"{cell}_backward")(fwd[-1], **g)
    return L, grads


@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("T, B, I, H", [(3, 2, 3, 4), (1, 1, 2, 3)])
def test_reference_matches_finite_differences(cell, T, B, I, H):
    p, g = problem(cell, T, B, I, H, np.float64, seed=T * 10 + H)
    _, grads = loss_and_grads(cell, p, g)
    # the backward's outputs, in order, are the gradients of the forward's arguments
    for name, analytic in zip(CELLS[cell].forward_args, grads):
        assert_grad(analytic, lambda: loss_and_grads(cell, p, g)[0], p[name], name)


def test_lstm_reference_follows_the_equations_on_one_step():
    """One step, one unit, by hand: c = f*c0 + i*g, h = o*tanh(c)."""
    x = np.array([[[0.5]]])
    Wx = np.array([[0.1, 0.2, 0.3, 0.4]])
    Wh = np.array([[-0.1, 0.05, 0.2, -0.3]])
    b = np.array([0.0, 1.0, 0.0, -1.0])
    h0, c0 = np.array([[0.7]]), np.array([[-0.2]])
    a = x[0, 0, 0] * Wx[0] + h0[0, 0] * Wh[0] + b
    sig = lambda v: 1 / (1 + np.exp(-v))
    c = sig(a[1]) * c0[0, 0] + sig(a[0]) * np.tanh(a[2])
    h = sig(a[3]) * np.tanh(c)
    y, hT, cT, _ = R.lstm_forward(x, Wx, Wh, b, h0, c0)
    np.testing.assert_allclose([y[0, 0, 0], hT[0, 0], cT[0, 0]], [h, h, c], rtol=1e-15)


@pytest.mark.parametrize("cell", list(GATES))
def test_reference_with_lengths_matches_finite_differences(cell):
    """Rows of lengths 3, 1, 4 (unsorted) in T = 4: the gradient of every argument,
    dy past a row's end included (it must count for nothing)."""
    p, g = problem(cell, 4, 3, 3, 4, np.float64, seed=5)
    lengths = np.array([3, 1, 4])

    def loss_and_grads_l(p):
        fwd = getattr(R, f"{cell}_forward")(**p, lengths=lengths)
        L = np.sum(fwd[0] * g["dy"]) + np.sum(fwd[1] * g["dhT"])
        if cell == "lstm":
            L += np.sum(fwd[2] * g["dcT"])
        return L, getattr(R, f"{cell}_backward")(fwd[-1], **g)
    _, grads = loss_and_grads_l(p)
    for name, analytic in zip(CELLS[cell].forward_args, grads):
        assert_grad(analytic, lambda: loss_and_grads_l(p)[0], p[name], name)


@pytest.mark.parametrize("cell", list(GATES))
def test_reference_with_lengths_is_each_row_run_alone(cell):
    """A row of length L gives the outputs and final state of that row run for L
    steps alone, and zeros after."""
    p, _ = problem(cell, 5, 3, 2, 4, np.float64, seed=6)
    lengths = np.array([2, 5, 1])
    forward = getattr(R, f"{cell}_forward")
    out = forward(**p, lengths=lengths)
    for b, L in enumerate(lengths):
        row = {k: (v[:L, b:b + 1] if k == "x" else v[b:b + 1] if k.endswith("0") else v)
               for k, v in p.items()}
        alone = forward(**row)
        np.testing.assert_allclose(out[0][:L, b], alone[0][:, 0], rtol=1e-12, atol=1e-14)
        assert not out[0][L:, b].any()
        for final, want in zip(out[1:-1], alone[1:-1]):
            np.testing.assert_allclose(final[b], want[0], rtol=1e-12, atol=1e-14)
