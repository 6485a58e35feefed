"""fastlstm: train tanh RNN, LSTM and GRU networks fast on multicore CPUs.

The time loops run in compiled kernels (Cython, Numba); fastlstm.reference holds
the NumPy specification they are tested against; show_config() says which
instruction-set level of them this machine runs. Layers: backends (reference,
_cy, _numba) -> ops (the kernels' functional API) -> layers, losses, optim ->
model -> export (to_onnx), io -> train, callbacks -> text (CharLM), series
(Forecaster), sklearn (estimators, imported on its own) -> cli.
"""
from ._version import __version__
from . import callbacks, data, diagnostics, losses, ops
from ._buffers import release_memory
from ._threads import get_num_threads, set_num_threads, threads
from .backends import available_backends
from .config import show_config
from .interop import from_torch, to_torch
from .export import to_onnx
from .io import load, save
from .layers import GRU, LSTM, RNN, Dense, Embedding, Last
from .model import Model
from .optim import SGD, Adam, clip_grads
from .series import Forecaster
from .text import CharLM, Vocab
from .train import History, StepInfo, TrainingDiverged, train

__all__ = ["__version__", "ops", "data", "diagnostics", "losses", "callbacks",
           "available_backends", "get_num_threads", "set_num_threads", "threads",
           "release_memory", "Embedding", "Dense", "RNN", "LSTM", "GRU", "Last", "Model",
           "SGD", "Adam", "clip_grads", "train", "History", "StepInfo", "TrainingDiverged",
           "save", "load", "CharLM", "Vocab", "Forecaster", "from_torch", "to_torch",
           "to_onnx", "show_config"]
