"""The `fastlstm` command: train | complete | generate | series | forecast.

Bad arguments, unreadable files and bad checkpoints end with one line on stderr
and exit code 2, found before any training where they can be; a diverged
training run ends with exit code 1, Ctrl-C with 130. Training holds out the end
of the data (--val) to validate on, decays the learning rate along a cosine,
saves the epoch of the lowest validation loss to --out after every epoch (with
the last epoch's state), and --resume goes on from there.
"""
import argparse
import collections
import json
import os
import sys

import numpy as np

from . import _cy, data, ops
from ._version import __version__
from ._threads import get_num_threads, set_num_threads
from .backends import NAMES, get_backend
from .io import load, load_checkpoint
from .callbacks import CosineLR
from .cells import CELLS
from .optim import Adam
from .series import Forecaster
from .text import CharLM, is_word_char
from .distributed import communicator, local_threads
from .train import TrainingDiverged

# The built-in corpus's frequent words, by their beginnings.
REQUESTED_PREFIXES = ("tri", "na", "squ", "cir", "thr", "eve")


class UsageError(Exception):
    """A bad argument found after parsing: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
        return value
    return parse


def _nonnegative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _training_options(p, hidden, epochs, seq_len, batch_size, lr, out, data):
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--hidden", type=_positive(int), default=hidden, help="hidden units")
    p.add_argument("--layers", type=_positive(int), default=1, help="stacked layers")
    p.add_argument("--epochs", type=_positive(int), default=epochs)
    p.add_argument("--seq-len", type=_positive(int), default=seq_len,
                   help="truncated BPTT window (steps)")
    p.add_argument("--batch-size", type=_positive(int), default=batch_size)
    p.add_argument("--lr", type=_positive(float), default=lr,
                   help="Adam's learning rate at the start; it falls along half a cosine "
                   "to 0 at --epochs")
    p.add_argument("--val", type=_fraction, default=0.1, metavar="FRACTION",
                   help=f"hold out the end of {data} to validate on; the model saved "
                   "is the epoch of the lowest validation loss (with 0: of the lowest "
                   "training loss)")
    p.add_argument("--weight-decay", type=_nonnegative, default=0.0,
                   help="decoupled weight decay (AdamW)")
    p.add_argument("--clip", type=_positive(float), default=5.0,
                   help="clip gradients to this global L2 norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("auto",) + NAMES, default="auto")
    p.add_argument("--precision", choices=("bf16",),
                   help="bf16: mixed precision, the recurrent products on bf16 operands "
                   "summed in fp32 (fast where the CPU has AVX512_BF16); default: fp32")
    p.add_argument("--threads", type=_positive(int), help="threads (default: all cores)")
    p.add_argument("--out", default=out, help="where to save the best model so far, "
                   f"after every epoch (default: {out})")
    p.add_argument("--resume", action="store_true",
                   help="go on from the model saved at --out, to --epochs in all")
    p.add_argument("--plot", metavar="PNG", help="save the loss curve (needs matplotlib)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress (otherwise a bar on a terminal, a line per epoch "
                   "in a log)")
    p.add_argument("--distributed", choices=("mpi",),
                   help="data-parallel over the ranks of mpiexec (needs fastlstm[mpi]); "
                   "rank 0 prints and saves")


def parser():
    p = _Parser(prog="fastlstm", description="Train recurrent networks fast on CPUs.")
    p.add_argument("--version", action="version", version=f"fastlstm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{train,complete,generate,series,forecast}")

    t = sub.add_parser("train", help="train a character-level model on text",
                       description="Train a character-level language model on the built-in "
                       "English corpus (or --text FILE), show completions, save it.")
    t.add_argument("--text", metavar="FILE", help="train on this UTF-8 text file instead")
    t.add_argument("--embed", type=_positive(int), default=32, help="embedding size")
    _training_options(t, hidden=256, epochs=20, seq_len=64, batch_size=32, lr=0.01,
                      out="fastlstm-chars.npz", data="the text")

    c = sub.add_parser("complete", help="complete words with a trained model")
    c.add_argument("prefix", nargs="+", help="beginnings of words, e.g. tri")
    c.add_argument("--model", required=True, help="a model saved by `fastlstm train`")
    c.add_argument("--beam", type=_positive(int), default=8, help="beam width")

    g = sub.add_parser("generate", help="sample text from a trained model")
    g.add_argument("--model", required=True, help="a model saved by `fastlstm train`")
    g.add_argument("--prefix", default="", help="text to start from")
    g.add_argument("--length", type=_positive(int), default=300, help="characters")
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--seed", type=int)

    s = sub.add_parser("series", help="predict the next value of a series",
                       description="Train on a series of values (a column of a CSV file, "
                       "or a synthetic price series: a random walk plus a season, from "
                       "--seed) to predict the next value; compare with the naive "
                       "last-value forecast on the last 20%%.")
    s.add_argument("--csv", metavar="FILE", help="read the series from this CSV file "
                   "(a header row naming the columns)")
    s.add_argument("--column", help="the CSV column to read (with --csv)")
    s.add_argument("--length", type=_positive(int), default=5000,
                   help="length of the synthetic series (without --csv)")
    s.add_argument("--metrics", metavar="JSON", help="write the test report here")
    _training_options(s, hidden=32, epochs=30, seq_len=50, batch_size=16, lr=0.01,
                      out="fastlstm-series.npz", data="the training part (the first 80%%)")

    f = sub.add_parser("forecast", help="the next values of a series, from a model "
                       "saved by `fastlstm series`")
    f.add_argument("--model", required=True, help="a model saved by `fastlstm series`")
    f.add_argument("--csv", metavar="FILE", required=True,
                   help="the series so far (a CSV file with a header row)")
    f.add_argument("--column", required=True, help="the CSV column to read")
    f.add_argument("--steps", type=_positive(int), default=1, help="values to forecast")
    return p


def main(argv=None):
    p = parser()
    try:
        args = p.parse_args(argv)
        if args.command is None:
            p.print_help(sys.stderr)
            return 2
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"fastlstm: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        print(f"fastlstm: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError as exc:   # a model or series larger than the machine
        print(f"fastlstm: error: out of memory: {_one_line(exc)}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"fastlstm: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"fastlstm: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("fastlstm: interrupted", file=sys.stderr)
        return 130


def _one_line(exc):
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split())


def _writable_file(option, path):
    """A UsageError unless path can be written: its folder exists and is writable,
    and it is not a folder itself."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a folder, expected a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path)
                                          and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: cannot write there")


def _setup(args):
    """Checks that need no training, done before any: backend, threads, the files
    to write, the plot. Returns the line that says where training runs."""
    if args.threads is not None:
        set_num_threads(args.threads)
    threads, ranks = get_num_threads(), ""
    if args.distributed:
        try:
            comm = communicator(args.distributed)
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        args.rank = comm.rank
        if comm.rank:   # rank 0 alone speaks
            sys.stdout = open(os.devnull, "w")
        if args.threads is None and comm.size > 1:
            threads = local_threads(comm)
        ranks = f" on each of {comm.size} ranks"
    where = f"backend {get_backend(args.backend).name}, {threads} threads{ranks}"
    if args.precision:
        try:
            ops.check_precision(args.precision, np.float32, args.backend)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        name = get_backend(args.backend).name
        kernel = _cy.bf16_kernel()[0] if name.startswith("cython") else "reference"
        where += f", {args.precision} ({kernel})"
    _writable_file("--out", args.out)
    if args.plot:
        _writable_file("--plot", args.plot)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    if getattr(args, "metrics", None):
        _writable_file("--metrics", args.metrics)
    return where


def _resumed(args, kind):
    """With --resume, the line that says from which epoch training goes on, or
    None; the checkpoint must hold a model of this kind."""
    if not args.resume:
        return None
    if not os.path.exists(args.out):
        return f"no checkpoint at {args.out} yet: starting from epoch 1"
    saved, state = load_checkpoint(args.out)
    if not isinstance(saved, kind):
        raise UsageError(f"--resume: {args.out} holds a {type(saved).__name__}, not a "
                         f"{kind.__name__}")
    if state is None:
        raise UsageError(f"--resume: {args.out} holds no training state to go on from")
    done = int(state["meta"]["epoch"])
    if done >= args.epochs:
        return f"resuming from {args.out}: its {done} epochs reach --epochs {args.epochs}"
    return f"resuming from {args.out} after epoch {done} of {args.epochs}"


def _train_kwargs(args):
    return dict(epochs=args.epochs, batch_size=args.batch_size, seq_len=args.seq_len,
                optimizer=Adam(lr=args.lr, weight_decay=args.weight_decay,
                               backend=args.backend),
                clip_norm=args.clip, seed=args.seed, progress=False if args.quiet else "auto",
                checkpoint=args.out, resume=args.resume, distributed=args.distributed,
                validation_split=args.val, callbacks=[CosineLR(args.epochs)],
                restore_best=True, precision=args.precision)


def _check_split(args, n, source, unit):
    """A UsageError unless the n steps of source give --val's part and the training
    part at least 2 steps each (data.held_out), and the training part one window
    of --seq-len + 1."""
    try:
        held = data.held_out(n, args.val, "--val")
    except ValueError as exc:
        raise UsageError(f"{source}: {exc} (or --val 0)") from None
    if n - held < args.seq_len + 1:
        raise UsageError(f"{source}: {n - held:,} {unit} to train on"
                         + (f" after --val {args.val}" if held else "")
                         + f"; one training window needs --seq-len + 1 = "
                         f"{args.seq_len + 1}")


def _fit(args, thing, values):
    """thing.fit(values, ...) from the command's options; Ctrl-C stops it with the
    best finished epoch kept at --out."""
    try:
        return thing.fit(values, **_train_kwargs(args))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {args.out} holds the best finished epoch "
                          "(--resume goes on from the last)") from None


def _kept(args, history):
    """The line that says which epoch --out holds."""
    epoch = history.best_epoch[-1]
    k = history.epoch.index(epoch)
    if args.val:
        ppl = history.val_perplexity[k]
        what = f"the lowest validation loss, {history.val_loss[k]:.4f}" + (
            f" (ppl {ppl:.2f})" if ppl is not None else "")
    else:
        what = f"the lowest training loss, {history.loss[k]:.4f}"
    return f"the model saved is epoch {epoch}'s: {what}"


class Interrupted(Exception):
    """Ctrl-C during training: one line, exit code 130."""


def _describe(args):
    layers = f"{args.layers} layers" if args.layers > 1 else "1 layer"
    return f"{args.cell.upper()} (hidden {args.hidden}, {layers})"


def cmd_train(args):
    where = _setup(args)
    if args.text is None:
        text, source = data.corpus(), "the built-in corpus"
    else:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
        source = args.text
    _check_split(args, len(text), source, "characters")
    resumed = _resumed(args, CharLM)
    lm = CharLM.create(text, cell=args.cell, hidden_size=args.hidden, num_layers=args.layers,
                       embed_size=args.embed, seed=args.seed, backend=args.backend)
    print(f"fastlstm train: character-level {_describe(args)} on {source}: "
          f"{len(text):,} characters, {len(lm.vocab)} symbols{_held(args)}; {where}",
          flush=True)
    if resumed:
        print(resumed, flush=True)
    history = _fit(args, lm, text)
    if getattr(args, "rank", 0):
        return 0
    print("\nloss (cross-entropy, nats per character):")
    print(_indent(history.summary()))
    print(_indent(_kept(args, history)))
    total = sum(history.wall_time)
    if history.tokens_per_s:
        print(f"  {total:.1f} s in all, {history.tokens_per_s[-1]:,.0f} characters/s in "
              "the last epoch")
    # "tri" and "na" for the built-in corpus, then the beginnings of the text's
    # most frequent words.
    common = _common_prefixes(text)
    prefixes = list(REQUESTED_PREFIXES) if args.text is None else common
    print("\ncompletions:")
    for prefix in prefixes:
        try:
            print(f"  {prefix!r:8} -> {prefix + lm.complete(prefix)!r}")
        except ValueError:
            continue
    print("\nsample:")
    print(_indent(lm.generate("the " if "t" in lm.vocab.chars else "", 200, temperature=0.5,
                              seed=args.seed)))
    _plot(args.plot, history, "characters")
    print(f"\nsaved the model to {os.path.abspath(args.out)}\n"
          f"  try: fastlstm complete tri --model {args.out}")
    return 0


def _held(args):
    return f", the last {args.val:.0%} held out to validate on" if args.val else ""


def _common_prefixes(text, n=5):
    """The first three letters of text's most frequent words of 5+ letters (not
    three letters that are a word of the text themselves, as "the" of "there")."""
    words = "".join(c if is_word_char(c) else " " for c in text).split()
    seen, out = set(words), []
    for w, _ in collections.Counter(w for w in words if len(w) >= 5).most_common():
        if w[:3] not in seen:
            seen.add(w[:3])
            out.append(w[:3])
        if len(out) == n:
            break
    return out


def _load_kind(path, kind, made_by):
    model = load(path)
    if not isinstance(model, kind):
        raise UsageError(f"{path}: holds a {type(model).__name__}, not a "
                         f"{kind.__name__} from `fastlstm {made_by}`")
    return model


def cmd_complete(args):
    lm = _load_kind(args.model, CharLM, "train")
    for prefix in args.prefix:
        print(f"{prefix} -> {prefix + lm.complete(prefix, beam=args.beam)}")
    return 0


def cmd_generate(args):
    lm = _load_kind(args.model, CharLM, "train")
    if args.temperature < 0:
        raise UsageError(f"--temperature: expected >= 0, got {args.temperature}")
    print(lm.generate(args.prefix, args.length, temperature=args.temperature, seed=args.seed))
    return 0


def _series_values(args):
    """(values, where they come from) for `series` and `forecast`."""
    if args.csv is None:
        if getattr(args, "column", None):
            raise UsageError("--column: needs --csv")
        if args.length < 100:
            raise UsageError(f"--length: expected >= 100, got {args.length}")
        return (data.price_series(args.length, seed=args.seed),
                f"a price-like series of {args.length:,} steps (seed {args.seed})")
    if not args.column:
        raise UsageError("--csv: needs --column NAME, the column to read")
    values, missing = data.read_series(args.csv, args.column)
    if len(values) < 3:
        raise UsageError(f"{args.csv}: column {args.column!r} has {len(values)} values; "
                         "expected at least 3")
    skipped = f", {missing} missing left out" if missing else ""
    return values, f"{args.csv}, column {args.column!r}: {len(values):,} values{skipped}"


def cmd_series(args):
    where = _setup(args)
    values, source = _series_values(args)
    split = int(0.8 * len(values))
    _check_split(args, split - 1, f"{source} (its first 80%)", "steps")
    resumed = _resumed(args, Forecaster)
    fc = Forecaster.create(values[:split], cell=args.cell, hidden_size=args.hidden,
                           num_layers=args.layers, seed=args.seed, backend=args.backend)
    print(f"fastlstm series: {_describe(args)} on {source}, trained on the first 80% "
          f"({'log' if fc.transform == 'log' else 'difference'} steps{_held(args)}); "
          f"{where}", flush=True)
    if resumed:
        print(resumed, flush=True)
    history = _fit(args, fc, values[:split])
    if getattr(args, "rank", 0):
        return 0
    print("\nloss (MSE of standardised steps):")
    print(_indent(history.summary()))
    print(_indent(_kept(args, history)))
    # The model reads the whole series once, so its state at the test part has
    # seen everything before.
    forecasts = fc.next_values(values)[split - 2:]
    actual, naive = values[split:], values[split - 1:-1]
    report = dict(mse=float(np.mean((actual - forecasts) ** 2)),
                  naive_mse=float(np.mean((actual - naive) ** 2)), n_test=len(actual),
                  transform=fc.transform, source=source)
    report["ratio"] = report["mse"] / report["naive_mse"] if report["naive_mse"] else None
    ratio = f"{report['ratio']:.3f}" if report["ratio"] is not None else "-"
    print(f"\nnext-value MSE on the last {len(actual):,} values:")
    print(f"  model {report['mse']:.6g}   naive last value {report['naive_mse']:.6g}   "
          f"ratio {ratio}")
    if args.metrics:
        with open(args.metrics, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote the report to {os.path.abspath(args.metrics)}")
    _plot(args.plot, history, "steps")
    print(f"\nsaved the model to {os.path.abspath(args.out)}")
    return 0


def cmd_forecast(args):
    fc = _load_kind(args.model, Forecaster, "series")
    values, _ = _series_values(args)
    for value in fc.forecast(values, args.steps):
        print(f"{value:.6g}")
    return 0


def _plot(path, history, unit):
    if not path:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history.epoch, history.loss, marker="o", label="training loss")
    if any(v is not None for v in history.val_loss):
        ax.plot(history.epoch, history.val_loss, marker="o", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean loss per {unit[:-1]}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"saved the loss curve to {os.path.abspath(path)}")


def _indent(text):
    return "\n".join("  " + line for line in text.splitlines())


COMMANDS = {"train": cmd_train, "complete": cmd_complete, "generate": cmd_generate,
            "series": cmd_series, "forecast": cmd_forecast}
