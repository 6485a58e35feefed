"""The `fastlstm` command end to end, in subprocesses, on tiny budgets."""
import os
import subprocess
import sys

import pytest

import fastlstm


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastlstm", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    r = cli("train", "--epochs", "1", "--hidden", "8", "--embed", "4", "--quiet",
            "--out", "chars.npz", cwd=folder)
    return r, folder / "chars.npz"


def test_train_on_the_built_in_corpus(trained):
    r, path = trained
    assert r.returncode == 0, r.stderr
    assert "built-in corpus" in r.stdout and "completions:" in r.stdout
    assert "'tri'    -> 'tri" in r.stdout
    assert f"saved the model to {path}" in r.stdout
    assert isinstance(fastlstm.load(path), fastlstm.CharLM)


def test_complete_and_generate_with_a_saved_model(trained):
    _, path = trained
    r = cli("complete", "tri", "na", "--model", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("tri -> tri")
    r = cli("generate", "--model", str(path), "--prefix", "the ", "--length", "25",
            "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the ") and len(r.stdout.rstrip("\n")) == 29


def test_train_on_a_text_file_with_options(tmp_path):
    (tmp_path / "t.txt").write_text("the cat sat on the mat. " * 30, encoding="utf-8")
    r = cli("train", "--text", "t.txt", "--cell", "gru", "--layers", "2", "--hidden", "6",
            "--epochs", "2", "--seq-len", "16", "--batch-size", "4", "--lr", "0.02",
            "--clip", "1", "--backend", "numpy", "--threads", "1", "--out", "g.npz",
            "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "GRU (hidden 6, 2 layers)" in r.stdout and "backend numpy, 1 threads" in r.stdout
    model = fastlstm.load(tmp_path / "g.npz").model
    assert [type(layer).__name__ for layer in model.layers] == ["Embedding", "GRU", "Dense"]
    assert model.layers[1].num_layers == 2


def test_series_reports_the_naive_baseline(tmp_path):
    r = cli("series", "--length", "400", "--epochs", "2", "--hidden", "4", "--quiet",
            "--out", "s.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "naive last value" in r.stdout
    assert isinstance(fastlstm.load(tmp_path / "s.npz"), fastlstm.Model)


@pytest.mark.parametrize("args", [
    (),
    ("fly",),
    ("train", "--cell", "transformer"),
    ("train", "--hidden", "0"),
    ("train", "--epochs", "two"),
    ("train", "--text", "no-such-file.txt"),
    ("train", "--backend", "cuda"),
    ("complete", "tri"),
    ("complete", "tri", "--model", "no-such-model.npz"),
    ("complete", "tri", "--model", "not-a-model.npz"),
    ("generate", "--model", "series.npz"),
    ("generate", "--model", "chars.npz", "--temperature", "-1"),
    ("complete", "tri\u00e9", "--model", "chars.npz"),
    ("series", "--length", "10"),
])
def test_errors_are_one_line_with_exit_code_2(trained, tmp_path, args):
    _, chars = trained
    os.symlink(chars, tmp_path / "chars.npz")
    (tmp_path / "not-a-model.npz").write_bytes(b"\x00" * 100)
    fastlstm.save(fastlstm.Model.for_series(1, hidden_size=2), tmp_path / "series.npz")
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    if args:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("fastlstm: error: ")


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "fastlstm")
    if not os.path.exists(script):
        pytest.skip("fastlstm is not installed as a console script here (pip install .)")
    r = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"fastlstm {fastlstm.__version__}"
