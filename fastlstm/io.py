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
import os
import tempfile
import zipfile

import numpy as np

from ._version import __version__
from .layers import LAYERS, Recurrent
from .model import Model

__all__ = ["save", "load", "load_checkpoint", "register_kind", "FORMAT_VERSION"]

FORMAT_VERSION = 2
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


def load(path, backend="auto"):
    """The Model (or CharLM, Forecaster) saved at path, its layers on backend."""
    return load_checkpoint(path, backend)[0]


def load_checkpoint(path, backend="auto"):
    """(model, train_state or None) from path; train_state as save() takes it,
    with "last" (name -> array) in place of "best": the weights to resume from
    where they are not the model's."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable fastlstm checkpoint ({exc})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict) or meta.get("format") != "fastlstm":
            raise KeyError("format")
        version = int(meta["version"])
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: written in checkpoint format {version} by fastlstm "
                             f"{meta.get('fastlstm')}; this fastlstm reads formats up to "
                             f"{FORMAT_VERSION}")
        net = _build(meta["model"], backend)
        params = net.params
        for k, p in params.items():
            a = arrays.pop(f"param/{k}")
            if a.shape != p.shape:
                raise ValueError(f"{path}: parameter {k} has shape {a.shape}, the model "
                                 f"wants {p.shape}")
            p[...] = a
        kind = meta["kind"]
        extra = meta.get("extra") if version >= 2 else (
            {"vocab": meta["vocab"]} if kind == "charlm" else None)
        if kind == "model":
            model = net
        elif kind in _KINDS:
            model = _KINDS[kind](net, extra)
        else:
            raise ValueError(f"{path}: holds a {kind!r}, which this fastlstm does not know")
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a fastlstm checkpoint (missing or bad {exc})") from None
    train_state = None
    if meta.get("train") is not None:
        train_state = dict(meta=meta["train"], optim=_members(arrays, "optim/"))
        last = _members(arrays, "last/")
        if last:
            train_state["last"] = last
    return model, train_state


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
