"""Thread control: the BLAS limits around the kernels reach every BLAS they call."""
import pytest


def test_kernels_limit_scipys_blas_even_when_numba_loads_it_late(python):
    """Numba loads scipy's BLAS when it first compiles, inside the first kernel call.
    threadpoolctl limits only the libraries loaded when it looks, so the limit the
    kernels run under must be taken after that load; otherwise that BLAS runs
    threaded inside the kernels' threads (bench/RESULTS.md: 35x slower at 2
    threads). A fresh process, so that nothing has loaded scipy before."""
    pytest.importorskip("numba")
    r = python("""
        import sys
        import numpy as np
        import fastlstm
        from threadpoolctl import ThreadpoolController
        assert "scipy.linalg.cython_blas" not in sys.modules
        x = np.ones((2, 1, 3), np.float32)
        W = np.full((3, 12), 0.1, np.float32)
        fastlstm.ops.lstm_forward(x, W, W, np.zeros(12, np.float32), backend="numba")
        loaded = {lib.filepath for lib in
                  ThreadpoolController().select(user_api="blas").lib_controllers}
        limited = {lib.filepath for lib in fastlstm._threads._blas_libraries}
        assert any("scipy" in path for path in loaded), loaded
        assert loaded <= limited, loaded - limited
    """)
    assert r.returncode == 0, r.stderr
