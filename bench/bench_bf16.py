"""precision="bf16" end to end, as a user runs it: fastlstm.train, predict and
generation in bf16 against the same in fp32 (each in a process of its own, the
rounds interleaved), and the accuracy of bf16 training against fp32's.

    python bench/bench_bf16.py --threads 1 2                 # speed
    python bench/bench_bf16.py --accuracy --epochs 8         # accuracy

Speed: bench_train.py's char-LM configs (train: tokens/s of one epoch), predict
(N64 T100) and generation (one character of a CharLM at H256 per step), each as
the ratio of fp32's time to bf16's (above 1: bf16 is faster), with NumPy's sgemm
peak and torch's bf16 matmul peak of the same run. The kernels alone, against
torch's autocast: bench_kernels.py --bf16.

Accuracy: the built-in corpus's CharLM at H128 and H256 and a Forecaster of a
generated price series, trained from the same seed in fp32 and in bf16; the
final training and validation losses and their relative difference, and each
epoch's losses (the curves).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import (CONFIGS, EMBED, GENERATE_H, PREDICT, FastlstmPeer,  # noqa: E402
                         Workers, rounds, train_data)

TRAIN = ("lm-h128", "lm-h256", "lm-h512x2")


class Bf16Peer(FastlstmPeer):
    """FastlstmPeer with its models in precision="bf16"."""

    def setup_train(self, name):
        kind, H, L, *_ = CONFIGS[name]
        _, X, Y, V, B, S = train_data(name)
        self.model = self.fl.Model.for_tokens(V, hidden_size=H, num_layers=L,
                                              embed_size=EMBED)
        self.model.precision = "bf16"
        self.args = (X, Y, B, S)
        self.opt = self.fl.Adam(1e-3)
        self.train_round()

    def setup_predict(self, name):
        super().setup_predict(name)
        self.model.precision = "bf16"

    def setup_generate(self, n_chars):
        super().setup_generate(n_chars)
        self.lm.model.precision = "bf16"

    def bf16_peak(self):
        from bench_kernels import bf16_peak
        return bf16_peak(self.fl.get_num_threads())


PEERS = {"fp32": FastlstmPeer, "bf16": Bf16Peer}


def speed(args):
    keys = [(peer, n) for n in args.threads for peer in PEERS]
    workers = Workers(keys, PEERS)
    rows = []
    try:
        for n in args.threads:
            pair = [("fp32", n), ("bf16", n)]
            sgemm = workers.call(("fp32", n), "peak")
            try:
                bf16 = workers.call(("bf16", n), "bf16_peak")
            except ImportError:
                bf16 = None
            jobs = [("train", name, ("setup_train", name), "train_round") for name in TRAIN]
            jobs += [("predict", name, ("setup_predict", name), "predict_round")
                     for name in PREDICT]
            jobs.append(("generate", f"h{GENERATE_H}", ("setup_generate", args.chars),
                         "generate_round"))
            for kind, name, setup, run in jobs:
                best = rounds(workers, pair, setup, run, args.rounds)
                row = dict(kind=kind, config=name, threads=n, fp32_s=best[pair[0]],
                           bf16_s=best[pair[1]], ratio=best[pair[0]] / best[pair[1]],
                           sgemm_gflops=sgemm, bf16_gflops=bf16)
                rows.append(row)
                print(f"{kind} {name} {n} thr: fp32/bf16 {row['ratio']:.2f}",
                      file=sys.stderr, flush=True)
    finally:
        workers.close()
    return rows


def speed_table(rows):
    out = ["| what | config | threads | fp32 ms | bf16 ms | fp32 / bf16 | sgemm GF/s "
           "| bf16 matmul GF/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bf16 = f"{r['bf16_gflops']:.0f}" if r["bf16_gflops"] else "-"
        out.append(f"| {r['kind']} | {r['config']} | {r['threads']} "
                   f"| {1e3 * r['fp32_s']:.3f} | {1e3 * r['bf16_s']:.3f} | {r['ratio']:.2f} "
                   f"| {r['sgemm_gflops']:.0f} | {bf16} |")
    return "\n".join(out)


def accuracy(args):
    import fastlstm
    text = fastlstm.data.corpus()
    prices = fastlstm.data.price_series(4000, seed=0)
    runs = []
    for what, make, data, kw in (
            ("charlm-h128", lambda: fastlstm.CharLM.create(text, hidden_size=128,
                                                           embed_size=EMBED),
             text, dict(seq_len=64, batch_size=32)),
            ("charlm-h256", lambda: fastlstm.CharLM.create(text, hidden_size=256,
                                                           embed_size=EMBED),
             text, dict(seq_len=64, batch_size=32)),
            ("forecaster-h64", lambda: fastlstm.Forecaster.create(prices, hidden_size=64),
             prices, dict(seq_len=50, batch_size=16))):
        curves = {}
        for precision in (None, "bf16"):
            thing = make()
            t0 = time.perf_counter()
            h = thing.fit(data, epochs=args.epochs, validation_split=0.1, seed=0,
                          progress=False, precision=precision, **kw)
            curves[precision or "fp32"] = dict(loss=list(h.loss), val_loss=list(h.val_loss),
                                               seconds=time.perf_counter() - t0)
        f, b = curves["fp32"], curves["bf16"]
        runs.append(dict(model=what, epochs=args.epochs, curves=curves,
                         train_diff=b["loss"][-1] / f["loss"][-1] - 1,
                         val_diff=b["val_loss"][-1] / f["val_loss"][-1] - 1))
        print(f"{what}: train {f['loss'][-1]:.4f} fp32, {b['loss'][-1]:.4f} bf16; "
              f"val {f['val_loss'][-1]:.4f}, {b['val_loss'][-1]:.4f}", file=sys.stderr,
              flush=True)
    return runs


def accuracy_table(runs):
    out = ["| model | epochs | fp32 train | bf16 train | diff | fp32 val | bf16 val | diff "
           "| fp32 s | bf16 s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        f, b = r["curves"]["fp32"], r["curves"]["bf16"]
        out.append(f"| {r['model']} | {r['epochs']} | {f['loss'][-1]:.4f} "
                   f"| {b['loss'][-1]:.4f} | {100 * r['train_diff']:+.2f}% "
                   f"| {f['val_loss'][-1]:.4f} | {b['val_loss'][-1]:.4f} "
                   f"| {100 * r['val_diff']:+.2f}% | {f['seconds']:.1f} "
                   f"| {b['seconds']:.1f} |")
    return "\n".join(out)


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2))
    for ax, r in zip(np.atleast_1d(axes), runs):
        for name, style in (("fp32", "-"), ("bf16", "--")):
            c = r["curves"][name]
            epochs = np.arange(1, len(c["loss"]) + 1)
            ax.plot(epochs, c["loss"], style, color="C0", label=f"train {name}")
            ax.plot(epochs, c["val_loss"], style, color="C1", label=f"val {name}")
        ax.set_title(r["model"])
        ax.set_xlabel("epoch")
    np.atleast_1d(axes)[0].set_ylabel("loss")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chars", type=int, default=300, help="characters per generation round")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--json")
    ap.add_argument("--png", help="the accuracy curves")
    args = ap.parse_args(argv)
    import fastlstm
    from fastlstm import config
    config.show_config()
    meta = dict(cpu=config.cpu_model(), bf16=fastlstm._cy.bf16_kernel(),
                date=time.strftime("%Y-%m-%d %H:%M"),
                command="python bench/bench_bf16.py " + " ".join(argv or sys.argv[1:]))
    result = accuracy(args) if args.accuracy else speed(args)
    print(accuracy_table(result) if args.accuracy else speed_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=result), f, indent=1)
    if args.accuracy and args.png:
        plot(result, args.png)


if __name__ == "__main__":
    main()
