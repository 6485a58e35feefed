"""Checkpoints: save and load models as .npz files.

Format (version 2): a NumPy .npz archive, read with allow_pickle=False, holding
- "meta": a JSON string: {"format": "fastlstm", "version": 2, "fastlstm": the
  library version, "kind": "model" or the kind of the object wrapping the model
  ("charlm", "forecaster"), "model": {"loss", "dtype", "layers": [{"type",
  "config"}]}, "extra": what that object needs beside the model (a CharLM's
  vocabulary, a Forecaster's scaling), "train" (resumable training state: epoch,
  seed, optimizer name and hyper-parameters, history) or null};
- "param/<layer>.<name>": every parameter array, as Model.params names them;
- "optim/<slot>": the optimizer's state arrays, when "train" is set;
- "last/<layer>.<name>": in a checkpoint of a run that keeps its best epoch
  (train's restore_best), the model is that epoch's, and these are the weights
  after the last finished epoch, which resuming goes on from.
Version 1 files (a CharLM's vocabulary under "vocab") load as before.

The module knows models only. An object that wraps one (text.CharLM,
series.Forecaster) has `model`, `checkpoint_kind` and `checkpoint_extra()`, and its
module registers how to rebuild it from the model and the extra (register_kind).

The file is written to a temporary file in the same folder, synced, given the
mode the umask allows, then renamed over the old one, so a crash mid-save leaves
the old checkpoint as it was.
"""
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from ._version import __version__
from .layers import LAYERS, Recurrent
from .model import Model
from .optim import OPTIMIZERS

__all__ = ["save", "load", "load_checkpoint", "register_kind", "FORMAT_VERSION",
           "MAX_BYTES", "MAX_META_BYTES"]

FORMAT_VERSION = 2
# What load reads of a file before it trusts it: the JSON meta at most, and the
# arrays' total as their headers declare it, unless the caller allows more.
MAX_META_BYTES = 1 << 24
MAX_BYTES = 1 << 32
# save writes members uncompressed; one another tool compressed past this ratio is
# a zip bomb, not numbers (random float weights hardly compress).
MAX_RATIO = 100
_KINDS = {}


def register_kind(kind, rebuild):
    """rebuild(model, extra) gives back the object saved as kind."""
    _KINDS[kind] = rebuild


def _unwrap(obj):
    """(Model, kind, extra) of a Model or of an object that wraps one."""
    if isinstance(obj, Model):
        return obj, "model", None
    net = getattr(obj, "model", None)
    kind = getattr(obj, "checkpoint_kind", None)
    if not isinstance(net, Model) or kind not in _KINDS:
        raise TypeError(f"model: expected a fastlstm Model or an object wrapping one "
                        f"(CharLM, Forecaster), got {type(obj).__name__}")
    return net, kind, obj.checkpoint_extra()


def save(model, path, train_state=None):
    """Write model (a Model, a CharLM, a Forecaster) to path atomically.

    train_state is what fastlstm.train passes to make the file resumable: a dict
    with "meta" (JSON-able), "optim" (name -> array) and, where training keeps its
    best epoch, "best" (name -> array): those weights are saved as the model's,
    and the model's own as the last epoch's, to resume from.
    """
    net, kind, extra = _unwrap(model)
    best = None if train_state is None else train_state.get("best")
    meta = dict(format="fastlstm", version=FORMAT_VERSION, fastlstm=__version__, kind=kind,
                model=dict(loss=net.loss_name, dtype=net.dtype.name,
                           layers=[dict(type=type(layer).__name__, config=layer.config())
                                   for layer in net.layers]),
                extra=extra, train=None if train_state is None else train_state["meta"])
    arrays = {"meta": np.array(json.dumps(meta))}
    arrays.update({f"param/{k}": a for k, a in (best or net.params).items()})
    if train_state is not None:
        arrays.update({f"optim/{k}": np.asarray(a) for k, a in train_state["optim"].items()})
    if best is not None:
        arrays.update({f"last/{k}": a for k, a in net.params.items()})
    _write_atomically(os.fspath(path), arrays)


def _umask_mode():
    """The mode a new file gets under the process's umask (0666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomically(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastlstm-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; a checkpoint is a file like any other
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path, backend="auto", *, max_bytes=MAX_BYTES):
    """The Model (or CharLM, Forecaster) saved at path, its layers on backend.

    The file is checked before anything is built (see load_checkpoint): a file
    that is not a sound checkpoint is a ValueError naming it and what is wrong."""
    return load_checkpoint(path, backend, max_bytes=max_bytes)[0]


def load_checkpoint(path, backend="auto", *, max_bytes=MAX_BYTES):
    """(model, train_state or None) from path; train_state as save() takes it,
    with "last" (name -> array) in place of "best": the weights to resume from
    where they are not the model's.

    Checked in this order, each before anything it guards is allocated: the zip
    directory; the meta (at most MAX_META_BYTES, JSON, format and version); every
    layer's config, and from it each parameter's shape and dtype without building
    the model; then every array member's .npy header against those shapes and the
    model's dtype, its data size against its header, and the sum of those sizes
    against max_bytes (bytes); then the data, which must be finite. Members that no
    parameter, optimizer slot or last-epoch weight names are refused. The model is
    built last."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            meta, arrays = _read_checked(archive, max_bytes)
    except _Refused as exc:
        raise ValueError(f"{path}: {exc}") from None
    except _UNREADABLE as exc:
        raise ValueError(f"{path}: not a readable fastlstm checkpoint "
                         f"({type(exc).__name__}: {exc})") from None
    net = _build(meta["model"], backend)
    for k, p in net.params.items():
        p[...] = arrays[f"param/{k}"]
    kind, version = meta["kind"], meta["version"]
    extra = meta.get("extra") if version >= 2 else (
        {"vocab": meta.get("vocab")} if kind == "charlm" else None)
    if kind == "model":
        model = net
    else:
        try:
            model = _KINDS[kind](net, extra)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: its {kind} is not sound ({type(exc).__name__}: "
                             f"{exc})") from None
    train_state = None
    if meta.get("train") is not None:
        train_state = dict(meta=meta["train"], optim=_members(arrays, "optim/"))
        last = _members(arrays, "last/")
        if last:
            train_state["last"] = last
    return model, train_state


class _Refused(Exception):
    """What is wrong with a checkpoint; load_checkpoint names the file."""


# What reading a damaged zip or .npy can raise beyond the checks of _read_checked.
_UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, KeyError,
               NotImplementedError, RuntimeError, OverflowError, UnicodeDecodeError)


def _read_checked(archive, max_bytes):
    """(meta, {member: array}) from an open zip, every check of load_checkpoint
    but the model's construction done."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise _Refused(f"not a fastlstm checkpoint (it holds {info.filename!r})")
        members[info.filename[:-len(".npy")]] = info
    if "meta" not in members:
        raise _Refused("not a fastlstm checkpoint (no meta)")
    meta = _meta(archive, members.pop("meta"))
    wanted = _wanted(meta)
    for name in members:
        if name not in wanted:
            raise _Refused(f"holds {name!r}, which no parameter or optimizer slot of its "
                           f"model names")
    missing = [name for name in wanted
               if name.startswith("param/") and name not in members]
    if missing:
        raise _Refused(f"lacks parameter {missing[0][len('param/'):]}")
    last = [name for name in wanted if name.startswith("last/")]
    if any(name in members for name in last) and not all(name in members for name in last):
        raise _Refused("holds the last epoch's weights of some parameters only")
    headers = {name: _header(archive, info, name) for name, info in members.items()}
    total = 0
    for name, (shape, dtype, nbytes) in headers.items():
        want_shape, want_kind = wanted[name]
        if want_kind == "int":
            if shape != () or dtype.kind not in "iu":
                raise _Refused(f"{name} is {dtype} {shape}, expected one integer")
        elif dtype != want_kind or shape != want_shape:
            raise _Refused(f"{name} is {dtype} {shape}, the model wants {want_kind} "
                           f"{want_shape}")
        total += nbytes
    if total > max_bytes:
        raise _Refused(f"its arrays take {total} bytes, more than max_bytes = {max_bytes} "
                       f"(pass a larger max_bytes to load it)")
    arrays = {}
    for name, info in members.items():
        with archive.open(info) as f:
            a = np.lib.format.read_array(f, allow_pickle=False)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _Refused(f"{name} holds NaN or inf")
        if a.dtype.kind in "iu" and a < 0:
            raise _Refused(f"{name} is negative")
        arrays[name] = a
    return meta, arrays


def _header(archive, info, name):
    """(shape, dtype, data bytes) of a .npy member from its header alone, checked
    against the member's size in the zip directory."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise _Refused(f"{name}: .npy format {version} is not one NumPy writes")
        shape, _, dtype = read(f)
        start = f.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(f"{name} has dtype {dtype}, not plain numbers or text")
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size > max(1 << 20, MAX_RATIO * info.compress_size):
        raise _Refused(f"{name} inflates from {info.compress_size} to {info.file_size} "
                       f"bytes: not numbers")
    if info.file_size - start != nbytes:
        raise _Refused(f"{name}: its header declares {nbytes} bytes of data, the file "
                       f"holds {info.file_size - start}")
    return shape, dtype, nbytes


def _meta(archive, info):
    """The checked JSON meta of a checkpoint, from its member info."""
    if info.file_size > MAX_META_BYTES:
        raise _Refused(f"its meta takes {info.file_size} bytes, more than "
                       f"{MAX_META_BYTES}")
    shape, dtype, _ = _header(archive, info, "meta")
    if shape != () or dtype.kind != "U":
        raise _Refused(f"not a fastlstm checkpoint (its meta is {dtype} {shape})")
    with archive.open(info) as f:
        text = str(np.lib.format.read_array(f, allow_pickle=False))
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _Refused(f"not a fastlstm checkpoint (its meta is not JSON: "
                       f"{type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != "fastlstm":
        raise _Refused("not a fastlstm checkpoint (no format)")
    version = meta.get("version")
    if not _is_int(version) or version < 1:
        raise _Refused(f"not a fastlstm checkpoint (version {version!r})")
    if version > FORMAT_VERSION:
        raise _Refused(f"written in checkpoint format {version} by fastlstm "
                       f"{meta.get('fastlstm')}; this fastlstm reads formats up to "
                       f"{FORMAT_VERSION}")
    kind = meta.get("kind")
    if kind != "model" and not (isinstance(kind, str) and kind in _KINDS):
        raise _Refused(f"holds a {kind!r}, which this fastlstm does not know")
    train = meta.get("train")
    if train is not None:
        _check_train(train)
    return meta


def _check_train(train):
    """Refuse a training state that resuming could not use."""
    optimizer = train.get("optimizer") if isinstance(train, dict) else None
    if not isinstance(optimizer, dict) or optimizer.get("name") not in list(OPTIMIZERS):
        raise _Refused("its training state names no known optimizer")
    epoch = train.get("epoch")
    if not _is_int(epoch) or epoch < 0:
        raise _Refused(f"its training state has epoch {epoch!r}")
    history = train.get("history")
    if not isinstance(history, dict) or not all(
            isinstance(v, list) and len(v) == len(history.get("epoch", []))
            and all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))
                    for x in v)
            for v in history.values()):
        raise _Refused("its training history is not lists of numbers of one length")
    if not set(history.get("best_epoch", [])) <= set(history.get("epoch", [])) | {None}:
        raise _Refused("its training history keeps an epoch it did not run")


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _wanted(meta):
    """{member: (shape, dtype)} a checkpoint of meta may hold; dtype "int" for an
    optimizer's counters."""
    model = _planned(meta.get("model"))
    dtype = model.dtype
    shapes = model.param_shapes()
    wanted = {f"param/{k}": (shape, dtype) for k, shape in shapes.items()}
    if meta.get("train") is not None:
        optimizer = OPTIMIZERS[meta["train"]["optimizer"]["name"]]
        for k, shape in shapes.items():
            wanted[f"last/{k}"] = (shape, dtype)
            wanted.update({f"optim/{slot}/{k}": (shape, dtype) for slot in optimizer.slots})
        wanted.update({f"optim/{name}": ((), "int") for name in optimizer.counters})
    return wanted


def _planned(spec):
    """A Model of spec's layers, checked, with no parameter allocated
    (Layer.planned)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise _Refused("not a fastlstm checkpoint (no layers)")
    if spec.get("dtype") not in ("float32", "float64"):
        raise _Refused(f"its model's dtype is {spec.get('dtype')!r}, not float32 or float64")
    layers = []
    for k, entry in enumerate(spec["layers"]):
        if not isinstance(entry, dict) or entry.get("type") not in list(LAYERS) \
                or not isinstance(entry.get("config"), dict):
            raise _Refused(f"layer {k} is not a layer this fastlstm knows")
        try:
            layers.append(LAYERS[entry["type"]].planned(entry["config"], spec["dtype"]))
        except (TypeError, ValueError) as exc:
            raise _Refused(f"layer {k} ({entry['type']}): {exc}") from None
    try:
        return Model(layers, loss=spec.get("loss"))
    except (TypeError, ValueError) as exc:
        raise _Refused(f"its model: {exc}") from None


def _members(arrays, prefix):
    """{name: array} of the members named prefix + name."""
    return {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}


def _build(spec, backend):
    dtype = np.dtype(spec["dtype"])
    layers = []
    for entry in spec["layers"]:
        cls = LAYERS[entry["type"]]
        kwargs = dict(entry["config"], dtype=dtype)
        if issubclass(cls, Recurrent):
            kwargs["backend"] = backend
        layers.append(cls(**kwargs))
    return Model(layers, loss=spec["loss"])
