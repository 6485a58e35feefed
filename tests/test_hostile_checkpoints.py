"""Crafted checkpoints are refused with a ValueError naming what is wrong, before
anything large is allocated; valid ones of every kind still load (test_io)."""
import io
import json
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import fastlstm
from fastlstm.model import Model

# A refusal may allocate this much at most (tracemalloc counts NumPy's arrays).
MAX_ALLOCATED = 100 << 20


def _saved(tmp_path, model=None, train=False):
    """(meta, {member: array}) of a valid checkpoint of model."""
    model = model or Model.for_series(1, hidden_size=4, seed=1)
    state = None
    if train:
        state = dict(meta=dict(epoch=1, seed=0, optimizer=dict(name="adam", lr=1e-3),
                               history=dict(epoch=[1], loss=[1.0], best_epoch=[None])),
                     optim={"t": np.array(3), **{f"{s}/{k}": np.ones_like(p)
                                                   for k, p in model.params.items()
                                                   for s in "mv"}})
    fastlstm.io.save(model, tmp_path / "good.npz", state)
    with np.load(tmp_path / "good.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def _write(path, meta, arrays):
    np.savez(path, meta=np.array(meta if isinstance(meta, str) else json.dumps(meta)),
             **arrays)
    return path


def _npy(shape, descr="<f4", data=b""):
    """The bytes of a .npy member whose header declares shape and descr."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, dict(descr=descr, fortran_order=False,
                                                 shape=shape))
    return f.getvalue() + data


def _raw_zip(path, members):
    """A zip of (name, stored bytes, method, declared size, crc) members, written
    by hand so that its directory may say what it likes."""
    out, directory = bytearray(), bytearray()
    for name, data, method, size, crc in members:
        name = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc,
                           len(data), size, len(name), 0) + name + data
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0,
                                 0x21, crc, len(data), size, len(name), 0, 0, 0, 0, 0,
                                 offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                      len(directory), len(out), 0)
    path.write_bytes(bytes(out + directory + end))
    return path


def _inflating(n_bytes):
    """A raw deflate stream of n_bytes zeros (a multiple of 16 MiB), a few KB a GB:
    one compressed block of zeros, repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(16 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (n_bytes // (16 << 20)) + c.flush()


def _refused(path, match):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            fastlstm.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < MAX_ALLOCATED, f"{peak >> 20} MiB allocated to refuse {path.name}"


def test_a_model_far_wider_than_its_arrays_is_refused_unbuilt(tmp_path):
    """The meta declares 20,000 units (24 GB of model); the arrays are small."""
    meta, arrays = _saved(tmp_path)
    meta["model"]["layers"][0]["config"]["hidden_size"] = 20000
    meta["model"]["layers"][1]["config"]["in_size"] = 20000
    _refused(_write(tmp_path / "wide.npz", meta, arrays),
             r"param/0.0.Wx is float32 \(1, 16\), the model wants float32 \(1, 80000\)")


def test_a_header_declaring_more_than_the_member_holds(tmp_path):
    meta, arrays = _saved(tmp_path)
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as z:
        z.writestr("meta.npy", _npy((), "<U%d" % len(json.dumps(meta)),
                                    json.dumps(meta).encode("utf-32-le")))
        for k, a in arrays.items():
            data = _npy((10 ** 10,), data=bytes(16)) if k == "param/0.0.Wx" \
                else _npy(a.shape, a.dtype.str, a.tobytes())
            z.writestr(f"{k}.npy", data)
    _refused(tmp_path / "big.npz",
             "param/0.0.Wx: its header declares 40000000000 bytes of data, the file holds 16")


def test_a_header_that_matches_its_model_but_not_its_data(tmp_path):
    """Meta and header agree on 10^10 floats; the member holds 16 bytes."""
    meta, arrays = _saved(tmp_path)
    meta["model"]["layers"][0]["config"]["input_size"] = 10 ** 10 // 16
    text = json.dumps(meta)
    members = [("meta.npy", _npy((), f"<U{len(text)}", text.encode("utf-32-le")))]
    members += [(f"{k}.npy", _npy((10 ** 10 // 16, 16), data=bytes(16))
                 if k == "param/0.0.Wx" else _npy(a.shape, a.dtype.str, a.tobytes()))
                for k, a in arrays.items()]
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as z:
        for name, data in members:
            z.writestr(name, data)
    _refused(tmp_path / "short.npz", "param/0.0.Wx: its header declares 40000000000 bytes")


@pytest.mark.parametrize("lie", ["directory", "stream"])
def test_a_zip_bomb_is_refused_before_it_inflates(tmp_path, lie):
    """A member of a few KB that inflates to 3 GB: its directory says so, and is
    refused, or says the header's small size, and reading stops there."""
    meta, arrays = _saved(tmp_path)
    text = json.dumps(meta)
    members = [("meta.npy", _npy((), f"<U{len(text)}", text.encode("utf-32-le")))]
    for k, a in arrays.items():
        data = _npy(a.shape, a.dtype.str, a.tobytes())
        members.append((f"{k}.npy", data, 0, len(data), zlib.crc32(data)))
    members[0] = members[0] + (0, len(members[0][1]), zlib.crc32(members[0][1]))
    header = _npy(arrays["param/0.0.Wx"].shape)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = bomb.compress(header) + bomb.flush(zlib.Z_FULL_FLUSH)
    stream += _inflating(3 << 30)
    size = len(header) + (3 << 30) if lie == "directory" \
        else len(header) + arrays["param/0.0.Wx"].nbytes
    members = [m if m[0] != "param/0.0.Wx.npy" else
               ("param/0.0.Wx.npy", stream, zipfile.ZIP_DEFLATED, size, 0)
               for m in members]
    _refused(_raw_zip(tmp_path / "bomb.npz", members),
             "inflates from" if lie == "directory" else "not a readable")


def test_a_legal_model_that_is_mostly_air_is_refused(tmp_path):
    """Meta, header and directory agree on a 2.8 GB matrix; it is zeros, compressed
    1000 to 1 (a zip bomb dressed as a model)."""
    meta, arrays = _saved(tmp_path)
    H = 13312   # Wh: 2.8 GB, a whole number of _inflating's blocks
    meta["model"]["layers"] = [dict(type="LSTM", config=dict(
        input_size=1, hidden_size=H, num_layers=1, bidirectional=False, dropout=0.0,
        batch_first=False))]
    meta["model"]["loss"] = "mse"
    text = json.dumps(meta)
    members = [("meta.npy", _npy((), f"<U{len(text)}", text.encode("utf-32-le")))]
    for k, shape in [("0.0.Wx", (1, 4 * H)), ("0.0.b", (4 * H,))]:
        members.append((f"param/{k}.npy", _npy(shape, data=bytes(4 * 4 * H))))
    members = [(n, d, 0, len(d), zlib.crc32(d)) for n, d in members]
    header = _npy((H, 4 * H))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH) + _inflating(16 * H * H)
    members.append(("param/0.0.Wh.npy", stream, zipfile.ZIP_DEFLATED,
                    len(header) + 16 * H * H, 0))
    _refused(_raw_zip(tmp_path / "air.npz", members), "param/0.0.Wh inflates from")


def test_over_max_bytes_is_refused_and_a_larger_bound_lets_it_load(tmp_path):
    model = Model.for_series(1, hidden_size=64, seed=1)
    fastlstm.save(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="more than max_bytes = 1000"):
        fastlstm.load(tmp_path / "m.npz", max_bytes=1000)
    fastlstm.load(tmp_path / "m.npz", max_bytes=10 ** 6)


def _edit(tmp_path, name, meta_edit=None, arrays_edit=None, train=False):
    meta, arrays = _saved(tmp_path, train=train)
    if meta_edit:
        meta_edit(meta)
    if arrays_edit:
        arrays_edit(arrays)
    return _write(tmp_path / f"{name}.npz", meta, arrays)


def _set(d, keys, value):
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


BAD_META = {
    "unknown layer": (("model", "layers", 0, "type"), "Exec", "layer 0 is not a layer"),
    "extra config key": (("model", "layers", 0, "config", "cmd"), "rm -rf",
                         "layer 0 \\(LSTM\\):.*cmd"),
    "negative size": (("model", "layers", 0, "config", "hidden_size"), -4,
                      "hidden_size: expected an int >= 1"),
    "float size": (("model", "layers", 0, "config", "hidden_size"), 4.5,
                   "hidden_size: expected an int"),
    "string size": (("model", "layers", 0, "config", "num_layers"), "2",
                    "num_layers: expected an int"),
    "int dtype": (("model", "dtype"), "int8", "dtype is 'int8'"),
    "unknown loss": (("model", "loss"), "exec", "loss: expected one of"),
    "layers not a list": (("model", "layers"), {"0": 1}, "no layers"),
    "broken chain": (("model", "layers", 1, "config", "in_size"), 5,
                     "a Dense that reads 5 features follows a LSTM that gives 4"),
    "unknown kind": (("kind",), "trojan", "holds a 'trojan'"),
    "version 0": (("version",), 0, "version 0"),
    "version as text": (("version",), "2", "version '2'"),
    "NaN scaling": (("kind",), "forecaster", "its forecaster is not sound"),
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_edited_meta_is_refused(tmp_path, case):
    keys, value, match = BAD_META[case]
    edit = lambda meta: _set(meta, keys, value)  # noqa: E731
    if case == "NaN scaling":
        edit = lambda meta: meta.update(  # noqa: E731
            kind="forecaster", extra=dict(transform="diff", mean=float("nan"), std=1.0))
    _refused(_edit(tmp_path, case.replace(" ", "_"), meta_edit=edit), match)


BAD_TRAIN = {
    "unknown optimizer": (("train", "optimizer", "name"), "evil", "no known optimizer"),
    "negative epoch": (("train", "epoch"), -1, "epoch -1"),
    "history of text": (("train", "history", "loss"), ["a"], "history is not lists"),
    "history of two lengths": (("train", "history", "loss"), [1.0, 2.0],
                               "history is not lists"),
    "best epoch not run": (("train", "history", "best_epoch"), [7], "did not run"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_an_edited_training_state_is_refused(tmp_path, case):
    keys, value, match = BAD_TRAIN[case]
    _refused(_edit(tmp_path, case.replace(" ", "_"), train=True,
                   meta_edit=lambda meta: _set(meta, keys, value)), match)


def _put(name, value):
    return lambda arrays: arrays.__setitem__(name, value)


BAD_ARRAYS = {
    "int64 parameter": (_put("param/0.0.Wh", np.zeros((4, 16), np.int64)),
                        "param/0.0.Wh is int64"),
    "float64 parameter": (_put("param/0.0.Wh", np.zeros((4, 16))), "param/0.0.Wh is float64"),
    "NaN parameter": (_put("param/0.0.Wh", np.full((4, 16), np.nan, np.float32)),
                      "param/0.0.Wh holds NaN or inf"),
    "inf parameter": (_put("param/1.b", np.full(1, np.inf, np.float32)),
                      "param/1.b holds NaN or inf"),
    "unnamed member": (_put("payload", np.zeros(3)), "holds 'payload'"),
    "missing parameter": (lambda arrays: arrays.pop("param/0.0.Wh"), "lacks parameter 0.0.Wh"),
    "structured dtype": (_put("param/1.b", np.zeros(1, [("a", "<f4")])), "not plain numbers"),
    "optimizer state without training": (_put("optim/t", np.array(3)), "holds 'optim/t'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_edited_arrays_are_refused(tmp_path, case):
    edit, match = BAD_ARRAYS[case]
    _refused(_edit(tmp_path, case.replace(" ", "_"), arrays_edit=edit), match)


BAD_TRAIN_ARRAYS = {
    "float counter": (_put("optim/t", np.array(3.0)), "optim/t is float64 \\(\\), expected one"),
    "negative counter": (_put("optim/t", np.array(-3)), "optim/t is negative"),
    "slot of another shape": (_put("optim/m/0.0.Wh", np.zeros((2, 2), np.float32)),
                              "optim/m/0.0.Wh is float32 \\(2, 2\\)"),
    "slot SGD lacks": (_put("optim/q/0.0.Wh", np.zeros((4, 16), np.float32)),
                       "holds 'optim/q/0.0.Wh'"),
    "some last weights": (_put("last/0.0.Wh", np.zeros((4, 16), np.float32)),
                          "last epoch's weights of some parameters only"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_ARRAYS))
def test_edited_training_arrays_are_refused(tmp_path, case):
    edit, match = BAD_TRAIN_ARRAYS[case]
    _refused(_edit(tmp_path, case.replace(" ", "_"), train=True, arrays_edit=edit), match)


def test_an_object_array_is_refused_and_never_unpickled(tmp_path):
    meta, arrays = _saved(tmp_path)
    arrays["param/1.b"] = np.array([print], dtype=object)
    _write(tmp_path / "pickle.npz", meta, arrays)
    _refused(tmp_path / "pickle.npz", "param/1.b has dtype object")


@pytest.mark.parametrize("meta, match", [
    ("[" * 100000 + "]" * 100000, "not JSON"),
    ("not json", "not JSON"),
    ("[1, 2]", "no format"),
    ('{"format": "fastlstm", "version": 2, "kind": "model", "model": NaN}', "no layers"),
])
def test_a_meta_that_is_not_a_fastlstm_meta_is_refused(tmp_path, meta, match):
    _, arrays = _saved(tmp_path)
    _refused(_write(tmp_path / "meta.npz", meta, arrays), match)


def test_a_meta_past_its_bound_is_refused_unread(tmp_path):
    _, arrays = _saved(tmp_path)
    _refused(_write(tmp_path / "long.npz", " " * (1 << 22), arrays),
             "its meta takes .* bytes, more than")


def test_members_not_npy_and_other_archives_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as z:
        z.writestr("meta.npy", _npy((), "<U1", "x".encode("utf-32-le")))
        z.writestr("run.sh", b"echo")
    _refused(tmp_path / "zip.npz", "it holds 'run.sh'")
    with zipfile.ZipFile(tmp_path / "npy.npz", "w") as z:
        z.writestr("meta.npy", b"\x93NUMPY\x09\x00garbage")
    _refused(tmp_path / "npy.npz", "meta: .npy format \\(9, 0\\) is not one NumPy writes")


@pytest.mark.parametrize("seed", range(8))
def test_flipped_bytes_and_cuts_give_a_value_error_or_a_sound_model(tmp_path, seed):
    """Random damage to a valid resumable file: refused with a ValueError, or (where
    the damage fell on bytes nothing reads) loaded whole."""
    model = Model.for_tokens(5, hidden_size=3, embed_size=2, seed=1)
    meta, arrays = _saved(tmp_path, model, train=True)
    data = bytearray((tmp_path / "good.npz").read_bytes())
    rng = np.random.default_rng(seed)
    for trial in range(40):
        damaged = bytearray(data)
        if trial % 4 == 0:
            damaged = damaged[:rng.integers(0, len(damaged))]
        else:
            for at in rng.integers(0, len(damaged), rng.integers(1, 4)):
                damaged[at] ^= 1 << rng.integers(0, 8)
        path = tmp_path / "damaged.npz"
        path.write_bytes(bytes(damaged))
        try:
            loaded = fastlstm.load(path)
        except ValueError:
            continue
        assert all(np.isfinite(p).all() for p in loaded.params.values())
        loaded.predict(np.zeros((1, 3), np.int64))


def test_resume_and_the_command_refuse_the_same_files(tmp_path, python):
    meta, arrays = _saved(tmp_path, train=True)
    arrays["optim/m/0.0.Wh"] = np.full((4, 16), np.nan, np.float32)
    path = _write(tmp_path / "nan-moments.npz", meta, arrays)
    model = Model.for_series(1, hidden_size=4, seed=1)
    X = np.zeros((2, 5, 1))
    with pytest.raises(ValueError, match="optim/m/0.0.Wh holds NaN or inf"):
        fastlstm.train(model, X, X, epochs=2, checkpoint=path, resume=True, progress=False)
    r = python(f"""
        import sys
        from fastlstm.cli import main
        sys.exit(main(["forecast", "--model", {str(path)!r}, "--csv", "x.csv",
                       "--column", "y"]))
    """)
    assert r.returncode == 2 and r.stderr.startswith("fastlstm: error: ")
    assert "optim/m/0.0.Wh holds NaN or inf" in r.stderr and "Traceback" not in r.stderr
