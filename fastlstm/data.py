"""Data: the built-in corpus, next-step training rows, series from CSV files, and
generated series."""
import csv
from importlib import resources

import numpy as np

__all__ = ["corpus", "next_step_rows", "next_step_data", "held_out", "pad_sequences",
           "read_series", "price_series", "speaker_recordings", "adding_problem"]

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


def pad_sequences(sequences, dtype=np.float32):
    """N sequences of their own lengths, each (T_i, F) or (T_i,) numbers, as X
    (N, T, F) of dtype, zeros after each row's end up to the longest T, and
    lengths (N,) int64: what a model takes with lengths=, for which the padding
    changes nothing."""
    rows = [np.asarray(s, dtype=dtype) for s in sequences]
    if not rows:
        raise ValueError("sequences: expected at least one sequence")
    rows = [r[:, None] if r.ndim == 1 else r for r in rows]
    F = rows[0].shape[-1]
    for n, r in enumerate(rows):
        if r.ndim != 2 or len(r) == 0 or r.shape[1] != F:
            raise ValueError(f"sequences[{n}]: expected (T_i, {F}) with T_i >= 1, as "
                             f"sequences[0], got shape {r.shape}")
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    X = np.zeros((len(rows), lengths.max(), rows[0].shape[1]), dtype=dtype)
    for n, r in enumerate(rows):
        X[n, :len(r)] = r
    return X, lengths


def read_series(source, column):
    """The values of one column, as float64 (L,), of a CSV file with a header row
    (source a path) or of a table (source a pandas DataFrame, or anything that
    has `columns` and gives a column by name; pandas itself is not needed).

    Other columns (dates, names) are ignored; empty cells and NA, NaN, null (NaN
    or None in a table) are missing values and are left out. A column that is not
    there, or a cell that is not a number, is a ValueError naming it. Returns
    (values, number of missing values left out)."""
    if hasattr(source, "columns"):
        return _table_column(source, column)
    path = source
    try:
        return _read_column(path, column)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a CSV file ({exc})") from None


def _table_column(table, column):
    if column not in list(table.columns):
        raise ValueError(f"table: has no column {column!r}; its columns are "
                         f"{', '.join(repr(n) for n in table.columns)}")
    col = table[column]
    cells = np.asarray(col, dtype=object)
    missing = np.asarray(col.isna(), dtype=bool) if hasattr(col, "isna") else np.array(
        [c is None or (isinstance(c, float) and np.isnan(c)) for c in cells], dtype=bool)
    try:
        values = np.array(cells[~missing], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"table: column {column!r} holds values that are not "
                         "numbers") from None
    if not np.isfinite(values).all():
        raise ValueError(f"table: column {column!r} holds inf")
    return values, int(missing.sum())


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


def speaker_recordings(n_per_speaker=30, n_speakers=9, seed=0):
    """Recordings of one vowel by n_speakers speakers, of their own lengths, after
    the shape of the Japanese Vowels set of the UCI/UEA archives: each is (T_i, 12)
    cepstrum-like coefficients, 7 <= T_i <= 29 frames. Each speaker has a mean
    trajectory over the vowel (a level, a slope and a curve per coefficient); a
    recording samples it at its own pace and adds its own offset and noise. The
    speakers are the same for every seed, which draws the recordings. Returns
    (list of n_per_speaker * n_speakers float64 arrays, labels (N,) str
    "speaker 1", ...), in a shuffled order."""
    voices = np.random.default_rng(n_speakers)   # the same speakers whatever the seed
    level, slope, curve = (voices.normal(0.0, 0.6, (n_speakers, 12)) for _ in range(3))
    rng = np.random.default_rng(seed)
    recordings, labels = [], []
    for s in range(n_speakers):
        for _ in range(n_per_speaker):
            T = int(rng.integers(7, 30))
            u = np.linspace(0.0, 1.0, T) ** rng.uniform(0.7, 1.4)   # its own pace
            x = level[s] + np.outer(u, slope[s]) + np.outer(np.sin(np.pi * u), curve[s])
            x += rng.normal(0.0, 0.9, 12) + rng.normal(0.0, 0.8, (T, 12))
            recordings.append(x)
            labels.append(f"speaker {s + 1}")
    order = rng.permutation(len(recordings))
    return [recordings[k] for k in order], np.array(labels)[order]


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
