"""Registry of kernel backends: "numpy" (the reference), "cython", "numba", and "auto".

A backend is a namespace holding the functions of the kernel contract
(docs/DESIGN.md, "The kernel contract"): {rnn, lstm, gru}_{forward, backward}; the
ONE_STEP_FUNCTIONS that run a cell or the head one time step at a time on weights
prepared once (generation); and the TRAINING_FUNCTIONS that run the rest of a
training update (the Dense layer, the embedding's gradient, the losses, the
optimizers) on the same threads. A backend whose modules lack one of them is not
available, with the missing names as the reason.

"cython" runs the instruction-set level fastlstm._cy chose for this machine;
"cython:baseline", "cython:avx2" and "cython:avx512" name one level (tests and
benches compare them in one process).

"auto" takes the environment variable FASTLSTM_BACKEND when it is set, else the
first importable backend of AUTO_ORDER, the order measured fastest in
bench/RESULTS.md. Naming a backend that is not built is an error, never a silent
fallback.
"""
import importlib
import os
import types

from . import _cy
from .cells import CELLS

CELL_FUNCTIONS = tuple(f"{c}_{f}" for c in CELLS for f in ("forward", "backward"))
ONE_STEP_FUNCTIONS = tuple(f"{c}_{f}" for c in CELLS for f in ("step_weights", "step")) \
    + ("dense_step_weights", "dense_step")
TRAINING_FUNCTIONS = ("dense_forward", "dense_backward", "embedding_backward",
                      "softmax_xent", "mse", "sum_squares", "adam_update", "sgd_update")
FUNCTIONS = CELL_FUNCTIONS + ONE_STEP_FUNCTIONS + TRAINING_FUNCTIONS
NAMES = ("numpy", "cython", "numba")
AUTO_ORDER = ("cython", "numba", "numpy")
_MODULES = {
    "numpy": ("fastlstm.reference",),
    "numba": ("fastlstm._numba",),
}
_CYTHON_MODULES = ("_rnn", "_lstm", "_gru", "_dense", "_loss", "_optim")
_loaded = {}
_errors = {}


def _modules(name):
    """The modules of backend name ("cython" or "cython:<level>" from fastlstm._cy)."""
    family, _, level = name.partition(":")
    if family == "cython":
        return [_cy.module(m, level or None) for m in _CYTHON_MODULES]
    return [importlib.import_module(m) for m in _MODULES[name]]


def _load(name):
    if name not in _loaded and name not in _errors:
        try:
            mods = _modules(name)
        except (ImportError, RuntimeError) as exc:
            _errors[name] = exc
        else:
            found = {f: getattr(m, f) for m in mods for f in FUNCTIONS if hasattr(m, f)}
            missing = [f for f in FUNCTIONS if f not in found]
            if missing:
                _errors[name] = ImportError(f"its modules lack {', '.join(missing)}")
            else:
                _loaded[name] = types.SimpleNamespace(name=name, **found)
    return _loaded.get(name)


def available_backends():
    """Names of the backends that import on this machine, e.g. ["numpy", "cython"]."""
    return [n for n in NAMES if _load(n) is not None]


def cython_levels():
    """"cython:<level>" for each instruction-set level built that this machine
    runs, worst first."""
    return [f"cython:{level}" for level in _cy.supported_levels()]


def get_backend(name="auto"):
    """The backend namespace for name ("auto", "numpy", "cython" or "numba")."""
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a str, got {type(name).__name__}")
    if name == "auto":
        env = os.environ.get("FASTLSTM_BACKEND", "").strip()
        if env and env != "auto":
            try:
                return get_backend(env)
            except ValueError as exc:
                raise ValueError(f"FASTLSTM_BACKEND={env!r}: {exc}") from None
        for n in AUTO_ORDER:
            if _load(n) is not None:
                return _loaded[n]
    family, colon, level = name.partition(":")
    if name not in NAMES and not (family == "cython" and colon and level in _cy.LEVELS):
        raise ValueError(f"backend: expected one of {('auto',) + NAMES} (or cython:LEVEL, "
                         f"LEVEL one of {', '.join(_cy.LEVELS)}), got {name!r}")
    if _load(name) is None:
        raise ValueError(
            f"backend {name!r} is not available: {_errors[name]} "
            f"(available: {available_backends()}; reinstall with `pip install .` "
            "to build the compiled backends)")
    return _loaded[name]
