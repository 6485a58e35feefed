"""Data: the built-in corpus, next-step training rows, and generated series."""
from importlib import resources

import numpy as np

__all__ = ["corpus", "next_step_rows", "price_series"]


def corpus():
    """The built-in English text (lowercase, a few thousand words) as a str."""
    return resources.files("fastlstm").joinpath("corpus/words.txt").read_text("utf-8")


def next_step_rows(seq, row_len):
    """Cut a sequence (L,) or (L, F) into rows for next-step prediction.

    Returns X = seq[:-1] and Y = seq[1:], each cut into N = (L-1) // row_len
    consecutive rows of row_len steps: (N, row_len) or (N, row_len, F). A
    sequence shorter than row_len + 1 gives one row of L-1 steps.
    """
    seq = np.asarray(seq)
    L = len(seq)
    if L < 2:
        raise ValueError(f"seq: expected at least 2 steps, got {L}")
    if row_len < 1:
        raise ValueError(f"row_len: expected >= 1, got {row_len}")
    row_len = min(row_len, L - 1)
    N = (L - 1) // row_len
    n = N * row_len
    shape = (N, row_len) + seq.shape[1:]
    return seq[:n].reshape(shape), seq[1:n + 1].reshape(shape)


def price_series(n=5000, seed=0, period=20, amplitude=2.0, volatility=0.5):
    """A price-like series (n,): 100 + a Gaussian random walk (step std volatility)
    + amplitude * sin(2 pi t / period). Only the seasonal part of each step is
    predictable; the walk's steps are not."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    walk = np.cumsum(rng.normal(0.0, volatility, n))
    return 100.0 + walk + amplitude * np.sin(2 * np.pi * t / period)
