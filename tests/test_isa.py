"""The choice of the kernels' instruction-set level (fastlstm._cy): the rule on
made-up CPUs, this machine's CPUID against Linux's own reading of it, the
FASTLSTM_ISA override, and, where qemu-user is installed, the same wheel run as
CPUs without AVX and without AVX-512."""
import os
import platform
import shutil
import subprocess
import sys

import pytest

from fastlstm import _cy

ALL = {f: True for level in _cy.LEVELS for f in _cy.REQUIRES[level]} | {"x86_64": True}
LINUX_NAMES = {"lahf": "lahf_lm", "lzcnt": "abm", "sse3": "pni", "bmi1": "bmi1",
               "sse4_1": "sse4_1", "sse4_2": "sse4_2", "avx512_bf16": "avx512_bf16"}
QEMU = shutil.which("qemu-x86_64")


def lacking(*names):
    return dict(ALL, **{n: False for n in names})


@pytest.mark.parametrize("features, level", [
    (ALL, "avx512"),
    (lacking("os_zmm"), "avx2"),             # AVX-512 CPU, OS does not save zmm
    (lacking("avx512bw"), "avx2"),
    (lacking("fma"), "baseline"),
    (lacking("os_ymm", "os_zmm"), "baseline"),
    (lacking("movbe", "avx512vl"), "baseline"),
    ({}, "baseline"),                         # not x86-64, or no detector
])
def test_the_best_level_the_features_allow(features, level):
    chosen, why = _cy.choose(list(_cy.LEVELS), features)
    assert chosen == level
    if level != "avx512" and features:
        assert "not avx512: lacks" in why


def test_only_built_levels_are_chosen():
    assert _cy.choose(["baseline", "avx2"], ALL)[0] == "avx2"
    assert _cy.choose([], ALL) == (None, "no compiled kernels are built")


@pytest.mark.parametrize("forced, features, built, message", [
    ("avx512", lacking("avx512f"), _cy.LEVELS, "cannot run it: it lacks avx512f"),
    ("avx2", {}, _cy.LEVELS, "lacks an x86-64 CPU"),
    ("avx512", ALL, ("baseline",), "has no avx512 kernels"),
    ("sse9", ALL, _cy.LEVELS, "expected one of baseline, avx2, avx512"),
])
def test_a_forced_level_this_machine_cannot_run_is_a_clear_error(forced, features, built,
                                                                  message):
    with pytest.raises(RuntimeError, match=message):
        _cy.choose(list(built), features, forced)
    assert _cy.choose(list(built), ALL | {"x86_64": True}, "baseline")[0] == "baseline"


def linux_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                    reason="reads Linux's /proc/cpuinfo of an x86-64 CPU")
def test_cpuid_agrees_with_linux_and_the_best_level_is_chosen():
    """Linux reads CPUID too, and hides what the OS does not enable: each feature
    the levels need reads the same here, and the level chosen is the best of
    those the flags allow (unless FASTLSTM_ISA forces one)."""
    flags, features = linux_flags(), _cy.cpu_features()
    for name in set(ALL) - {"x86_64", "os_ymm", "os_zmm", "osxsave"}:
        assert features[name] == (LINUX_NAMES.get(name, name) in flags), name
    best = "baseline"
    for level in _cy.LEVELS[1:]:
        if all(LINUX_NAMES.get(f, f) in flags for f in _cy.REQUIRES[level]
               if f not in ("os_ymm", "os_zmm", "osxsave")):
            best = level
    if os.environ.get(_cy.ENV):
        pytest.skip(f"{_cy.ENV} is set")
    assert _cy.level() == best


CHECK = """
import numpy as np
import fastlstm
from fastlstm import _cy, ops
rng = np.random.default_rng(0)
x = rng.standard_normal((5, 3, 4))
Wx, Wh, b = rng.standard_normal((4, 4 * 9)), rng.standard_normal((9, 4 * 9)), rng.standard_normal(36)
want = ops.lstm_forward(x, Wx, Wh, b, backend="numpy")[0]
got = ops.lstm_forward(x, Wx, Wh, b, backend="cython")[0]
assert np.abs(got - want).max() < 1e-12 * np.abs(want).max()
print(_cy.level())
"""


@pytest.mark.parametrize("level", _cy.supported_levels())
def test_fastlstm_isa_forces_each_level_this_machine_runs(python, level):
    r = python(CHECK, FASTLSTM_ISA=level)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [level]


def test_fastlstm_isa_naming_no_level_fails_at_import(python):
    r = python("import fastlstm", FASTLSTM_ISA="avx1024")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "RuntimeError: FASTLSTM_ISA='avx1024': expected one of baseline, avx2, avx512")


def test_a_cython_level_backend_is_named_and_checked(monkeypatch):
    from fastlstm import backends
    with pytest.raises(ValueError, match=r"cython:LEVEL, LEVEL one of baseline, avx2"):
        backends.get_backend("cython:sse9")
    # a machine without AVX-512 asked for the avx512 kernels
    monkeypatch.setattr(_cy, "_FEATURES", lacking("avx512f"))
    monkeypatch.setattr(backends, "_errors", {})
    monkeypatch.setattr(backends, "_loaded", {})
    with pytest.raises(ValueError, match="'cython:avx512' is not available: the avx512 "
                                         "kernels cannot run here: this machine lacks "
                                         "avx512f"):
        backends.get_backend("cython:avx512")


def test_show_config_says_the_level_and_why(python):
    r = python("import fastlstm; c = fastlstm.show_config(); print(c['level'])")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == _cy.level() and lines[0].startswith("fastlstm ")
    assert f"kernels: {_cy.level()}: " in r.stdout


def numpy_dispatch():
    """NumPy's run-time dispatched CPU features (its AVX2 and AVX-512 loops)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:   # NumPy 1
        from numpy.core._multiarray_umath import __cpu_dispatch__
    return " ".join(__cpu_dispatch__)


def qemu(cpu, script, **env):
    """script run by this Python as qemu emulates cpu. NumPy keeps to its baseline
    loops there: under qemu 7.2 as a Haswell, its AVX2 float64 loops gave the
    reference LSTM wrong numbers (rows 1-3 of T=1, B=4, I=1, H=1), where our
    kernels gave the numbers they give natively, as did NumPy without those loops."""
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=numpy_dispatch(), **env)
    return subprocess.run([QEMU, "-cpu", cpu, sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=600, cwd=os.sep, env=env)


@pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                    reason="needs qemu-user (qemu-x86_64) on an x86-64 machine")
@pytest.mark.parametrize("cpu, level", [("Nehalem", "baseline"), ("Haswell", "avx2")])
def test_under_qemu_an_older_cpu_gets_its_level_and_the_same_numbers(cpu, level):
    """qemu emulates the CPU, CPUID included: a Nehalem has no AVX, a Haswell no
    AVX-512 (and qemu none at all): code of a level above would die of SIGILL."""
    r = qemu(cpu, CHECK)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [level]
    r = qemu(cpu, "import fastlstm", FASTLSTM_ISA="avx512")
    assert r.returncode == 1 and "this machine cannot run it: it lacks" in r.stderr
