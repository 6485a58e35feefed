"""One value a sequence (many-to-one regression) against torch, as users run it.

    python bench/bench_regression.py --threads 1 2 --json bench/out/regression.json \
        --md bench/out/regression.md

Each peer in a process of its own, rounds interleaved, best round kept
(bench_train.py's workers); NumPy's sgemm peak measured in the same run:

- one epoch of fastlstm.train on Model.for_regression (Adam, clip_norm 5, batches
  of B rows shuffled) against the torch loop on the same model (nn.LSTM, its last
  step into Linear, MSE, backward(), clip_grad_norm_, Adam), small stacked models
  and a long recording a few rows at a time (TRAIN below), float32 and float64;
- predict of long sequences at small batch (PREDICT below): model.predict against
  torch's forward under no_grad, the same model;
- with --bf16, float32 rows also run fastlstm at precision="bf16" and torch under
  torch.autocast("cpu", torch.bfloat16), each in its own process.

% of peak counts the recurrent GEMMs only: 2 (I + H) 4H flops a row and step and
layer for the forward, three times that for a train step.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_train import Workers, report, rounds   # noqa: E402
from fastlstm.config import cpu_model   # noqa: E402

# (name, F, H, layers, B, T, rows an epoch): small stacked models, as users of
# such models report, and a long recording trained a few rows at a time
TRAIN = [("F1 H32x2 B16 T50", 1, 32, 2, 16, 50, 512),
         ("F4 H64x2 B32 T100", 4, 64, 2, 32, 100, 512),
         ("F8 H128x3 B64 T30", 8, 128, 3, 64, 30, 512),
         ("F4 H64x2 B8 T1000", 4, 64, 2, 8, 1000, 64)]
# (name, F, H, layers, B, T, rows): long recordings, few at a time
PREDICT = [("F4 H256x2 B1 T2000", 4, 256, 2, 1, 2000, 1),
           ("F4 H256x2 B8 T2000", 4, 256, 2, 8, 2000, 8)]


def data(F, T, rows, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, T, F)).astype(dtype)
    y = (X[:, -5:, 0].mean(axis=1) + 0.1 * rng.standard_normal(rows)).astype(dtype)
    return X, y


def flops(F, H, layers, T, rows):
    """The recurrent GEMMs' flops of one forward over rows sequences of T steps."""
    return sum(2.0 * (F if k == 0 else H) + 2.0 * H for k in range(layers)) * 4 * H * T * rows


class FastlstmPeer:
    precision = None

    def __init__(self, threads):
        import fastlstm
        self.fl = fastlstm
        fastlstm.set_num_threads(threads)

    def _model(self, F, H, layers, dtype):
        model = self.fl.Model.for_regression(F, 1, hidden_size=H, num_layers=layers,
                                             dtype=dtype)
        model.precision = self.precision
        return model

    def setup_train(self, F, H, layers, B, T, rows, dtype):
        X, y = data(F, T, rows, dtype)
        self.model = self._model(F, H, layers, dtype)
        self.opt, self.args = self.fl.Adam(1e-3), (X, y, B)
        self.epoch = 0
        self.train_round()

    def train_round(self):
        X, y, B = self.args
        self.epoch += 1
        t0 = time.perf_counter()
        self.fl.train(self.model, X, y, epochs=1, batch_size=B, optimizer=self.opt,
                      clip_norm=5.0, seed=self.epoch, progress=False)
        return time.perf_counter() - t0

    def setup_predict(self, F, H, layers, B, T, rows, dtype):
        self.X = data(F, T, rows, dtype)[0]
        self.model = self._model(F, H, layers, dtype)
        self.predict_round()

    def predict_round(self):
        t0 = time.perf_counter()
        self.model.predict(self.X)
        return time.perf_counter() - t0


class TorchPeer:
    autocast = False

    def __init__(self, threads):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)

    def _precision(self):
        return self.torch.autocast("cpu", self.torch.bfloat16, enabled=self.autocast)

    def _net(self, F, H, layers, dtype):
        torch = self.torch
        tdtype = torch.float32 if dtype == "float32" else torch.float64
        lstm = torch.nn.LSTM(F, H, layers, batch_first=True).to(tdtype)
        head = torch.nn.Linear(H, 1).to(tdtype)
        return lstm, head

    def setup_train(self, F, H, layers, B, T, rows, dtype):
        torch = self.torch
        X, y = data(F, T, rows, dtype)
        self.lstm, self.head = self._net(F, H, layers, dtype)
        self.params = list(self.lstm.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(self.params, 1e-3)
        self.args = (torch.from_numpy(X), torch.from_numpy(y)[:, None], B)
        self.train_round()

    def train_round(self):
        torch = self.torch
        X, y, B = self.args
        order = torch.from_numpy(np.random.default_rng().permutation(len(X)))
        t0 = time.perf_counter()
        for b0 in range(0, len(X), B):
            rows = order[b0:b0 + B]
            with self._precision():
                out, _ = self.lstm(X[rows])
                loss = torch.nn.functional.mse_loss(self.head(out[:, -1]), y[rows])
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 5.0)
            self.opt.step()
        return time.perf_counter() - t0

    def setup_predict(self, F, H, layers, B, T, rows, dtype):
        self.X = self.torch.from_numpy(data(F, T, rows, dtype)[0])
        self.lstm, self.head = self._net(F, H, layers, dtype)
        self.predict_round()

    def predict_round(self):
        t0 = time.perf_counter()
        with self.torch.no_grad(), self._precision():
            out, _ = self.lstm(self.X)
            self.head(out[:, -1])
        return time.perf_counter() - t0


class FastlstmBf16Peer(FastlstmPeer):
    precision = "bf16"


class TorchBf16Peer(TorchPeer):
    autocast = True


PEERS = {"fastlstm": FastlstmPeer, "torch": TorchPeer,
         "fastlstm-bf16": FastlstmBf16Peer, "torch-bf16": TorchBf16Peer}
FP32_PEERS = ["fastlstm", "torch"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-predict", action="store_true")
    ap.add_argument("--bf16", action="store_true",
                    help="float32 rows also in bf16: fastlstm's and torch's autocast")
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)
    peers = list(PEERS) if args.bf16 else FP32_PEERS
    keys = [(peer, n) for n in args.threads for peer in peers]
    workers = Workers(keys, PEERS)
    rows = []
    try:
        peak = {n: max(workers.call(("fastlstm", n), "peak") for _ in range(2))
                for n in args.threads}
        jobs = ([] if args.no_train else [("train epoch", c, d) for c in TRAIN
                                          for d in args.dtypes]) \
            + ([] if args.no_predict else [("predict", c, "float32") for c in PREDICT])
        for n in args.threads:
            for measure, (name, F, H, layers, B, T, n_rows), dtype in jobs:
                mine = [k for k in keys if k[1] == n
                        and (dtype == "float32" or k[0] in FP32_PEERS)]
                kind = "train" if measure == "train epoch" else "predict"
                best = rounds(workers, mine,
                              (f"setup_{kind}", F, H, layers, B, T, n_rows, dtype),
                              f"{kind}_round", args.rounds)
                work = flops(F, H, layers, T, n_rows) * (3 if kind == "train" else 1)
                row = dict(measure=measure, config=name, dtype=dtype, threads=n, rows=n_rows,
                           peak_gflops=peak[n],
                           **{f"{p}_ms": 1e3 * s for (p, _), s in best.items()},
                           **{f"{p}_pct_peak": 100 * work / s / (peak[n] * 1e9)
                              for (p, _), s in best.items()})
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        workers.close()
    from fastlstm import _cy
    meta = dict(cpu=cpu_model(), level=_cy.level(), cores=os.cpu_count(),
                python=platform.python_version(),
                command="python bench/bench_regression.py " + " ".join(argv or sys.argv[1:]))
    report(args, meta, rows, table(rows, meta))


def table(rows, meta):
    bf16 = any("fastlstm-bf16_ms" in r for r in rows)
    extra = (" fastlstm bf16 ms | torch fp32 / fastlstm bf16 | torch bf16 / fastlstm bf16 |"
             if bf16 else "")
    lines = [f"CPU: {meta['cpu']} ({meta['cores']} cores), level {meta['level']}; "
             "% of the sgemm peak of the same run", "",
             "| measure | model | rows | dtype | threads | fastlstm ms | % peak | torch ms "
             "| % peak | torch / fastlstm |" + extra,
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * extra.count("|")]
    for r in rows:
        line = (f"| {r['measure']} | {r['config']} | {r['rows']} | {r['dtype']} "
                f"| {r['threads']} | {r['fastlstm_ms']:.1f} | {r['fastlstm_pct_peak']:.0f}% | "
                f"{r['torch_ms']:.1f} | {r['torch_pct_peak']:.0f}% | "
                f"{r['torch_ms'] / r['fastlstm_ms']:.2f} |")
        if bf16:
            mine = r.get("fastlstm-bf16_ms")
            line += (" - | - | - |" if mine is None else
                     f" {mine:.1f} | {r['torch_ms'] / mine:.2f} | "
                     f"{r['torch-bf16_ms'] / mine:.2f} |")
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
