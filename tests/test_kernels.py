"""Every compiled backend against the reference: one grid of cell x dtype x shape,
hypothesis-drawn shapes, thread counts, and caches crossing backends."""
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastlstm

from fastlstm import _cy, backends

from cells import COMPILED, GATES, assert_same, problem, run

DTYPES = [np.float64, np.float32]
# T=1, B=1, B odd (not divisible by the thread count), H not a multiple of 8, I != H;
# B*H large enough for the kernels to split the hidden units across threads; I wider
# than H padded to whole SIMD blocks (the backward's scratch is sized by both).
SHAPES = [(1, 1, 3, 5), (4, 1, 2, 9), (5, 3, 7, 13), (3, 7, 1, 4), (6, 33, 5, 70),
          (2, 64, 16, 130), (3, 4, 40, 5), (3, 5, 32, 32)]


def test_compiled_backends_are_available():
    """The package must ship both compiled backends, and the Cython kernels at
    every level this machine runs: a missing build step or a missing numba fails
    here rather than skipping the grid below."""
    assert fastlstm.available_backends() == ["numpy", "cython", "numba"]
    features = _cy.cpu_features()
    assert _cy.built_levels() == (list(_cy.LEVELS) if features.get("x86_64")
                                  else ["baseline"])
    runs = [level for level in _cy.LEVELS if not _cy.missing(level, features)]
    assert backends.cython_levels() == [f"cython:{level}" for level in runs]
    assert COMPILED == backends.cython_levels() + ["numba"]


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("T, B, I, H", SHAPES)
@pytest.mark.parametrize("dy", [True, False], ids=["dy", "dy=None"])
def test_kernel_equals_reference(backend, cell, dtype, T, B, I, H, dy):
    p, g = problem(cell, T, B, I, H, dtype, seed=T + B + H, dy=dy)
    assert_same(run(cell, "numpy", p, g), run(cell, backend, p, g), dtype)


def draw_lengths(T, B, seed):
    """Lengths (B,) in [1, T], unsorted, with 1 and T among them where B allows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, B)
    lengths[rng.permutation(B)[:2]] = [1, T][:B]
    return lengths


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("T, B, I, H", SHAPES + [(9, 17, 6, 37)])
def test_kernel_with_lengths_equals_reference(backend, cell, dtype, T, B, I, H):
    """Rows of their own lengths (unsorted, 1 and T among them): every output and
    gradient equals the reference's, on a batch the kernels split across threads."""
    p, g = problem(cell, T, B, I, H, dtype, seed=T * B + H)
    lengths = draw_lengths(T, B, seed=B)
    with fastlstm.threads(2):
        assert_same(run(cell, "numpy", p, g, lengths), run(cell, backend, p, g, lengths),
                    dtype)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
def test_inference_with_lengths_equals_training_forward(backend, cell):
    """cache=False (the windowed inference path, windows crossing the rows' ends)
    gives the outputs and final states of the training forward."""
    p, _ = problem(cell, 40, 64, 3, 128, np.float64, seed=2)   # windows of 8-21 steps
    lengths = draw_lengths(40, 64, seed=2)
    forward = getattr(fastlstm.ops, f"{cell}_forward")
    train = forward(**p, lengths=lengths, backend=backend)
    infer = forward(**p, lengths=lengths, backend=backend, cache=False)
    assert infer[-1] is None
    for a, b in zip(infer[:-1], train[:-1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", COMPILED + ["numpy"])
@pytest.mark.parametrize("cell", list(GATES))
def test_lengths_all_T_is_no_lengths(backend, cell):
    p, g = problem(cell, 4, 3, 2, 5, np.float64, seed=4)
    full = run(cell, backend, p, g, np.full(3, 4))
    none = run(cell, backend, p, g)
    for name in none:
        np.testing.assert_array_equal(full[name], none[name], err_msg=name)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
def test_zero_initial_state(backend, cell):
    p, g = problem(cell, 3, 2, 4, 6, zero_state=True)
    assert_same(run(cell, "numpy", p, g), run(cell, backend, p, g), np.float64)


@pytest.mark.parametrize("backend", COMPILED)
@settings(max_examples=25, deadline=None)
@given(cell=st.sampled_from(list(GATES)), dtype=st.sampled_from(DTYPES),
       T=st.integers(1, 6), B=st.integers(1, 9), I=st.integers(1, 8),
       H=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_kernel_equals_reference_drawn(backend, cell, dtype, T, B, I, H, seed):
    p, g = problem(cell, T, B, I, H, dtype, seed=seed)
    assert_same(run(cell, "numpy", p, g), run(cell, backend, p, g), dtype)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_results_do_not_depend_on_threads(backend, cell, n_threads):
    p, g = problem(cell, 4, 65, 8, 100, np.float64, seed=3)  # 3 threads split H
    with fastlstm.threads(1):
        one = run(cell, backend, p, g)
    with fastlstm.threads(n_threads):
        many = run(cell, backend, p, g)
    for name in one:  # the same up to rounding, relative to each array's scale
        scale = np.abs(one[name]).max()
        np.testing.assert_allclose(many[name], one[name], rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=name)


@pytest.mark.skipif(not backends.cython_levels(), reason="no Cython backend")
def test_cython_splits_by_the_threads_openmp_grants(python):
    """The time loops split the units by the team OpenMP grants, which can be
    smaller than the one asked for (OMP_THREAD_LIMIT, or a call from inside another
    parallel region). With a limit of 1, a 3-thread call of every cell still gives
    the reference's numbers. A fresh process: OpenMP reads the limit at start."""
    r = python(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        import fastlstm
        from cells import GATES, assert_same, problem, run
        for cell in GATES:
            p, g = problem(cell, 4, 65, 8, 100, np.float64, seed=3)
            with fastlstm.threads(3):
                assert_same(run(cell, "numpy", p, g), run(cell, "cython", p, g),
                            np.float64)
    """, OMP_THREAD_LIMIT="1")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("cell", list(GATES))
def test_caches_cross_backends(backend, cell):
    """Every backend's cache has one layout: any backward takes any forward's cache."""
    from fastlstm import ops
    p, g = problem(cell, 3, 4, 5, 6)
    ref = run(cell, "numpy", p, g)
    cache = getattr(ops, f"{cell}_forward")(**p, backend="numpy")[-1]
    grads = getattr(ops, f"{cell}_backward")(cache, **g, backend=backend)
    for name, got in zip(list(ref)[-len(grads):], grads):
        np.testing.assert_allclose(got, ref[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("backend", COMPILED)
def test_inputs_are_not_modified(backend):
    p, g = problem("lstm", 3, 4, 5, 6)
    before = {k: v.copy() for k, v in {**p, **g}.items()}
    run("lstm", backend, p, g)
    for k, v in {**p, **g}.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# T * B * G * H above the inference window (262144 elements of gates), so that the
# forward without a cache runs in several windows, the last one shorter
WINDOWED = [(1, 1, 3, 5), (5, 3, 7, 13), (700, 3, 2, 33), (40, 65, 3, 40)]


@pytest.mark.parametrize("backend", fastlstm.available_backends())
@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("T, B, I, H", WINDOWED)
def test_forward_without_cache_equals_reference(backend, cell, dtype, T, B, I, H):
    """cache=False keeps only a window of steps: the outputs and final states are
    the reference's (its forward with the cache)."""
    from fastlstm import ops
    p, _ = problem(cell, T, B, I, H, dtype, seed=T + H)
    # recurrent weights small enough that 700 steps are not chaotic, where
    # rounding differences would grow without bound
    p["Wh"] *= 0.1 / np.sqrt(H)
    forward = getattr(ops, f"{cell}_forward")
    want = forward(**p, backend="numpy")
    got = forward(**p, backend=backend, cache=False)
    assert got[-1] is None
    n = len(want) - 1
    assert_same(dict(zip(range(n), want[:n])), dict(zip(range(n), got[:n])), dtype)
