"""The `fastlstm` command end to end, in subprocesses, on tiny budgets."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
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


def test_the_saved_model_is_the_epoch_of_the_lowest_validation_loss(tmp_path):
    """The run validates on the last 10% of the corpus and says which epoch it
    saved; that model, evaluated afresh on that text, has the loss it printed,
    the lowest of the run."""
    r = cli("train", "--epochs", "3", "--hidden", "8", "--embed", "4", "--seq-len", "16",
            "--quiet", "--out", "m.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the last 10% held out to validate on" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "the model saved is" in x)
    epoch, printed = re.search(r"epoch (\d+)'s: the lowest validation loss, ([\d.]+)",
                               line).groups()
    lm = fastlstm.load(tmp_path / "m.npz")
    _, state = fastlstm.io.load_checkpoint(tmp_path / "m.npz")
    history = fastlstm.History.from_dict(state["meta"]["history"])
    assert history.epoch == [1, 2, 3] and history.best_epoch[-1] == int(epoch)
    assert min(history.val_loss) == history.val_loss[int(epoch) - 1]
    _, _, (VX, VY) = fastlstm.data.next_step_data(
        lm.vocab.encode(fastlstm.data.corpus()), 4 * 16, validation_split=0.1)
    loss, _ = lm.model.evaluate(VX.T, VY.T)
    assert loss == pytest.approx(float(printed), abs=1e-4)
    assert "val ppl" in r.stdout


def test_without_validation_the_saved_model_is_the_epoch_of_the_lowest_loss(tmp_path):
    r = cli("train", "--epochs", "2", "--hidden", "8", "--embed", "4", "--val", "0",
            "--quiet", "--out", "m.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "held out" not in r.stdout and " val " not in r.stdout
    assert "the model saved is epoch 2's: the lowest training loss" in r.stdout


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
    assert isinstance(fastlstm.load(tmp_path / "s.npz"), fastlstm.Forecaster)


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
    ("series", "--csv", "prices.csv"),
    ("series", "--csv", "prices.csv", "--column", "volume"),
    ("series", "--csv", "bad.csv", "--column", "close"),
    ("series", "--column", "close"),
    ("train", "--out", "no-such-folder/m.npz"),
    ("train", "--out", "."),
    ("train", "--plot", "no-such-folder/loss.png"),
    ("train", "--text", "short.txt"),
    ("train", "--val", "1"),
    ("train", "--val", "-0.1"),
    ("train", "--text", "tiny.txt", "--seq-len", "8"),
    ("series", "--length", "120", "--val", "0.01"),
    ("train", "--resume", "--out", "series.npz"),
    ("series", "--metrics", "no-such-folder/m.json"),
    ("forecast", "--model", "chars.npz", "--csv", "prices.csv", "--column", "close"),
    ("train", "--hidden", "99999999999"),
    ("series", "--csv", "latin.csv", "--column", "close"),
])
def test_errors_are_one_line_with_exit_code_2(trained, tmp_path, args):
    _, chars = trained
    os.symlink(chars, tmp_path / "chars.npz")
    (tmp_path / "not-a-model.npz").write_bytes(b"\x00" * 100)
    fastlstm.save(fastlstm.Model.for_series(1, hidden_size=2), tmp_path / "series.npz")
    (tmp_path / "prices.csv").write_text("date,close\n" + "".join(
        f"2026-01-{d:02d},{100 + d}\n" for d in range(1, 29)))
    (tmp_path / "bad.csv").write_text("date,close\n2026-01-01,100\n2026-01-02,ten\n")
    (tmp_path / "latin.csv").write_bytes(b"date,close\n2026-01-01,100\xff\n")
    (tmp_path / "short.txt").write_text("ab")
    (tmp_path / "tiny.txt").write_text("abcdefghij")
    start = time.perf_counter()
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    if args:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("fastlstm: error: ")
        # refused before any training: nothing trained, nothing written
        assert "epoch" not in r.stdout and time.perf_counter() - start < 30
        assert not (tmp_path / "fastlstm-chars.npz").exists()
        assert not (tmp_path / "fastlstm-series.npz").exists()


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "fastlstm")
    if not os.path.exists(script):
        pytest.skip("fastlstm is not installed as a console script here (pip install .)")
    r = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"fastlstm {fastlstm.__version__}"


def prices_csv(path, n=400, seed=0):
    """A CSV of dates, a text column and prices from 0.07 up to about 84 (a
    geometric random walk), with two missing values."""
    rng = np.random.default_rng(seed)
    price = 0.07 * np.exp(np.cumsum(np.full(n, np.log(1200) / n)
                                    + 0.02 * rng.standard_normal(n)))
    lines = ["date,ticker,close"]
    for t, p in enumerate(price):
        cell = "" if t in (50, 51) else f"{p:.6f}"
        lines.append(f"2026-{t:04d},ABC,{cell}")
    path.write_text("\n".join(lines) + "\n")
    return np.delete(price, [50, 51])


def test_series_from_a_csv_with_metrics_and_forecast(tmp_path):
    prices = prices_csv(tmp_path / "p.csv")
    assert prices.min() < 0.1 and prices.max() > 50
    r = cli("series", "--csv", "p.csv", "--column", "close", "--epochs", "3", "--hidden",
            "8", "--seq-len", "20", "--quiet", "--metrics", "m.json", "--out", "fc.npz",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 missing left out" in r.stdout and "log steps" in r.stdout
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["n_test"] == len(prices) - int(0.8 * len(prices))
    assert report["naive_mse"] == pytest.approx(
        np.mean(np.diff(prices[int(0.8 * len(prices)) - 1:]) ** 2))
    assert report["mse"] > 0 and report["ratio"] == pytest.approx(
        report["mse"] / report["naive_mse"])
    r = cli("forecast", "--model", "fc.npz", "--csv", "p.csv", "--column", "close",
            "--steps", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    values = [float(v) for v in r.stdout.split()]
    want = fastlstm.load(tmp_path / "fc.npz").forecast(prices, 4)
    np.testing.assert_allclose(values, want, rtol=1e-5)


def test_read_series_takes_one_column_and_skips_missing_values(tmp_path):
    (tmp_path / "a.csv").write_text("day, value ,note\n1,1.5,up\n2,,x\n3,NaN,y\n"
                                    "4,-2e3,z\n5,null\n")
    values, missing = fastlstm.data.read_series(tmp_path / "a.csv", "value")
    np.testing.assert_array_equal(values, [1.5, -2000.0])
    assert missing == 3
    (tmp_path / "one.csv").write_text("close\n3\n4\n")
    assert fastlstm.data.read_series(tmp_path / "one.csv", "close")[0].tolist() == [3, 4]
    with pytest.raises(ValueError, match="no column 'close'; its columns are 'day', "
                                         "'value', 'note'"):
        fastlstm.data.read_series(tmp_path / "a.csv", "close")
    (tmp_path / "b.csv").write_text("v\n1\nabc\n")
    with pytest.raises(ValueError, match="line 3, column 'v': 'abc' is not a number"):
        fastlstm.data.read_series(tmp_path / "b.csv", "v")


def train_args(out, epochs):
    return ("train", "--epochs", str(epochs), "--hidden", "24", "--embed", "8",
            "--seq-len", "32", "--batch-size", "16", "--quiet", "--threads", "1",
            "--out", out)


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """SIGKILL once the first epoch's checkpoint is there; --resume goes on from the
    checkpoint (whichever epoch it holds) and ends where a straight run ends."""
    r = cli(*train_args("straight.npz", 3), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "fastlstm", *train_args("ck.npz", 3)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "ck.npz").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    epoch = int(fastlstm.io.load_checkpoint(tmp_path / "ck.npz")[1]["meta"]["epoch"])
    assert epoch in (1, 2)
    r = cli(*train_args("ck.npz", 3), "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming from ck.npz after epoch {epoch} of 3" in r.stdout
    straight = fastlstm.load(tmp_path / "straight.npz").model.params
    resumed = fastlstm.load(tmp_path / "ck.npz").model.params
    for k, w in straight.items():
        np.testing.assert_array_equal(resumed[k], w, err_msg=k)


def test_ctrl_c_keeps_the_last_finished_epoch(tmp_path):
    # 2000 epochs of about 50 ms, so that the run cannot end before the signal. The
    # run starts with SIGINT at its default: a shell that starts pytest in the
    # background without job control makes it ignored, and Python keeps it so.
    proc = subprocess.Popen([sys.executable, "-m", "fastlstm", *train_args("ck.npz", 2000)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (tmp_path / "ck.npz").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == ("fastlstm: interrupted; ck.npz holds the best finished epoch "
                           "(--resume goes on from the last)")
    assert isinstance(fastlstm.load(tmp_path / "ck.npz"), fastlstm.CharLM)


def test_a_checkpoint_from_charlm_fit_completes_on_the_command_line(tmp_path):
    text = fastlstm.data.corpus()[:3000]
    lm = fastlstm.CharLM.create(text, hidden_size=8, embed_size=4, seed=0)
    lm.fit(text, epochs=1, batch_size=8, seq_len=16, checkpoint=tmp_path / "lm.npz",
           progress=False)
    r = cli("complete", "tri", "--model", "lm.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"tri -> tri{fastlstm.load(tmp_path / 'lm.npz').complete('tri')}"


def test_progress_in_a_log_file_is_a_line_per_epoch(tmp_path):
    (tmp_path / "t.txt").write_text("the cat sat on the mat. " * 30, encoding="utf-8")
    r = cli("train", "--text", "t.txt", "--hidden", "6", "--epochs", "2", "--seq-len", "16",
            "--out", "m.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = r.stderr.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1"], ["epoch", "2"]]
    assert all(" val " in line and line.endswith(f"({k}/2)")
               for k, line in enumerate(lines, start=1))
