"""Checkpoints: round trips, atomic writes, and clear errors on bad files."""
import json

import numpy as np
import pytest

import fastlstm
from fastlstm.model import Model


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_then_load_predicts_the_same(tmp_path, cell, dtype):
    model = Model.for_tokens(7, cell=cell, hidden_size=5, num_layers=2, embed_size=3,
                             seed=1, dtype=dtype)
    X = np.random.default_rng(0).integers(0, 7, (3, 6))
    path = tmp_path / "m.npz"
    fastlstm.save(model, path)
    loaded = fastlstm.load(path)
    assert repr(loaded) == repr(model) and loaded.dtype == dtype
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_series_model_round_trip(tmp_path):
    model = Model.for_series(2, n_outputs=1, hidden_size=4, seed=2)
    X = np.random.default_rng(0).standard_normal((2, 5, 2))
    fastlstm.save(model, tmp_path / "s.npz")
    np.testing.assert_array_equal(fastlstm.load(tmp_path / "s.npz").predict(X),
                                  model.predict(X))


def test_char_model_round_trip(tmp_path):
    lm = fastlstm.CharLM.create("abc cab\n", hidden_size=6, seed=3)
    fastlstm.save(lm, tmp_path / "c.npz")
    loaded = fastlstm.load(tmp_path / "c.npz")
    assert isinstance(loaded, fastlstm.CharLM) and loaded.vocab.chars == lm.vocab.chars
    assert loaded.generate("ab", 20, seed=1) == lm.generate("ab", 20, seed=1)


def test_the_format_is_as_documented(tmp_path):
    model = Model.for_series(1, hidden_size=2)
    fastlstm.save(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        assert meta["format"] == "fastlstm" and meta["version"] == 2
        assert [l["type"] for l in meta["model"]["layers"]] == ["LSTM", "Dense"]
        assert sorted(f.files) == sorted(["meta"] + [f"param/{k}" for k in model.params])


def test_a_killed_save_leaves_the_old_checkpoint_intact(tmp_path, python):
    """The process dies (os._exit, no cleanup) halfway through writing."""
    path = tmp_path / "m.npz"
    fastlstm.save(Model.for_series(1, hidden_size=2), path)
    before = path.read_bytes()
    r = python(f"""
        import os, numpy as np, fastlstm
        from fastlstm.model import Model
        real = np.lib.format.write_array
        calls = []
        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os._exit(9)
            return real(*args, **kwargs)
        np.lib.format.write_array = dying
        fastlstm.save(Model.for_series(1, hidden_size=50, seed=5), {str(path)!r})
    """)
    assert r.returncode == 9, r.stderr
    assert path.read_bytes() == before
    fastlstm.load(path)


def test_a_failed_save_removes_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        fastlstm.save(Model.for_series(1, hidden_size=2), path)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_foreign_and_future_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.npz"
    fastlstm.save(Model.for_series(1, hidden_size=2), good)
    data = good.read_bytes()

    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps(dict(meta, version=99)))
    np.savez(tmp_path / "future.npz", **arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["param/0.0.Wx"] = np.zeros((3, 3), np.float32)
    np.savez(tmp_path / "shape.npz", **arrays)

    for name, match in [("cut", "not a readable fastlstm checkpoint"),
                        ("text", "not a readable fastlstm checkpoint"),
                        ("foreign", "not a fastlstm checkpoint"),
                        ("future", "format 99"),
                        ("shape", r"param/0.0.Wx is float32 \(3, 3\), the model wants")]:
        with pytest.raises(ValueError, match=match):
            fastlstm.load(tmp_path / f"{name}.npz")
    with pytest.raises(FileNotFoundError):
        fastlstm.load(tmp_path / "missing.npz")


def test_charlm_fit_checkpoints_the_charlm_and_resumes(tmp_path):
    """The checkpoint that fit writes holds the vocabulary: it loads as a CharLM,
    and resuming from it goes on where the run stopped."""
    text = "abc cab bac " * 20
    path = tmp_path / "lm.npz"
    straight = fastlstm.CharLM.create(text, hidden_size=6, embed_size=3, seed=3)
    straight.fit(text, epochs=3, batch_size=2, seq_len=8, progress=False)
    first = fastlstm.CharLM.create(text, hidden_size=6, embed_size=3, seed=3)
    first.fit(text, epochs=2, batch_size=2, seq_len=8, checkpoint=path, progress=False)
    loaded = fastlstm.load(path)
    assert isinstance(loaded, fastlstm.CharLM) and loaded.vocab.chars == first.vocab.chars
    resumed = fastlstm.CharLM.create(text, hidden_size=6, embed_size=3, seed=4)
    h = resumed.fit(text, epochs=3, batch_size=2, seq_len=8, checkpoint=path, resume=True,
                    progress=False)
    assert h.epoch == [1, 2, 3]
    for k, w in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], w, err_msg=k)
    other = fastlstm.CharLM.create("xyz " * 40, hidden_size=6, embed_size=3, seed=3)
    with pytest.raises(ValueError, match="vocabulary"):
        other.fit("xyz " * 40, epochs=3, batch_size=2, seq_len=8, checkpoint=path,
                  resume=True, progress=False)


def test_a_version_1_char_model_still_loads(tmp_path):
    lm = fastlstm.CharLM.create("abc cab\n", hidden_size=4, seed=3)
    fastlstm.save(lm, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta = dict(meta, version=1, vocab=meta.pop("extra")["vocab"])
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "v1.npz", **arrays)
    loaded = fastlstm.load(tmp_path / "v1.npz")
    assert isinstance(loaded, fastlstm.CharLM) and loaded.vocab.chars == lm.vocab.chars


def test_checkpoints_take_the_umask_mode(tmp_path, python):
    """Not mkstemp's 0600: the mode any new file gets (a fresh process, so that the
    umask set there is its own)."""
    r = python(f"""
        import os, stat, fastlstm
        from fastlstm.model import Model
        for mask in (0o022, 0o077, 0o002):
            os.umask(mask)
            path = os.path.join({str(tmp_path)!r}, f"m{{mask:o}}.npz")
            fastlstm.save(Model.for_series(1, hidden_size=2), path)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask, oct(mask)
    """)
    assert r.returncode == 0, r.stderr
