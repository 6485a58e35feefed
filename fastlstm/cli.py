"""The `fastlstm` command: train | complete | generate | series.

Bad arguments, unreadable files and bad checkpoints end with one line on stderr
and exit code 2; a diverged training run with exit code 1.
"""
import argparse
import collections
import os
import sys

import numpy as np

from . import data
from ._version import __version__
from ._threads import get_num_threads, set_num_threads
from .backends import NAMES, get_backend
from .io import load, save
from .model import CELLS, Model
from .text import CharLM, is_word_char
from .train import TrainingDiverged, train

REQUESTED_PREFIXES = ("tri", "na")


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


def _training_options(p, hidden, epochs, seq_len, batch_size, lr, out):
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--hidden", type=_positive(int), default=hidden, help="hidden units")
    p.add_argument("--layers", type=_positive(int), default=1, help="stacked layers")
    p.add_argument("--epochs", type=_positive(int), default=epochs)
    p.add_argument("--seq-len", type=_positive(int), default=seq_len,
                   help="truncated BPTT window (steps)")
    p.add_argument("--batch-size", type=_positive(int), default=batch_size)
    p.add_argument("--lr", type=_positive(float), default=lr, help="Adam's learning rate")
    p.add_argument("--clip", type=_positive(float), default=5.0,
                   help="clip gradients to this global L2 norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("auto",) + NAMES, default="auto")
    p.add_argument("--threads", type=_positive(int), help="threads (default: all cores)")
    p.add_argument("--out", default=out, help=f"where to save the model (default: {out})")
    p.add_argument("--plot", metavar="PNG", help="save the loss curve (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parser():
    p = _Parser(prog="fastlstm", description="Train recurrent networks fast on CPUs.")
    p.add_argument("--version", action="version", version=f"fastlstm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{train,complete,generate,series}")

    t = sub.add_parser("train", help="train a character-level model on text",
                       description="Train a character-level language model on the built-in "
                       "English corpus (or --text FILE), show completions, save it.")
    t.add_argument("--text", metavar="FILE", help="train on this UTF-8 text file instead")
    t.add_argument("--embed", type=_positive(int), default=32, help="embedding size")
    _training_options(t, hidden=128, epochs=80, seq_len=64, batch_size=32, lr=0.01,
                      out="fastlstm-chars.npz")

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

    s = sub.add_parser("series", help="predict the next value of a price-like series",
                       description="Train on a synthetic price series (random walk plus a "
                       "season, from --seed) to predict the next value; compare with the "
                       "naive last-value forecast on the last 20%%.")
    s.add_argument("--length", type=_positive(int), default=5000, help="series length")
    _training_options(s, hidden=32, epochs=30, seq_len=50, batch_size=16, lr=0.01,
                      out="fastlstm-series.npz")
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
    except TrainingDiverged as exc:
        print(f"fastlstm: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastlstm: interrupted", file=sys.stderr)
        return 130


def _one_line(exc):
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split())


def _setup(args):
    """Checks that need no training, done before any: backend, threads, plot."""
    if args.threads is not None:
        set_num_threads(args.threads)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    return f"backend {get_backend(args.backend).name}, {get_num_threads()} threads"


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
    if len(text) < 2:
        raise UsageError(f"{source}: needs at least 2 characters of text")
    lm = CharLM.create(text, cell=args.cell, hidden_size=args.hidden, num_layers=args.layers,
                       embed_size=args.embed, seed=args.seed, backend=args.backend)
    print(f"fastlstm train: character-level {_describe(args)} on {source}: "
          f"{len(text):,} characters, {len(lm.vocab)} symbols; {where}", flush=True)
    history = lm.fit(text, epochs=args.epochs, batch_size=args.batch_size,
                     seq_len=args.seq_len, lr=args.lr, clip_norm=args.clip, seed=args.seed,
                     progress=not args.quiet)
    print("\nloss (cross-entropy, nats per character):")
    print(_indent(history.summary()))
    total = sum(history.wall_time)
    print(f"  {total:.1f} s in all, {history.tokens_per_s[-1]:,.0f} characters/s in the "
          "last epoch")
    # "tri" and "na" for the built-in corpus, then the beginnings of the text's
    # most frequent words.
    common = _common_prefixes(text)
    prefixes = (list(REQUESTED_PREFIXES) if args.text is None else []) + common
    prefixes = list(dict.fromkeys(prefixes))[:5]
    print("\ncompletions:")
    for prefix in prefixes:
        try:
            print(f"  {prefix!r:8} -> {prefix + lm.complete(prefix)!r}")
        except ValueError:
            continue
    print("\nsample:")
    print(_indent(lm.generate("the " if "t" in lm.vocab.chars else "", 200, temperature=0.5,
                              seed=args.seed)))
    save(lm, args.out)
    _plot(args.plot, history, "characters")
    print(f"\nsaved the model to {os.path.abspath(args.out)}\n"
          f"  try: fastlstm complete tri --model {args.out}")
    return 0


def _common_prefixes(text, n=5):
    """The first three letters of text's most frequent words of 5+ letters."""
    words = "".join(c if is_word_char(c) else " " for c in text).split()
    seen, out = set(), []
    for w, _ in collections.Counter(w for w in words if len(w) >= 5).most_common():
        if w[:3] not in seen:
            seen.add(w[:3])
            out.append(w[:3])
        if len(out) == n:
            break
    return out


def _load_charlm(path):
    model = load(path)
    if not isinstance(model, CharLM):
        raise UsageError(f"{path}: holds a {type(model).__name__}, not a character model "
                         "from `fastlstm train`")
    return model


def cmd_complete(args):
    lm = _load_charlm(args.model)
    for prefix in args.prefix:
        print(f"{prefix} -> {prefix + lm.complete(prefix, beam=args.beam)}")
    return 0


def cmd_generate(args):
    lm = _load_charlm(args.model)
    if args.temperature < 0:
        raise UsageError(f"--temperature: expected >= 0, got {args.temperature}")
    print(lm.generate(args.prefix, args.length, temperature=args.temperature, seed=args.seed))
    return 0


def cmd_series(args):
    where = _setup(args)
    if args.length < 100:
        raise UsageError(f"--length: expected >= 100, got {args.length}")
    price = data.price_series(args.length, seed=args.seed)
    d = np.diff(price)
    split = int(0.8 * len(d))
    mu, sd = d[:split].mean(), d[:split].std()
    z = ((d - mu) / sd)[:, None]
    X, Y = data.next_step_rows(z[:split], 4 * args.seq_len)
    model = Model.for_series(1, cell=args.cell, hidden_size=args.hidden,
                             num_layers=args.layers, seed=args.seed, backend=args.backend)
    print(f"fastlstm series: {_describe(args)} on a price-like series of {args.length:,} "
          f"steps (seed {args.seed}), trained on the first 80%; {where}", flush=True)
    history = train(model, X, Y, epochs=args.epochs, batch_size=args.batch_size,
                    seq_len=args.seq_len, lr=args.lr, clip_norm=args.clip, seed=args.seed,
                    progress=not args.quiet)
    print("\nloss (MSE of standardised steps):")
    print(_indent(history.summary()))
    # The model reads the whole series once, so its state at the test part has
    # seen everything before; pred[t] forecasts step d[t + 1].
    pred = model.predict(z[None, :-1])[0, :, 0] * sd + mu
    err_model = d[split:] - pred[split - 1:]
    err_naive = d[split:]
    mse_model, mse_naive = np.mean(err_model ** 2), np.mean(err_naive ** 2)
    print(f"\nnext-value MSE on the last {len(err_naive):,} steps:")
    print(f"  model {mse_model:.4f}   naive last value {mse_naive:.4f}   "
          f"ratio {mse_model / mse_naive:.3f}")
    save(model, args.out)
    _plot(args.plot, history, "steps")
    print(f"\nsaved the model to {os.path.abspath(args.out)}")
    return 0


def _plot(path, history, unit):
    if not path:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history.epoch, history.loss, marker="o", label="training loss")
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
            "series": cmd_series}
