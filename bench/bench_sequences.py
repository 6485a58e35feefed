"""Sequences of their own lengths, and bidirectional stacks, against torch.

    python bench/bench_sequences.py --threads 1 2 --json bench/out/seq.json \
        --md bench/out/seq.md

Two measures, each peer in a process of its own, rounds interleaved, best round
kept (bench_train.py's workers):

- the train step of one recurrent layer (forward and BPTT through the public
  layer: fastlstm.LSTM(...).forward(x, lengths=L) and its backprop, against
  torch.nn.LSTM forward and backward()), padded to T against each row's own
  length (fastlstm: lengths=; torch: a packed sequence), one and two directions;
- one epoch of what a user runs to label sequences: fastlstm.train on
  Model.for_classes with lengths=, against the torch loop (a packed sequence
  through nn.LSTM, Linear on h_n, cross-entropy, backward(), clip_grad_norm_,
  Adam), one and two directions.

Shapes: T = 100, B = 64, I = 64, H = 256, float32; lengths uniform in [1, T]
(mean T/2), the same draw for every peer.
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

T, B, I, H = 100, 64, 64, 256
N_ROWS, CLASSES = 512, 4
CELLS = ("lstm", "gru")


def data(rows=B, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, rows, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, rows)
    dy = rng.standard_normal((T, rows, H)).astype(np.float32)
    labels = rng.integers(0, CLASSES, rows)
    return x, lengths, dy, labels


class FastlstmPeer:
    def __init__(self, threads):
        import fastlstm
        self.fl = fastlstm
        fastlstm.set_num_threads(threads)

    def setup_step(self, cell, bidirectional, mode):
        layer = getattr(self.fl, cell.upper())(I, H, bidirectional=bidirectional)
        x, lengths, dy, _ = data()
        dy = np.concatenate([dy] * layer.directions, axis=2)
        self.step = (layer, x, None if mode == "padded" else lengths, dy)
        self.step_round()

    def step_round(self):
        layer, x, lengths, dy = self.step
        t0 = time.perf_counter()
        _, _, backprop = layer.forward(x, lengths=lengths)
        backprop(dy)
        return time.perf_counter() - t0

    def setup_classes(self, cell, bidirectional):
        x, lengths, _, labels = data(N_ROWS, seed=1)
        self.model = self.fl.Model.for_classes(I, CLASSES, cell=cell, hidden_size=H,
                                               bidirectional=bidirectional)
        self.args = (x.swapaxes(0, 1), labels, lengths)
        self.opt = self.fl.Adam(1e-3)
        self.classes_round()

    def classes_round(self):
        X, y, lengths = self.args
        t0 = time.perf_counter()
        self.fl.train(self.model, X, y, lengths=lengths, epochs=1, batch_size=B,
                      optimizer=self.opt, clip_norm=5.0, progress=False)
        return time.perf_counter() - t0


class TorchPeer:
    def __init__(self, threads):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)

    def _pack(self, x, lengths):
        return self.torch.nn.utils.rnn.pack_padded_sequence(
            x, self.torch.from_numpy(lengths), enforce_sorted=False)

    def setup_step(self, cell, bidirectional, mode):
        torch = self.torch
        net = getattr(torch.nn, cell.upper())(I, H, bidirectional=bidirectional)
        x, lengths, dy, _ = data()
        D = 2 if bidirectional else 1
        self.step = (net, torch.from_numpy(x), None if mode == "padded" else lengths,
                     torch.from_numpy(np.concatenate([dy] * D, axis=2)))
        self.step_round()

    def step_round(self):
        net, x, lengths, dy = self.step
        t0 = time.perf_counter()
        if lengths is None:
            y, _ = net(x)
        else:
            y, _ = net(self._pack(x, lengths))
            y, _ = self.torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)
        (y * dy).sum().backward()
        return time.perf_counter() - t0

    def setup_classes(self, cell, bidirectional):
        torch = self.torch
        x, lengths, _, labels = data(N_ROWS, seed=1)
        self.net = getattr(torch.nn, cell.upper())(I, H, bidirectional=bidirectional)
        D = 2 if bidirectional else 1
        self.head = torch.nn.Linear(D * H, CLASSES)
        self.params = list(self.net.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(self.params, 1e-3)
        self.args = (torch.from_numpy(x), torch.from_numpy(labels), lengths)
        self.classes_round()

    def classes_round(self):
        torch = self.torch
        X, y, lengths = self.args
        order = torch.from_numpy(np.random.default_rng().permutation(N_ROWS))
        t0 = time.perf_counter()
        for b0 in range(0, N_ROWS, B):
            rows = order[b0:b0 + B]
            _, h = self.net(self._pack(X[:, rows], lengths[rows.numpy()]))
            h = h[0] if isinstance(h, tuple) else h
            last = torch.cat(list(h[-(2 if self.net.bidirectional else 1):]), dim=1)
            loss = torch.nn.functional.cross_entropy(self.head(last), y[rows])
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 5.0)
            self.opt.step()
        return time.perf_counter() - t0


PEERS = {"fastlstm": FastlstmPeer, "torch": TorchPeer}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=["rnn", *CELLS])
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)
    keys = [(peer, n) for n in args.threads for peer in PEERS]
    workers = Workers(keys, PEERS)
    rows = []
    try:
        for n in args.threads:
            mine = [k for k in keys if k[1] == n]
            for cell in args.cells:
                for bi in (False, True):
                    best = {}
                    for mode in ("padded", "lengths"):
                        b = rounds(workers, mine, ("setup_step", cell, bi, mode), "step_round",
                                   args.rounds)
                        best.update({(peer, mode): s for (peer, _), s in b.items()})
                    row = dict(measure="layer train step", cell=cell, bidirectional=bi,
                               threads=n, **{f"{p}_{m}_ms": 1e3 * s
                                             for (p, m), s in best.items()})
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    b = rounds(workers, mine, ("setup_classes", cell, bi), "classes_round",
                               max(3, args.rounds // 2))
                    row = dict(measure="train epoch, one label per row", cell=cell,
                               bidirectional=bi, threads=n,
                               **{f"{p}_lengths_ms": 1e3 * s for (p, _), s in b.items()})
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        workers.close()
    meta = dict(cpu=cpu_model(), cores=os.cpu_count(), python=platform.python_version(),
                shapes=dict(T=T, B=B, I=I, H=H, rows=N_ROWS, classes=CLASSES),
                command="python bench/bench_sequences.py " + " ".join(argv or sys.argv[1:]))
    report(args, meta, rows, table(rows, meta))


def table(rows, meta):
    lines = [f"CPU: {meta['cpu']} ({meta['cores']} cores); T={T}, B={B}, I={I}, H={H}, "
             "float32, lengths uniform in [1, T]", "",
             "| measure | cell | directions | threads | fastlstm padded ms | fastlstm lengths "
             "ms | lengths / padded | torch padded ms | torch packed ms | torch packed / "
             "fastlstm lengths |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pad, lens = r.get("fastlstm_padded_ms"), r["fastlstm_lengths_ms"]
        tpad, tpack = r.get("torch_padded_ms"), r["torch_lengths_ms"]
        fmt = lambda v: "" if v is None else f"{v:.1f}"
        lines.append(f"| {r['measure']} | {r['cell']} | {2 if r['bidirectional'] else 1} | "
                     f"{r['threads']} | {fmt(pad)} | {lens:.1f} | "
                     f"{'' if pad is None else f'{lens / pad:.2f}'} | {fmt(tpad)} | "
                     f"{tpack:.1f} | {tpack / lens:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
