"""Data: the built-in corpus, next-step training rows, series from CSV files, and
generated series."""
import csv
from importlib import resources

import numpy as np

__all__ = ["corpus", "next_step_rows", "next_step_data", "held_out", "read_series",
           "price_series", "adding_problem"]

# Cells read as a missing value: skipped, and counted.
MISSING = {"", "na", "n/a", "nan", "null", "none", "-"}


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


def next_step_data(seq, row_len, validation=None, validation_split=0.0):
    """Training rows and validation rows for next-step prediction: (X, Y, (X_val,
    Y_val) or None), each as next_step_rows cuts it.

    The validation rows come from the sequence validation, or else from the last
    validation_split (0 <= fraction < 1) of seq, which the training rows then
    leave out: the two parts share no step."""
    held = held_out(len(seq), validation_split)
    if validation is not None and held:
        raise ValueError("validation, validation_split: give one, not both")
    if held:
        seq, validation = seq[:len(seq) - held], seq[len(seq) - held:]
    X, Y = next_step_rows(seq, row_len)
    return X, Y, None if validation is None else next_step_rows(validation, row_len)


def held_out(n, validation_split, name="validation_split"):
    """The steps of n that validation_split (0 <= fraction < 1) holds out at the end:
    int(n * validation_split), and 0 for 0; a ValueError (about `name`) unless each
    part keeps at least 2 steps."""
    if isinstance(validation_split, bool) or not isinstance(
            validation_split, (int, float, np.integer, np.floating)) \
            or not 0 <= validation_split < 1:
        raise ValueError(f"{name}: expected a fraction in [0, 1), got "
                         f"{validation_split!r}")
    held = int(n * validation_split)
    if validation_split and (held < 2 or n - held < 2):
        raise ValueError(f"{name}: {validation_split} of {n:,} steps holds out {held}; "
                         "each part needs at least 2")
    return held


def read_series(path, column):
    """The values of one column of a CSV file with a header row, as float64 (L,).

    Other columns (dates, names) are ignored; empty cells and NA, NaN, null are
    missing values and are left out. A column that is not there, or a cell that is
    not a number, is a ValueError naming it. Returns (values, number of missing
    values left out)."""
    try:
        return _read_column(path, column)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a CSV file ({exc})") from None


def _read_column(path, column):
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}: is empty; expected a header row naming the columns")
        names = [h.strip() for h in header]
        if column not in names:
            raise ValueError(f"{path}: has no column {column!r}; its columns are "
                             f"{', '.join(repr(n) for n in names)}")
        k = names.index(column)
        values, missing = [], 0
        for line, row in enumerate(rows, start=2):
            cell = row[k].strip() if k < len(row) else ""
            if cell.lower() in MISSING:
                missing += 1
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise ValueError(f"{path}: line {line}, column {column!r}: {cell!r} is "
                                 "not a number") from None
            if not np.isfinite(values[-1]):
                raise ValueError(f"{path}: line {line}, column {column!r}: {cell!r} is "
                                 "not a finite number")
    return np.array(values, dtype=np.float64), missing


def price_series(n=5000, seed=0, period=20, amplitude=2.0, volatility=0.5):
    """A price-like series (n,): 100 + a Gaussian random walk (step std volatility)
    + amplitude * sin(2 pi t / period). Only the seasonal part of each step is
    predictable; the walk's steps are not."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    walk = np.cumsum(rng.normal(0.0, volatility, n))
    return 100.0 + walk + amplitude * np.sin(2 * np.pi * t / period)


def adding_problem(n, T, seed=0, dtype=np.float32):
    """The adding problem (Hochreiter & Schmidhuber, 1997), n sequences of T steps.

    Each step is a pair (value ~ U(0, 1), marker); the marker is 1 at one step of
    the first half and one of the second half, 0 elsewhere. The target is the sum
    of the two marked values, due on the last step. Returns X (n, T, 2), Y (n, T, 1)
    (the sum on the last step, 0 before) and mask (n, T) (True on the last step
    only), ready for fastlstm.train. Always answering 1 scores MSE 1/6 ~ 0.167.
    """
    if T < 2:
        raise ValueError(f"T: expected >= 2, got {T}")
    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, 2), dtype)
    X[:, :, 0] = rng.random((n, T))
    rows = np.arange(n)
    half = T // 2
    X[rows, rng.integers(0, half, n), 1] = 1
    X[rows, rng.integers(half, T, n), 1] = 1
    Y = np.zeros((n, T, 1), dtype)
    Y[:, -1, 0] = np.sum(X[:, :, 0] * X[:, :, 1], axis=1)
    mask = np.zeros((n, T), bool)
    mask[:, -1] = True
    return X, Y, mask
