"""Checkpoints: save and load models as .npz files.

Format (version 1): a NumPy .npz archive, read with allow_pickle=False, holding
- "meta": a JSON string: {"format": "fastlstm", "version": 1, "fastlstm": the
  library version, "kind": "model" or "charlm", "model": {"loss", "dtype",
  "layers": [{"type", "config"}]}, "vocab" (charlm), "train" (resumable training
  state: epoch, seed, optimizer name and hyper-parameters, history) or null};
- "param/<layer>.<name>": every parameter array, as Model.params names them;
- "optim/<slot>": the optimizer's state arrays, when "train" is set.

The file is written to a temporary file in the same folder, synced, then renamed
over the old one, so a crash mid-save leaves the old checkpoint as it was.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from ._version import __version__
from .layers import LAYERS, Recurrent
from .model import Model
from .text import CharLM

__all__ = ["save", "load", "load_checkpoint", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def save(model, path, train_state=None):
    """Write model (a Model or a CharLM) to path atomically.

    train_state is what fastlstm.train passes to make the file resumable: a dict
    with "meta" (JSON-able) and "optim" (name -> array).
    """
    kind, net = ("charlm", model.model) if isinstance(model, CharLM) else ("model", model)
    if not isinstance(net, Model):
        raise TypeError(f"model: expected a fastlstm Model or CharLM, got {type(model).__name__}")
    meta = dict(format="fastlstm", version=FORMAT_VERSION, fastlstm=__version__, kind=kind,
                model=dict(loss=net.loss_name, dtype=net.dtype.name,
                           layers=[dict(type=type(layer).__name__, config=layer.config())
                                   for layer in net.layers]),
                vocab=model.vocab.chars if kind == "charlm" else None,
                train=None if train_state is None else train_state["meta"])
    arrays = {"meta": np.array(json.dumps(meta))}
    arrays.update({f"param/{k}": a for k, a in net.params.items()})
    if train_state is not None:
        arrays.update({f"optim/{k}": np.asarray(a) for k, a in train_state["optim"].items()})
    _write_atomically(os.fspath(path), arrays)


def _write_atomically(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastlstm-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path, backend="auto"):
    """The Model or CharLM saved at path, its recurrent layers on backend."""
    return load_checkpoint(path, backend)[0]


def load_checkpoint(path, backend="auto"):
    """(model, train_state or None) from path; train_state as save() takes it."""
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
        model = CharLM(meta["vocab"], net) if meta["kind"] == "charlm" else net
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a fastlstm checkpoint (missing or bad {exc})") from None
    train_state = None
    if meta.get("train") is not None:
        train_state = dict(meta=meta["train"],
                           optim={k[len("optim/"):]: a for k, a in arrays.items()
                                  if k.startswith("optim/")})
    return model, train_state


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
