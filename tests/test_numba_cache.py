"""The Numba kernels' disk cache follows every file of their package: an edited
callee in another file recompiles its cached callers (Numba alone checks a
function's own file only, and served the callers' stale code)."""
import textwrap

import pytest

pytest.importorskip("numba")

RUN = """
    import sys
    sys.path.insert(0, {root!r})
    from pkg.caller import g
    print(g())
"""


def _package(root, whole):
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(f"""
        import os
        if {whole!r}:
            from fastlstm._numba.jit import stamp_folder
            stamp_folder(os.path.dirname(os.path.abspath(__file__)))
    """))
    (pkg / "callee.py").write_text("from numba import njit\n\n\n@njit\ndef f():\n    return 1\n")
    (pkg / "caller.py").write_text(textwrap.dedent("""
        from numba import njit
        from .callee import f


        @njit(cache=True)
        def g():
            return f()
    """))
    return pkg


@pytest.mark.parametrize("whole", [True, False])
def test_an_edited_callee_recompiles_its_cached_caller(tmp_path, python, whole):
    """With the package stamped whole, the second run sees the edit; without (what
    Numba does alone), it serves the cached caller's stale answer: the control
    that shows the test can tell the two apart."""
    pkg = _package(tmp_path, whole)
    first = python(RUN.format(root=str(tmp_path)))
    assert first.returncode == 0 and first.stdout.split() == ["1"], first.stderr
    (pkg / "callee.py").write_text((pkg / "callee.py").read_text().replace("return 1",
                                                                           "return 2"))
    second = python(RUN.format(root=str(tmp_path)))
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == (["2"] if whole else ["1"])


def test_the_kernels_stamp_is_their_package():
    import os

    import fastlstm._numba as kernels
    from fastlstm._numba.jit import HERE, source_stamp
    assert HERE == os.path.dirname(os.path.abspath(kernels.__file__))
    assert len(source_stamp(HERE)) == 64


SHARED = """
    import numpy as np
    from fastlstm import reference
    from fastlstm._numba import rnn, rnn_forward
    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((3, 2, 16)), rng.standard_normal((2, 16))
    Wx, Wh, b = rng.standard_normal((16, 16)), rng.standard_normal((16, 16)), np.zeros(16)
    y = rnn_forward(x, Wx, Wh, b, h0)[0]
    want = reference.rnn_forward(x, Wx, Wh, b, h0)[0]
    print(np.abs(y - want).max() < 1e-12, sum(rnn.forward.stats.cache_hits.values()))
"""


def test_kernels_calling_the_shared_panel_kernel_load_from_the_cache(tmp_path, python):
    """The kernels call the panel kernel by name (fastlstm/_numba/symbols.py); a
    fresh process that loads them from the disk cache must define that name
    before LLVM links them, or LLVM aborts the process. Run twice on one empty
    cache: compiled, then loaded, the same numbers as the reference's."""
    env = dict(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first, second = python(SHARED, **env), python(SHARED, **env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.split()[0] == second.stdout.split()[0] == "True"
    assert first.stdout.split()[1] == "0" and second.stdout.split()[1] != "0"


HAMMER = """
    import sys, time
    from fastlstm._numba import jit
    stamp = jit.source_stamp(jit.HERE) if sys.argv[2] == "ours" else "another package"
    cache = jit._standard("IndexDataCacheFile")(cache_path=sys.argv[1], filename_base="f",
                                                source_stamp=stamp)
    while time.time() < float(sys.argv[3]):
        pass
    for i in range(300):
        cache.save((sys.argv[4], i), b"data")
"""


def test_two_processes_saving_entries_of_one_function_lose_none(tmp_path):
    """The kernels' cache saves hold a lock (jit.py): two processes saving 300
    entries each into one function's index at once keep all 600, each with its
    own data file. (Numba's save alone reads the index, adds its entry and writes
    it back: run as "another package", unlocked, the same loses entries.)"""
    import pickle
    import subprocess
    import sys
    import textwrap
    import time
    start = str(time.time() + 2)
    runs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(HAMMER), str(tmp_path),
                              "ours", start, who], cwd=tmp_path) for who in "ab"]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    with open(tmp_path / "f.nbi", "rb") as f:
        pickle.load(f)
        _, entries = pickle.loads(f.read())
    assert sorted(entries) == sorted((who, i) for who in "ab" for i in range(300))
    assert len(set(entries.values())) == 600
