"""fastlstm.train(distributed="mpi") on 2 ranks (mpiexec, one machine) against
training in one process on the same global batches. Skipped where mpi4py or
mpiexec is missing (pip install ".[mpi]")."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import mpi_job

pytest.importorskip("mpi4py")
HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = next((p for p in (os.path.join(os.path.dirname(sys.executable), "mpiexec"),
                            shutil.which("mpiexec")) if p and os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")


def ranks(mode, folder, n=2, timeout=300):
    """Run mpi_job.py MODE on n ranks from an empty folder; the CompletedProcess
    and the seconds it took."""
    t0 = time.perf_counter()
    r = subprocess.run([MPIEXEC, "-n", str(n), sys.executable,
                        os.path.join(HERE, "mpi_job.py"), mode, str(folder)],
                       capture_output=True, text=True, cwd=folder, timeout=timeout,
                       env=dict(os.environ, FASTLSTM_ADAPTIVE_THREADS="0"))
    return r, time.perf_counter() - t0


def params(npz):
    return {k[len("param/"):]: npz[k] for k in npz.files if k.startswith("param/")}


@pytest.mark.parametrize("mode", ["series", "classes", "resume"])
def test_two_ranks_train_as_one_process(mode, tmp_path):
    """Masks, an uneven last batch that leaves a rank without rows, windows of
    truncated BPTT, validation; lengths and one label per row; resuming. The
    ranks end with identical weights, equal to one process's (float64, 1e-10), the
    same History, and one checkpoint writer."""
    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir(), single.mkdir()
    r, _ = ranks(mode, multi)
    assert r.returncode == 0, r.stderr[-3000:]
    rank0, rank1 = (np.load(multi / f"rank{k}.npz") for k in (0, 1))
    model, history = mpi_job.run(mode, None, str(single))
    one = params(np.load(single / "rank0.npz"))
    for name, w in params(rank0).items():
        np.testing.assert_array_equal(params(rank1)[name], w, err_msg=name)
        np.testing.assert_allclose(w, one[name], rtol=1e-10,
                                   atol=1e-10 * np.abs(one[name]).max(), err_msg=name)
    np.testing.assert_allclose(rank0["loss"], history.loss, rtol=1e-10)
    np.testing.assert_allclose(rank0["val_loss"], history.val_loss, rtol=1e-10)
    if mode == "classes":
        np.testing.assert_allclose(rank0["accuracy"], history.accuracy, rtol=1e-12)
    # four epochs, one save each (resume: 2 + the 2 after the checkpoint)
    assert int(rank1["saves"]) == 0 and int(rank0["saves"]) == 4
    saved = fastlstm_load(multi / "model.npz")
    for name, w in saved.params.items():
        np.testing.assert_array_equal(w, params(rank0)[name])


def fastlstm_load(path):
    import fastlstm
    return fastlstm.load(path)


@pytest.mark.parametrize("how", ["raise", "die"])
def test_a_failing_rank_ends_the_job(how, tmp_path):
    """A rank that raises, or is killed, at its third step: the job ends with an
    error within seconds, and the checkpoint of the last finished epoch stays
    good."""
    r, seconds = ranks(how, tmp_path, timeout=120)
    assert r.returncode != 0
    assert seconds < 60, seconds
    if how == "raise":
        assert "rank 1 fails on purpose" in r.stderr
    assert not (tmp_path / "rank0.npz").exists()
    path = tmp_path / "model.npz"
    if path.exists():   # the first epoch (4 steps) may have finished before
        fastlstm_load(path)


def test_the_command_on_two_ranks(tmp_path):
    """mpiexec -n 2 fastlstm train --distributed mpi: one rank speaks and saves."""
    out = tmp_path / "m.npz"
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "fastlstm", "train",
                        "--distributed", "mpi", "--epochs", "1", "--hidden", "16", "--quiet",
                        "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("fastlstm train: character-level") == 1
    assert "on each of 2 ranks" in r.stdout
    assert fastlstm_load(out).model.predict(np.zeros((1, 3), int)).shape == (1, 3, 33)
