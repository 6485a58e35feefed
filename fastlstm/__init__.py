"""fastlstm: train tanh RNN, LSTM and GRU networks fast on multicore CPUs.

The time loops run in compiled kernels (Cython, Numba); fastlstm.reference holds
the NumPy specification they are tested against.
"""
from . import ops
from ._threads import get_num_threads, set_num_threads, threads
from .backends import available_backends

__version__ = "0.1.0"

__all__ = ["ops", "available_backends", "get_num_threads", "set_num_threads", "threads"]
