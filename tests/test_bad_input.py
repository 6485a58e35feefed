"""Bad input gets a ValueError/TypeError naming the argument; odd layouts are copied."""
import numpy as np
import pytest

import fastlstm
from fastlstm import ops

from cells import problem, run

BACKENDS = fastlstm.available_backends()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, shape, wanted", [
    ("x", (3, 4), r"x: expected shape \(T, B, I\)"),
    ("Wx", (5, 20), r"Wx: expected shape \(I, 4H\) = \(6, 28\), got \(5, 20\)"),
    ("Wh", (7, 27), r"Wh: expected shape \(H, 4H\) = \(7, 28\), got \(7, 27\)"),
    ("b", (27,), r"b: expected shape \(4H,\)"),
    ("h0", (4, 7), r"h0: expected shape \(B, H\) = \(2, 7\), got \(4, 7\)"),
    ("c0", (2, 6), r"c0: expected shape \(B, H\)"),
])
def test_wrong_shape_names_the_argument(backend, name, shape, wanted):
    p, _ = problem("lstm", 3, 2, 6, 7)
    p[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=wanted):
        ops.lstm_forward(**p, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_dtypes(backend):
    p, _ = problem("rnn", 3, 2, 4, 5)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        ops.rnn_forward(**{**p, "x": np.ones((3, 2, 4), dtype=np.int64)}, backend=backend)
    with pytest.raises(TypeError, match=r"Wh: expected dtype float64 \(the dtype of x\)"):
        ops.rnn_forward(**{**p, "Wh": p["Wh"].astype(np.float32)}, backend=backend)
    with pytest.raises(TypeError, match=r"Wx: expected dtype float64 \(the dtype of x\), got object"):
        ops.rnn_forward(**{**p, "Wx": object()}, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lengths, error, wanted", [
    ([3, 0], ValueError, r"lengths: expected 1 <= lengths\[b\] <= T = 3, got lengths\[1\] = 0"),
    ([4, 1], ValueError, r"lengths\[0\] = 4"),
    ([-1, 2], ValueError, r"lengths\[0\] = -1"),
    ([3, 2, 1], ValueError, r"lengths: expected shape \(B,\) = \(2,\), got \(3,\)"),
    ([[3, 2]], ValueError, r"expected shape \(B,\) = \(2,\), got \(1, 2\)"),
    ([2.0, 3.0], TypeError, "lengths: expected an int array of shape \\(B,\\) = \\(2,\\), got dtype float64"),
    ([True, True], TypeError, "got dtype bool"),
])
def test_bad_lengths(backend, lengths, error, wanted):
    p, _ = problem("lstm", 3, 2, 4, 5)
    with pytest.raises(error, match=wanted):
        ops.lstm_forward(**p, lengths=lengths, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_and_empty(backend):
    p, _ = problem("gru", 3, 2, 4, 5)
    bad = p["x"].copy()
    bad[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN or inf"):
        ops.gru_forward(**{**p, "x": bad}, backend=backend)
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        ops.gru_forward(**{**p, "x": np.zeros((0, 2, 4))}, backend=backend)
    with pytest.raises(ValueError, match=r"dy: expected shape \(T, B, H\)"):
        cache = ops.gru_forward(**p, backend=backend)[-1]
        ops.gru_backward(cache, dy=np.zeros((3, 2, 4)), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_caches(backend):
    p, g = problem("lstm", 3, 2, 4, 5)
    cache = ops.lstm_forward(**p, backend=backend)[-1]
    with pytest.raises(TypeError, match="cache: expected the cache returned by lstm_forward"):
        ops.lstm_backward({"x": 1}, **g, backend=backend)
    with pytest.raises(TypeError, match="cache"):
        ops.lstm_backward(ops.rnn_forward(p["x"], p["Wx"][:, :5], p["Wh"][:, :5],
                                          p["b"][:5])[-1], **g, backend=backend)
    broken = dict(cache, gates=cache["gates"][:, :, :-1].copy())
    with pytest.raises(ValueError, match=r"cache\['gates'\]: expected a C-contiguous"):
        ops.lstm_backward(broken, **g, backend=backend)


def test_unknown_backend(monkeypatch):
    p, _ = problem("rnn", 2, 2, 2, 2)
    with pytest.raises(ValueError, match="backend: expected one of"):
        ops.rnn_forward(**p, backend="cuda")
    monkeypatch.setenv("FASTLSTM_BACKEND", "nope")
    with pytest.raises(ValueError, match="FASTLSTM_BACKEND='nope'"):
        ops.rnn_forward(**p)
    monkeypatch.setenv("FASTLSTM_BACKEND", "numpy")
    assert fastlstm.backends.get_backend("auto").name == "numpy"


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs_are_copied(backend):
    p, g = problem("lstm", 4, 3, 5, 6)
    expected = run("lstm", backend, p, g)
    odd = {k: (np.asfortranarray(v) if v.ndim == 2 else v) for k, v in p.items()}
    odd["x"] = np.ascontiguousarray(p["x"].transpose(1, 0, 2)).transpose(1, 0, 2)
    odd["b"] = np.repeat(p["b"], 2)[::2]
    assert not odd["x"].flags.c_contiguous and not odd["b"].flags.c_contiguous
    got = run("lstm", backend, odd, g)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_thread_settings_are_checked_and_restored():
    before = fastlstm.get_num_threads()
    with pytest.raises(ValueError, match="n_threads: expected >= 1, got 0"):
        fastlstm.set_num_threads(0)
    with pytest.raises(TypeError, match="n_threads: expected an int"):
        fastlstm.set_num_threads(1.5)
    with fastlstm.threads(1):
        assert fastlstm.get_num_threads() == 1
    assert fastlstm.get_num_threads() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 17, 65536 * 3 + 5])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_finite_check_agrees_with_numpy(dtype, n, n_threads):
    """ops' finiteness check (compiled where built) against np.isfinite: one odd
    value at the start, the middle or the end (a vector loop's tail), in arrays
    below and above the size where it goes parallel."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(n)
    values = [np.nan, np.inf, -np.inf, info.max, -info.max, info.smallest_subnormal]
    with fastlstm.threads(n_threads):
        for where in sorted({0, n // 2, n - 1}):
            for value in values:
                a = rng.standard_normal(n).astype(dtype)
                a[where] = value
                assert ops.all_finite(a) == bool(np.isfinite(a).all()), (where, value)
            assert ops.all_finite(rng.standard_normal(n).astype(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_backward_is_true_to_the_forward_when_the_caller_writes_its_inputs(backend, cell):
    """The caller writes into x, the weights and the initial state between forward
    and backward: the gradients are still those of the forward that ran."""
    p, g = problem(cell, 3, 2, 4, 5)
    forward = getattr(ops, f"{cell}_forward")
    backward = getattr(ops, f"{cell}_backward")
    want = backward(forward(**{k: v.copy() for k, v in p.items()}, backend=backend)[-1], **g,
                    backend=backend)
    cache = forward(**p, backend=backend)[-1]
    for v in p.values():
        v[...] = 7.0
    got = backward(cache, **g, backend=backend)
    for w, a in zip(want, got):
        np.testing.assert_array_equal(a, w)


def test_a_layer_backward_is_true_to_its_forward_when_the_caller_writes_its_inputs():
    layer = fastlstm.LSTM(3, 4, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    state = tuple(np.random.default_rng(1).standard_normal((1, 2, 4)) for _ in range(2))
    dy = np.ones((5, 2, 4))
    want = layer.forward(x.copy(), tuple(s.copy() for s in state))[2](dy)
    want_grads = {k: g.copy() for k, g in layer.grads.items()}
    _, _, backprop = layer.forward(x, state)
    x[...] = 9.0
    for s in state:
        s[...] = 9.0
    got = backprop(dy)
    np.testing.assert_array_equal(got[0], want[0])
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, want_grads[k], err_msg=k)
    for a, w in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, w)
