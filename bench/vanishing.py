"""Why LSTM: vanishing and exploding gradients, measured.

1. ||dL/dh_t|| against the distance from the loss at initialisation, for the tanh
   RNN, LSTM and GRU (log scale) -> vanishing_gradients.png.
2. The adding problem (Hochreiter & Schmidhuber, 1997) at several lengths T, every
   cell on the same budget -> the held-out MSE table (always answering 1 scores
   1/6 ~ 0.167).
3. A tanh RNN with large recurrent weights trained by SGD without and with
   clip_norm: the loss and the gradient norm per step -> exploding_gradients.png.

    python bench/vanishing.py [--out bench/out] [--threads 2] [--quick]

Prints Markdown; writes vanishing.json and the PNGs to --out.
"""
import argparse
import json
import os
import platform
import time

import numpy as np

import fastlstm
from fastlstm.data import adding_problem
from fastlstm.diagnostics import GradientNorms, gradient_norms
from fastlstm.model import Model

CELLS = ("rnn", "lstm", "gru")
BASELINE = 1 / 6


def norms_at_init(T, hidden, seed):
    """{cell: ||dL/dh_t|| for t = 0..T-1} on one adding-problem batch."""
    X, Y, _ = adding_problem(32, T, seed=seed)
    return {cell: gradient_norms(Model.for_series(2, n_outputs=1, cell=cell,
                                                  hidden_size=hidden, seed=seed), X, Y)
            for cell in CELLS}


def adding(cell, T, hidden, n_train, epochs, seed):
    """Held-out MSE after training cell on the adding problem; and the seconds."""
    X, Y, mask = adding_problem(n_train, T, seed=seed)
    Xv, Yv, mv = adding_problem(1000, T, seed=seed + 1)
    model = Model.for_series(2, n_outputs=1, cell=cell, hidden_size=hidden, seed=seed)
    start = time.perf_counter()
    h = fastlstm.train(model, X, Y, mask=mask, epochs=epochs, batch_size=50, lr=0.01,
                       clip_norm=1.0, validation=(Xv, Yv, mv), seed=seed, progress=False)
    return h.val_loss, time.perf_counter() - start


def exploding(clip_norm, T, hidden, scale, steps, seed):
    """Per-step loss and gradient norm of a tanh RNN whose recurrent weights are
    scale times an orthogonal matrix, trained by SGD on the adding problem. A
    NaN/inf step is recorded and skipped (on_nan="skip")."""
    X, Y, mask = adding_problem(steps * 20, T, seed=seed)
    model = Model.for_series(2, n_outputs=1, cell="rnn", hidden_size=hidden, seed=seed)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((hidden, hidden)))
    model.params["0.0.Wh"][...] = scale * q
    log = GradientNorms()
    fastlstm.train(model, X, Y, mask=mask, epochs=1, batch_size=20,
                   optimizer=fastlstm.SGD(lr=0.05, momentum=0.9), clip_norm=clip_norm,
                   callbacks=[log], on_nan="skip", seed=seed, progress=False)
    return np.array(log.losses), np.array(log.norms)


def plot_norms(norms, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, n in norms.items():
        distance = np.arange(len(n))[::-1]
        ax.semilogy(distance, n / n[-1], label=cell.upper())
    ax.set_xlabel("distance from the loss (steps)")
    ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T||")
    ax.set_title("Gradient reaching back, at initialisation")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_exploding(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, (losses, norms) in runs.items():
        steps = np.arange(len(losses))
        axes[0].semilogy(steps, np.where(np.isfinite(losses), losses, np.nan), label=label)
        axes[1].semilogy(steps, np.where(np.isfinite(norms), norms, np.nan), label=label)
    axes[0].set_ylabel("training loss (MSE)")
    axes[1].set_ylabel("gradient norm before clipping")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("tanh RNN with large recurrent weights, SGD")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--Ts", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--train", type=int, default=10000, help="training sequences")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny budgets")
    a = p.parse_args()
    if a.quick:
        a.Ts, a.train, a.epochs, a.hidden = [10, 20], 500, 2, 16
    if a.threads:
        fastlstm.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    start = time.perf_counter()
    result = dict(machine=platform.processor() or platform.machine(),
                  threads=fastlstm.get_num_threads(), backend=Model.for_series(1).backend,
                  hidden=a.hidden, train=a.train, epochs=a.epochs, batch_size=50,
                  seed=a.seed)
    print(f"# Vanishing and exploding gradients ({result['threads']} threads, hidden "
          f"{a.hidden}, seed {a.seed})\n")

    T0 = max(a.Ts)
    norms = norms_at_init(T0, a.hidden, a.seed)
    result["norms_at_init"] = {c: n.tolist() for c, n in norms.items()}
    print(f"## ||dL/dh_t|| / ||dL/dh_T|| at initialisation (T = {T0}, batch 32)\n")
    distances = [d for d in (1, 10, 25, 50, 99) if d < T0]
    print("| cell | " + " | ".join(f"{d} steps back" for d in distances) + " |")
    print("|---|" + "---|" * len(distances))
    for cell, n in norms.items():
        print(f"| {cell.upper()} | " + " | ".join(f"{n[-1 - d] / n[-1]:.1e}"
                                               for d in distances) + " |")
    plot_norms(norms, os.path.join(a.out, "vanishing_gradients.png"))

    print(f"\n## The adding problem: held-out MSE after {a.epochs} epochs of "
          f"{a.train} sequences (batch 50, Adam lr 0.01, clip 1.0; baseline 0.167)\n")
    print("| cell | " + " | ".join(f"T = {T}" for T in a.Ts) + " | seconds |")
    print("|---|" + "---|" * (len(a.Ts) + 1))
    result["adding"] = {}
    for cell in CELLS:
        row, seconds = [], 0.0
        for T in a.Ts:
            curve, s = adding(cell, T, a.hidden, a.train, a.epochs, a.seed)
            result["adding"][f"{cell} {T}"] = dict(val_mse=curve, seconds=s)
            row.append(curve[-1])
            seconds += s
        print(f"| {cell.upper()} | " + " | ".join(f"{m:.4f}" for m in row)
              + f" | {seconds:.0f} |", flush=True)

    print("\n## tanh RNN, recurrent weights 3 x orthogonal, SGD (lr 0.05, momentum 0.9), "
          "T = 50\n")
    runs = {}
    print("| clip_norm | max gradient norm | NaN/inf steps | max loss | final loss |")
    print("|---|---|---|---|---|")
    for clip in (None, 1.0):
        losses, grad_norms = exploding(clip, 50, a.hidden, 3.0, 200 if not a.quick else 20,
                                       a.seed)
        label = f"clip_norm={clip}"
        runs[label] = (losses, grad_norms)
        finite = losses[np.isfinite(losses)]
        result[f"exploding {label}"] = dict(loss=losses.tolist(), grad_norm=grad_norms.tolist())
        print(f"| {clip} | {np.nanmax(np.where(np.isfinite(grad_norms), grad_norms, np.nan)):.3g} "
              f"| {np.count_nonzero(~np.isfinite(losses) | ~np.isfinite(grad_norms))} "
              f"| {finite.max():.3g} | {finite[-20:].mean():.3g} |")
    plot_exploding(runs, os.path.join(a.out, "exploding_gradients.png"))
    result["seconds"] = time.perf_counter() - start
    with open(os.path.join(a.out, "vanishing.json"), "w") as f:
        json.dump(result, f)
    print(f"\n{result['seconds']:.0f} s in all; plots and JSON in {a.out}")


if __name__ == "__main__":
    main()
