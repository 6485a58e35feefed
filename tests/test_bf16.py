"""precision="bf16" (docs/DESIGN.md, "bf16"): the rounding against closed forms and
torch; every level of the Cython kernels, on each bf16 kernel this machine runs
(emulated everywhere, native where the CPU has AVX512_BF16), against the NumPy
reference's bf16 step; the reference's gradients against finite differences at
bf16's tolerance; the choice of the bf16 kernel; the API around it."""
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastlstm
from fastlstm import _cy, backends, ops
from fastlstm.reference import round_bf16

from cells import OUTPUTS, problem
from gradcheck import numeric_grad

# bf16 keeps 8 significant bits: rounding to nearest is off by at most 2^-8 of a
# number (its unit roundoff).
UNIT = 2.0 ** -8
LEVELS = backends.cython_levels()
NATIVE = _cy.bf16_kernel("avx512")[0] == "native" if "cython:avx512" in LEVELS else False
KERNELS = ["emulated"] + (["native"] if NATIVE else [])


def bf16_kernel_of(level):
    return "native" if level == "cython:avx512" and NATIVE else "emulated"


@pytest.mark.parametrize("value, rounded", [
    (1.0, 1.0),
    (1 + 2.0 ** -8, 1.0),                        # a tie: to the even neighbour, 1
    (1 + 3 * 2.0 ** -8, 1 + 2.0 ** -6),          # a tie: to the even 1 + 2^-6
    (1 + 2.0 ** -8 + 2.0 ** -20, 1 + 2.0 ** -7),  # past the tie: up
    (-(1 + 2.0 ** -9), -1.0),
    (3.4e38, np.inf),                            # past bf16's largest: to infinity
    (2.0 ** -130, 2.0 ** -130),                  # a subnormal bf16 holds
])
def test_round_bf16_closed_forms(value, rounded):
    assert round_bf16(np.float32(value)) == np.float32(rounded)


def test_round_bf16_within_its_unit_and_with_8_bits():
    a = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 1e3
    r = round_bf16(a)
    assert (r.view(np.uint32) & 0xFFFF == 0).all()
    assert (np.abs(r - a) <= UNIT * np.abs(a)).all()


def test_round_bf16_as_torch_converts():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(1).standard_normal(10000).astype(np.float32) * 10.0 ** \
        np.random.default_rng(2).integers(-30, 30, 10000)
    expected = torch.from_numpy(a).to(torch.bfloat16).to(torch.float32).numpy()
    assert_array_equal(round_bf16(a), expected)


def run_bf16(cell, backend, p, grads, lengths):
    fwd = getattr(ops, f"{cell}_forward")(**p, lengths=lengths, backend=backend,
                                          precision="bf16")
    bwd = getattr(ops, f"{cell}_backward")(fwd[-1], **grads, backend=backend)
    return dict(zip(OUTPUTS[cell], list(fwd[:-1]) + list(bwd)))


def reference_runs(cell, shape, lengths, seed=0):
    p, grads = problem(cell, *shape, dtype=np.float32, seed=seed)
    expected = run_bf16(cell, "numpy", p, grads, lengths)
    full = getattr(ops, f"{cell}_forward")(**p, lengths=lengths, backend="numpy")
    full = dict(zip(OUTPUTS[cell], list(full[:-1]) + list(getattr(
        ops, f"{cell}_backward")(full[-1], **grads, backend="numpy"))))
    return p, grads, expected, full


def assert_bf16_close(expected, actual, full):
    """actual equals the bf16 reference expected: the fp32 sums differ in their
    order only, but where one moves a number across a bf16 rounding boundary that
    operand moves by a bf16 unit; so the largest difference may be a few units
    of bf16 (4 * UNIT of the array's scale), the typical one is fp32's (its median
    1e-5 of the scale). full, the fp32 result, must be further off: the rounding
    happened."""
    for name in expected:
        e, a, f = expected[name], actual[name], full[name]
        assert a.dtype == np.float32 and a.shape == e.shape, name
        scale = max(np.abs(e).max(), 1e-30)
        assert np.abs(a - e).max() <= 4 * UNIT * scale, name
        assert np.median(np.abs(a - e)) <= 1e-5 * scale, name
        assert np.median(np.abs(f - e)) > 10 * np.median(np.abs(a - e)), name


SHAPES = [(5, 3, 7, 9), (4, 16, 33, 64), (3, 6, 32, 48)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", LEVELS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_kernels_equal_the_bf16_reference(cell, backend, kernel, monkeypatch):
    if kernel == "native" and bf16_kernel_of(backend) != "native":
        pytest.skip(f"{backend} has no native bf16 kernel")
    monkeypatch.setenv("FASTLSTM_BF16", kernel)
    for i, shape in enumerate(SHAPES):
        T, B = shape[:2]
        for lengths in (None, np.random.default_rng(i).integers(1, T + 1, B)):
            p, grads, expected, full = reference_runs(cell, shape, lengths, seed=i)
            assert_bf16_close(expected, run_bf16(cell, backend, p, grads, lengths), full)


@pytest.mark.skipif(not NATIVE, reason="this CPU has no AVX512_BF16")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_native_kernel_equals_the_emulated_bit_for_bit(cell, monkeypatch):
    """Both add the same exact products in the same order; only a subnormal,
    which vdpbf16ps flushes, could tell them apart, and there is none here."""
    p, grads = problem(cell, 6, 10, 40, 96, dtype=np.float32)
    runs = []
    for kernel in ("native", "emulated"):
        monkeypatch.setenv("FASTLSTM_BF16", kernel)
        runs.append(run_bf16(cell, "cython:avx512", p, grads, None))
    for name in runs[0]:
        assert_array_equal(runs[0][name], runs[1][name], err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bf16_gradients_against_finite_differences(cell):
    """The bf16 backward is the gradient of the fp32 cell with every product's
    operands off by at most a bf16 unit each: against central differences of the
    float64 cell it holds to a few units of bf16 of the gradient's scale."""
    p, grads = problem(cell, 3, 2, 3, 4, dtype=np.float64, seed=3)
    dy = grads["dy"]
    p32 = {k: None if v is None else v.astype(np.float32) for k, v in p.items()}
    fwd = getattr(ops, f"{cell}_forward")(**p32, backend="numpy", precision="bf16")
    analytic = getattr(ops, f"{cell}_backward")(fwd[-1], dy.astype(np.float32),
                                                backend="numpy")
    names = OUTPUTS[cell][len(fwd) - 1:]

    def loss():
        y = getattr(ops, f"{cell}_forward")(**p, backend="numpy", cache=False)[0]
        return float((y * dy).sum())

    for name, a in zip(names, analytic):
        key = name[1:]
        if key not in p:
            continue
        numeric = numeric_grad(loss, p[key])
        scale = np.abs(numeric).max()
        assert np.abs(a - numeric).max() <= 8 * UNIT * scale, name


def test_the_bf16_kernel_follows_the_cpu(monkeypatch):
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":")[1].split() for line in f if line.startswith("flags")),
                     [])
    if "cython:avx512" in LEVELS:
        assert (_cy.bf16_kernel("avx512")[0] == "native") == ("avx512_bf16" in flags)
    assert _cy.bf16_kernel("avx2")[0] == "emulated"
    monkeypatch.setitem(_cy._FEATURES, "avx512_bf16", False)
    kernel, why = _cy.bf16_kernel("avx512")
    assert kernel == "emulated" and "avx512_bf16" in why
    monkeypatch.setenv("FASTLSTM_BF16", "native")
    with pytest.raises(RuntimeError, match="cannot run it: it lacks avx512_bf16"):
        _cy.bf16_kernel("avx512")
    monkeypatch.setenv("FASTLSTM_BF16", "fast")
    with pytest.raises(RuntimeError, match="expected native or emulated"):
        _cy.bf16_kernel("avx512")


def test_emulated_bf16_warns_once(monkeypatch):
    monkeypatch.setenv("FASTLSTM_BF16", "emulated")
    monkeypatch.setattr(ops, "_warned_emulated", [])
    with pytest.warns(RuntimeWarning, match="runs emulated"):
        ops.check_precision("bf16", np.float32, "cython")
    ops.check_precision("bf16", np.float32, "cython")
    assert len(ops._warned_emulated) == 1


def test_bad_precisions_are_clear_errors():
    p, _ = problem("lstm", 2, 2, 3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match="needs float32"):
        ops.lstm_forward(**p, precision="bf16")
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    for bad in ("fp16", "BF16", 16, True):
        with pytest.raises(ValueError, match="expected None or 'bf16'"):
            ops.lstm_forward(**p32, precision=bad)
    if "numba" in backends.available_backends():
        with pytest.raises(ValueError, match="numba backend has no bf16 kernels"):
            ops.lstm_forward(**p32, precision="bf16", backend="numba")
    model = fastlstm.Model.for_tokens(10, hidden_size=8, dtype=np.float64)
    with pytest.raises(ValueError, match="needs float32"):
        model.precision = "bf16"


@pytest.mark.skipif("numba" not in backends.available_backends(), reason="no numba")
def test_a_numba_model_refuses_bf16_when_it_is_set(tmp_path):
    """Refused where it is asked for, not at the first forward after."""
    model = fastlstm.Model.for_tokens(10, hidden_size=8, backend="numba")
    with pytest.raises(ValueError, match="numba backend has no bf16 kernels"):
        model.precision = "bf16"
    assert model.precision is None
    with pytest.raises(ValueError, match="numba backend has no bf16 kernels"):
        fastlstm.train(model, np.zeros((2, 4), np.int64), np.zeros((2, 4), np.int64),
                       epochs=1, precision="bf16", progress=False)
    out = subprocess.run(
        [sys.executable, "-m", "fastlstm", "train", "--epochs", "1", "--hidden", "16",
         "--backend", "numba", "--precision", "bf16"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 2
    assert "numba backend has no bf16 kernels" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("backend", ["numpy"] + LEVELS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_bf16_backward_is_true_to_its_forward_when_the_caller_writes_its_inputs(
        backend, cell):
    """In bf16 the cache holds x, Wx and Wh rounded, apart from the caller's."""
    p, g = problem(cell, 3, 2, 4, 5, dtype=np.float32)
    forward = getattr(ops, f"{cell}_forward")
    backward = getattr(ops, f"{cell}_backward")
    want = backward(forward(**{k: v.copy() for k, v in p.items()}, backend=backend,
                            precision="bf16")[-1], **g, backend=backend)
    cache = forward(**p, backend=backend, precision="bf16")[-1]
    for v in p.values():
        v[...] = 7.0
    got = backward(cache, **g, backend=backend)
    for w, a in zip(want, got):
        assert_array_equal(a, w)


def test_train_predict_and_stepper_in_bf16():
    """A model trained in bf16 learns as in fp32; predict and the stepper run in
    the model's precision and agree with each other."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 12, (32, 20))
    Y = np.roll(X, -1, axis=1)
    losses = {}
    for precision in (None, "bf16"):
        model = fastlstm.Model.for_tokens(12, hidden_size=32, embed_size=8)
        history = fastlstm.train(model, X, Y, epochs=3, batch_size=8, progress=False,
                                 precision=precision)
        losses[precision] = history.loss[-1]
        assert model.precision == precision
    assert abs(losses["bf16"] - losses[None]) <= 0.02 * losses[None]
    out = model.predict(X[:2, :5])
    stepper = model.stepper(batch_size=2)
    steps = np.stack([stepper.step(X[:2, t]) for t in range(5)], axis=1)
    assert_allclose(steps, out, rtol=4 * UNIT, atol=4 * UNIT * np.abs(out).max())
    model.precision = None
    assert np.abs(model.predict(X[:2, :5]) - out).max() > 0


def test_the_command_trains_in_bf16(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fastlstm", "train", "--epochs", "1", "--hidden", "16",
         "--precision", "bf16", "--out", str(tmp_path / "m.npz"), "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env=dict(os.environ, FASTLSTM_BF16="emulated"))
    assert out.returncode == 0, out.stderr
    assert "bf16" in out.stdout


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", ["numpy"] + LEVELS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_step_kernels_equal_the_bf16_forward(cell, backend, kernel, monkeypatch):
    """The serving path: weights packed once in bf16, one step on them, as one
    step of the bf16 reference forward."""
    if kernel == "native" and bf16_kernel_of(backend) != "native":
        pytest.skip(f"{backend} has no native bf16 kernel")
    monkeypatch.setenv("FASTLSTM_BF16", kernel)
    p, _ = problem(cell, 1, 3, 37, 40, dtype=np.float32, seed=5)
    expected = getattr(ops, f"{cell}_forward")(**p, backend="numpy", precision="bf16")
    k = backends.get_backend(backend)
    biases = [p[b] for b in ("bx", "bh")] if cell == "gru" else [p["b"]]
    weights = getattr(k, f"{cell}_step_weights")(p["Wx"], p["Wh"], *biases,
                                                 precision="bf16")
    h, h_next = p["h0"].copy(), np.empty_like(p["h0"])
    if cell == "lstm":
        c = p["c0"].copy()
        k.lstm_step(weights, p["x"][0], h, c, h_next)
        assert_allclose(c, expected[2], rtol=0, atol=4 * UNIT * np.abs(expected[2]).max())
    else:
        getattr(k, f"{cell}_step")(weights, p["x"][0], h, h_next)
    assert_allclose(h_next, expected[0][0], rtol=0,
                    atol=4 * UNIT * np.abs(expected[0]).max())
    full = getattr(ops, f"{cell}_forward")(**p, backend="numpy")[0][0]
    assert np.abs(h_next - expected[0][0]).max() < np.abs(full - expected[0][0]).max()
