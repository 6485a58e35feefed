"""Every entry point, fed what hypothesis draws: it works, or raises one of the
library's documented errors (ValueError, TypeError; OSError for files; the CLI
returns 2 with a one-line message). Nothing else escapes, nothing crashes or
hangs. A fixed example budget keeps the suite's time."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import fastlstm
from fastlstm import cli, ops
from fastlstm.data import read_series
from fastlstm.model import Model

DOCUMENTED = (ValueError, TypeError)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
# The compiled backends a fuzz example may run on: Numba compiles per signature,
# and what it compiles is tried with the same checks in test_kernels.
BACKENDS = ["numpy", "cython"]

ODD_NUMBERS = [0, -1, 2.5, float("nan"), float("inf"), True, None, "2", 10 ** 12,
               np.float32(0.5)]


def _documented(call, *args, **kwargs):
    """call(...) or one of the documented errors; anything else fails the test."""
    try:
        out = call(*args, **kwargs)
    except DOCUMENTED as exc:
        event(type(exc).__name__)
        return None
    event("works")
    return out


@st.composite
def arrays(draw, shape, dtype):
    """An array of shape and dtype, maybe a strided or Fortran-order view; one time
    in three it is wrong in one way: a size off, a dimension short, another dtype,
    NaN or inf inside, a nested list, or None."""
    shape = list(shape)
    flaw = draw(st.integers(0, 17))
    if flaw == 0 and shape:
        k = draw(st.integers(0, len(shape) - 1))
        shape[k] += 1
    elif flaw == 1:
        shape = shape[:-1] if shape else [2]
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.complex64, bool,
                                  object])) if flaw == 2 else dtype
    values = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(
        [n * 2 for n in shape]) * 0.5
    a = np.asarray(values[tuple(slice(None, None, 2) for _ in shape)] if draw(st.booleans())
                   else values[tuple(slice(0, n) for n in shape)])
    if draw(st.booleans()) and a.ndim >= 2:
        a = np.asfortranarray(a)
    a = a.astype(dtype)
    if flaw == 3 and a.size:
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    return a.tolist() if flaw == 4 else None if flaw == 5 else a


@st.composite
def lengths(draw, T, B):
    """None, valid lengths of an int dtype, or (one time in three) wrong ones."""
    flaw = draw(st.integers(0, 5))
    if flaw == 0:
        return draw(st.lists(st.integers(-1, T + 1), min_size=0, max_size=B + 1))
    if flaw == 1:
        return np.full(B, 1.5)
    if flaw == 2:
        return None
    return np.asarray(draw(st.lists(st.integers(1, max(T, 1)), min_size=B, max_size=B)),
                      dtype=draw(st.sampled_from([np.int32, np.int64, np.uint8])))


def _kwargs(draw, valid, hostile):
    """Keyword arguments: each of valid's names left out or given a value valid
    draws; at most two of them given a value of hostile's instead."""
    bad = draw(st.sets(st.sampled_from(sorted(hostile)), max_size=2))
    kw = {}
    for name in sorted(valid):
        if name in bad:
            kw[name] = draw(st.sampled_from(hostile[name]))
        elif draw(st.booleans()):
            kw[name] = draw(st.sampled_from(valid[name]))
    return kw


@FUZZ
@given(st.data())
def test_ops(data):
    cell = data.draw(st.sampled_from(["rnn", "lstm", "gru"]))
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    T, B, I, H = (data.draw(st.sampled_from([1, 2, 3, 4] * 4 + [0])) for _ in range(4))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    args = dict(x=data.draw(arrays((T, B, I), dtype)), Wx=data.draw(arrays((I, G * H), dtype)),
                Wh=data.draw(arrays((H, G * H), dtype)))
    biases = ("bx", "bh") if cell == "gru" else ("b",)
    args.update({b: data.draw(arrays((G * H,), dtype)) for b in biases})
    states = ("h0", "c0") if cell == "lstm" else ("h0",)
    args.update({s: data.draw(arrays((B, H), dtype)) for s in states})
    backend = data.draw(st.sampled_from(BACKENDS))
    out = _documented(getattr(ops, f"{cell}_forward"), **args,
                      lengths=data.draw(lengths(T, B)), backend=backend,
                      cache=data.draw(st.booleans()))
    if out is None or out[-1] is None:
        return
    y = out[0]
    assert y.shape == (T, B, H) and np.isfinite(y).all()
    finals = {f"d{s[0]}T": data.draw(arrays((B, H), dtype)) for s in states}
    grads = _documented(getattr(ops, f"{cell}_backward"), out[-1],
                        data.draw(arrays(y.shape, dtype)), **finals, backend=backend)
    if grads is not None:
        assert all(np.isfinite(g).all() for g in grads)


CONSTRUCTORS = {
    "for_tokens": lambda n, kw: Model.for_tokens(n, **kw),
    "for_series": lambda n, kw: Model.for_series(n, **kw),
    "for_classes": lambda n, kw: Model.for_classes(n, 3, **kw),
    "for_regression": lambda n, kw: Model.for_regression(n, 2, **kw),
}


MODEL_VALID = dict(cell=["lstm", "gru", "rnn"], hidden_size=[1, 3], num_layers=[1, 2],
                   dropout=[0.0, 0.5], dtype=[np.float32, "float64"],
                   backend=BACKENDS, bidirectional=[True, False])
MODEL_HOSTILE = dict(cell=["LSTM", "", 3], hidden_size=ODD_NUMBERS, num_layers=ODD_NUMBERS,
                     dropout=[1.0, -0.1, "0", None, float("nan")],
                     dtype=[np.int32, "x", None], backend=["cuda", None, "cython:avx9"],
                     bidirectional=[1, "yes", None])


@st.composite
def model_kwargs(draw):
    return _kwargs(draw, MODEL_VALID, MODEL_HOSTILE)


@FUZZ
@given(st.sampled_from(sorted(CONSTRUCTORS)), st.sampled_from([1, 2, 3, np.int64(2)] * 3
                                                             + ODD_NUMBERS),
       model_kwargs(), st.data())
def test_models_and_predict(kind, n, kw, data):
    if 10 ** 12 in (n, kw.get("hidden_size"), kw.get("num_layers")):
        return   # asked for a model of 10^12 units or layers: not a fuzz example's size
    model = _documented(CONSTRUCTORS[kind], n, kw)
    if model is None:
        return
    N, T = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 4))
    if model.takes_tokens:
        X = data.draw(st.lists(st.lists(st.integers(-1, n), min_size=T, max_size=T),
                               min_size=N, max_size=N))
        X = np.array(X, dtype=data.draw(st.sampled_from([np.int64, np.float64, np.int8])))
    else:
        X = data.draw(arrays((N, T, n), model.dtype))
    out = _documented(model.predict, X, lengths=data.draw(lengths(T, N)))
    if out is not None:
        assert np.isfinite(out).all()


@pytest.fixture(scope="module")
def tiny():
    """A tiny series model and data it fits."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 5, 2)), rng.standard_normal((6, 5, 1))


TRAIN_VALID = dict(epochs=[1, 2], batch_size=[1, 4], seq_len=[2, None], lr=[1e-3, 0.1],
                   optimizer=["adam", "sgd"], clip_norm=[None, 1.0],
                   on_nan=["raise", "skip"], progress=[False, "lines"], seed=[0, 7],
                   restore_best=[False, True])
TRAIN_HOSTILE = dict(epochs=[0, -1, 1.5, "1", None, True], batch_size=ODD_NUMBERS,
                     seq_len=ODD_NUMBERS, lr=[0.0, -1.0, float("nan"), float("inf"), "x"],
                     optimizer=["rmsprop", None, 1], clip_norm=[0.0, -1.0, float("nan"), "1"],
                     on_nan=["x", None], progress=["x", 3], seed=[-1, 2 ** 70, "s"],
                     restore_best=["yes", None])


@FUZZ
@given(st.data())
def test_train_arguments(tiny, data):
    X, Y = tiny
    model = Model.for_series(2, n_outputs=1, hidden_size=3, backend="cython")
    kw = _kwargs(data.draw, TRAIN_VALID, TRAIN_HOSTILE)
    x = data.draw(st.sampled_from([X] * 4 + [X[:, :, :1], X.astype(np.float32), X[:0],
                                             X.tolist()]))
    y = data.draw(st.sampled_from([Y] * 4 + [Y[:3], Y[..., 0], Y.astype(np.int64)]))
    kw.setdefault("progress", False)
    _documented(fastlstm.train, model, x, y, **kw)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(meta, arrays) of a resumable LSTM class model's checkpoint."""
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    model = Model.for_classes(2, 3, hidden_size=3, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(0)
    fastlstm.train(model, rng.standard_normal((8, 4, 2)), rng.integers(0, 3, 8), epochs=1,
                   progress=False, checkpoint=path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10 ** 6)
                    | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _paths(node, at=()):
    yield at
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, at + (k,))


@FUZZ
@given(st.data())
def test_load_an_edited_checkpoint(checkpoint, tmp_path_factory, data):
    """One value of the meta replaced by any JSON, or one array by another."""
    meta, arrays = checkpoint
    meta, arrays = json.loads(json.dumps(meta)), dict(arrays)
    if data.draw(st.booleans()):
        at = data.draw(st.sampled_from(list(_paths(meta))[1:]))
        node = meta
        for k in at[:-1]:
            node = node[k]
        node[at[-1]] = data.draw(JSON)
    else:
        name = data.draw(st.sampled_from(sorted(arrays)))
        a = arrays[name]
        arrays[name] = data.draw(st.sampled_from([
            a[..., :1] if a.ndim else -a, a.astype(np.float64), a.astype(np.int32),
            np.full(a.shape, np.nan, a.dtype) if a.dtype.kind == "f" else a + 2 ** 40,
            a.reshape(-1), np.zeros(0), np.array("text")]))
    path = tmp_path_factory.mktemp("edited") / "m.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    try:
        loaded = fastlstm.io.load_checkpoint(path)
    except ValueError as exc:   # the loader's one error
        event(str(exc).split(": ", 1)[1][:30])
    else:
        model = loaded[0]
        assert all(np.isfinite(p).all() for p in model.params.values())
        out = model.predict(np.zeros((2, 4, 2), model.dtype))
        assert np.isfinite(out).all()


CSV_TEXT = "date,price,volume\n2024-01-01,1.5,10\n2024-01-02,1.75,12\n2024-01-03,NA,9\n"


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(CSV_TEXT)), st.integers(0, 3),
                          st.text(alphabet=st.characters(), max_size=3)), max_size=4),
       st.sampled_from(["price", "volume", "date", "", "nope", 0]),
       st.sampled_from(["utf-8", "latin-1", "utf-16", None]))
def test_read_series_on_mutated_csv(tmp_path_factory, edits, column, encoding):
    text = CSV_TEXT
    for at, cut, new in edits:
        text = text[:at] + new + text[at + cut:]
    path = tmp_path_factory.mktemp("csv") / "s.csv"
    if encoding is None:
        path.write_bytes(text.encode("utf-8", "surrogatepass") + b"\xff\x00,\"x" * 2)
    else:
        path.write_bytes(text.encode(encoding, "replace"))
    out = _documented(read_series, path, column)
    if out is not None:
        values, missing = out
        assert values.dtype == np.float64 and np.isfinite(values).all() and missing >= 0


OPTIONS = {
    "train": ["--epochs", "--hidden", "--layers", "--seq-len", "--batch-size", "--lr",
              "--val", "--clip", "--cell", "--backend", "--threads", "--text", "--embed",
              "--weight-decay", "--seed", "--resume", "--plot"],
    "series": ["--epochs", "--hidden", "--layers", "--seq-len", "--batch-size", "--lr",
               "--val", "--cell", "--csv", "--column", "--length", "--metrics", "--resume"],
    "forecast": ["--model", "--csv", "--column", "--steps"],
    "generate": ["--model", "--prefix", "--length", "--temperature", "--seed"],
    "complete": ["--model", "--beam"],
}
VALUES = ["1", "2", "0", "-1", "0.5", "nan", "inf", "1e309", "x", "", "gru", "price",
          "99999999999", "{bad}", "{good}", "{csv}", "{text}", "{series}", "{out}"]
# The least each command needs to run, and how to keep its run short.
BASE = {"train": ["--text", "{text}", "--epochs", "1", "--hidden", "4", "--out", "{out}",
                  "--quiet"],
        "series": ["--length", "60", "--epochs", "1", "--out", "{out}", "--quiet"],
        "forecast": ["--model", "{series}", "--csv", "{csv}", "--column", "price"],
        "generate": ["--model", "{good}", "--length", "5"],
        "complete": ["ab", "--model", "{good}"]}


@st.composite
def command_lines(draw):
    """A command with what it needs, then up to three of its options with any of
    VALUES (argparse keeps an option's last value), maybe a stray word."""
    command = draw(st.sampled_from(sorted(OPTIONS)))
    argv = [command] + BASE[command]
    for _ in range(draw(st.integers(0, 3))):
        argv += [draw(st.sampled_from(OPTIONS[command])), draw(st.sampled_from(VALUES))]
    if draw(st.integers(0, 4)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(VALUES)))
    return argv


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    fastlstm.save(fastlstm.CharLM.create("abc abd\n", hidden_size=3), folder / "good.npz")
    (folder / "s.csv").write_text("t,price\n" + "".join(f"{i},{1 + i % 7}\n"
                                                         for i in range(40)))
    (folder / "t.txt").write_text("ab ba abba " * 30)
    assert cli.main(["series", "--csv", str(folder / "s.csv"), "--column", "price",
                     "--epochs", "1", "--seq-len", "5", "--quiet",
                     "--out", str(folder / "series.npz")]) == 0
    return {"bad": folder / "bad.npz", "good": folder / "good.npz", "csv": folder / "s.csv",
            "text": folder / "t.txt", "out": folder / "out.npz",
            "series": folder / "series.npz"}


@FUZZ
@given(command_lines())
def test_cli_arguments(files, capsys, argv):
    """Any arguments: a result, or a one-line error and code 2, never a traceback."""
    argv = [str(files[t[1:-1]]) if t.startswith("{") else t for t in argv]
    if "99999999999" in argv:
        at = argv.index("99999999999")
        if at and argv[at - 1] in ("--epochs", "--length", "--steps", "--layers"):
            return   # runs that long are what was asked for
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    event(f"exit {code}")
    err = capsys.readouterr().err
    assert code in (0, 1, 2, None), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
