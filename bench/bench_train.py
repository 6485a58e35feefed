"""What a user runs, end to end, against the same thing written with torch:
`fastlstm.train()` against the ordinary torch loop (forward, backward(),
clip_grad_norm_, Adam's step), `Model.predict` against torch's no_grad forward,
and `CharLM.generate` against torch's per-character loop.

    python bench/bench_train.py --threads 1 2 --json bench/out/train.json \
        --md bench/out/train.md --png bench/out/train.png

Each peer runs in a process of its own (so that neither's thread pool spins
beside the other's), at the same thread count, on the same data and
hyper-parameters; the parent takes them in turn, round after round, and keeps
each one's best round. A round of training is one epoch of fastlstm.train (or
the torch loop over the same batches and windows, the state carried between
windows as truncated BPTT). Reported: tokens/s (a token is one time step of one
row), the ratio torch time / fastlstm time (above 1: fastlstm is faster), and the
fraction of the fp32 peak that each reaches, the peak being NumPy's sgemm
(2048^3, float32) measured in the same worker. FLOPs counted per token:
training 6*4H*(I+H) per LSTM layer plus the head's 6*H*V (GRU 3H, RNN H instead
of 4H); a forward a third of that.

--busy also times fastlstm's training (H256, B64, S100) on 1 and 2 threads
while another process spins on one core. --neighbour times that training on 2
threads alone, and right after a call of another runtime in the same process
(an ONNX Runtime LSTM session of 2 threads, whose pool spins after each call, and
torch's LSTM): the governor must not take that pool for a competing process. --memory measures the peak resident
memory of predict on a long series against one (N, T, H) float32 array.
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time

import numpy as np

# name: (kind, hidden, layers, batch, window, features)
CONFIGS = {
    "lm-h128": ("tokens", 128, 1, 32, 64, None),
    "lm-h256": ("tokens", 256, 1, 64, 100, None),
    "lm-h512x2": ("tokens", 512, 2, 32, 100, None),
    "series-f1-h32": ("series", 32, 1, 32, 50, 1),
    "series-f1-h128": ("series", 128, 1, 32, 50, 1),
    "series-f8-h32": ("series", 32, 1, 32, 50, 8),
    "series-f8-h128": ("series", 128, 1, 32, 50, 8),
}
EMBED = 32
WINDOWS = 2        # windows per row: the state is carried once per row
BATCHES = 4        # batches per epoch
PREDICT = {"h256": (256, 1), "h512x2": (512, 2)}    # predict N = 64, T = 100
GENERATE_H = 256
MEMORY = (8, 20000, 256)                              # N, T, H of the long series


def text_data(rows, T):
    import fastlstm
    text = fastlstm.data.corpus()
    vocab = fastlstm.Vocab.from_text(text)
    ids = vocab.encode(text)
    reps = -(-(rows * T + 1) // len(ids))
    ids = np.tile(ids, reps)
    return vocab, ids[:rows * T].reshape(rows, T), ids[1:rows * T + 1].reshape(rows, T)


def series_data(rows, T, F, seed=0):
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.standard_normal((rows, T + 1, F)), axis=1).astype(np.float32)
    z /= z.std()
    return z[:, :-1], z[:, 1:]


def train_data(name):
    """(kind, X, Y, vocabulary or feature count, B, S) of a training config, rows
    batch-first: tokens (N, T) or features (N, T, F)."""
    kind, H, L, B, S, F = CONFIGS[name]
    rows, T = B * BATCHES, S * WINDOWS
    if kind == "tokens":
        vocab, X, Y = text_data(rows, T)
        return kind, X, Y, len(vocab), B, S
    X, Y = series_data(rows, T, F)
    return kind, X, Y, F, B, S


def flops_per_token(kind, H, L, I, V, train=True):
    """FLOPs of one token: per LSTM layer 2*4H*(I+H) forward, three times that to
    train; the head 2*H*V (or 2*H*F)."""
    f = sum(2 * 4 * H * ((I if k == 0 else H) + H) for k in range(L)) + 2 * H * V
    return 3 * f if train else f


def sgemm_peak(seconds=1.0):
    n = 2048
    a = np.ones((n, n), np.float32)
    a @ a
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


# ----------------------------------------------------------------- the peers

class FastlstmPeer:
    def __init__(self, threads):
        import fastlstm
        self.fl = fastlstm
        fastlstm.set_num_threads(threads)

    def setup_train(self, name):
        fl = self.fl
        _, H, L, *_ = CONFIGS[name]
        kind, X, Y, V, B, S = train_data(name)
        if kind == "tokens":
            self.model = fl.Model.for_tokens(V, hidden_size=H, num_layers=L,
                                             embed_size=EMBED)
        else:
            self.model = fl.Model.for_series(V, hidden_size=H, num_layers=L)
        self.args = (X, Y, B, S)
        self.opt = fl.Adam(1e-3)
        self.train_round()

    def train_round(self):
        X, Y, B, S = self.args
        t0 = time.perf_counter()
        self.fl.train(self.model, X, Y, epochs=1, batch_size=B, seq_len=S,
                      optimizer=self.opt, clip_norm=5.0, progress=False)
        return time.perf_counter() - t0

    def setup_neighbour(self, name, runtime):
        """train_round's setup, and a call of another runtime in this process:
        "ort" (an ONNX Runtime LSTM session), "torch" (torch's LSTM) or "none"."""
        self.setup_train(name)
        n = self.fl.get_num_threads()
        if runtime == "ort":
            from bench_kernels import make_inputs, ort_session
            p = make_inputs("lstm", 100, 64, 256, 256, np.float32)
            session = ort_session("lstm", p, n)
            self.neighbour = lambda: session.run(None, {"X": p["x"]})
        elif runtime == "torch":
            import torch
            torch.set_num_threads(n)
            net = torch.nn.LSTM(256, 256)
            x = torch.randn(100, 64, 256)

            def call():
                with torch.no_grad():
                    net(x)
            self.neighbour = call
        else:
            self.neighbour = lambda: None
        self.neighbour_round()

    def neighbour_round(self):
        self.neighbour()
        return self.train_round()

    def setup_predict(self, name):
        H, L = PREDICT[name]
        vocab, X, _ = text_data(64, 100)
        self.model = self.fl.Model.for_tokens(len(vocab), hidden_size=H, num_layers=L,
                                              embed_size=EMBED)
        self.X = X
        self.predict_round()

    def predict_round(self):
        t0 = time.perf_counter()
        self.model.predict(self.X)
        return time.perf_counter() - t0

    def setup_generate(self, n_chars):
        text = self.fl.data.corpus()
        self.lm = self.fl.CharLM.create(text, hidden_size=GENERATE_H, embed_size=EMBED)
        self.n_chars = n_chars
        self.generate_round()

    def generate_round(self):
        t0 = time.perf_counter()
        self.lm.generate("the ", self.n_chars, temperature=1.0, seed=0)
        return (time.perf_counter() - t0) / self.n_chars

    def memory(self):
        N, T, H = MEMORY
        model = self.fl.Model.for_series(1, hidden_size=H)
        X = np.random.default_rng(0).standard_normal((N, T, 1)).astype(np.float32)
        base = _rss_now()
        model.predict(X)
        return _peak_rss() - base


class TorchPeer:
    def __init__(self, threads):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)

    def _net(self, kind, H, L, V_or_F):
        nn = self.torch.nn
        self.emb = nn.Embedding(V_or_F, EMBED) if kind == "tokens" else None
        I = EMBED if kind == "tokens" else V_or_F
        self.rnn = nn.LSTM(I, H, L)
        self.head = nn.Linear(H, V_or_F)
        mods = [m for m in (self.emb, self.rnn, self.head) if m is not None]
        self.params = [p for m in mods for p in m.parameters()]

    def _inputs(self, x):
        return self.emb(x) if self.emb is not None else x

    def setup_train(self, name):
        torch = self.torch
        _, H, L, *_ = CONFIGS[name]
        kind, X, Y, V, B, S = train_data(name)
        self._net(kind, H, L, V)
        # time-major, as torch.nn.LSTM takes them by default
        self.X = torch.from_numpy(np.ascontiguousarray(X.swapaxes(0, 1)))
        self.Y = torch.from_numpy(np.ascontiguousarray(Y.swapaxes(0, 1)))
        if kind == "tokens":
            self.X, self.Y = self.X.long(), self.Y.long()
            self.loss = lambda out, y: torch.nn.functional.cross_entropy(
                out.reshape(-1, V), y.reshape(-1))
        else:
            self.loss = torch.nn.functional.mse_loss
        self.B, self.S = B, S
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        self.epoch = 0
        self.train_round()

    def train_round(self):
        """The rows shuffled as fastlstm.train shuffles them, batches of B rows, each
        cut into windows of S steps with the state carried and detached."""
        torch = self.torch
        t0 = time.perf_counter()
        N, T = self.X.shape[1], self.X.shape[0]
        order = torch.from_numpy(np.random.default_rng([0, self.epoch]).permutation(N))
        self.epoch += 1
        for b0 in range(0, N, self.B):
            rows = order[b0:b0 + self.B]
            xb, yb = self.X[:, rows], self.Y[:, rows]
            state = None
            for t0_ in range(0, T, self.S):
                out, state = self.rnn(self._inputs(xb[t0_:t0_ + self.S]), state)
                state = tuple(s.detach() for s in state)
                loss = self.loss(self.head(out), yb[t0_:t0_ + self.S])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 5.0)
                self.opt.step()
        return time.perf_counter() - t0

    def setup_predict(self, name):
        H, L = PREDICT[name]
        vocab, X, _ = text_data(64, 100)
        self._net("tokens", H, L, len(vocab))
        self.X = self.torch.from_numpy(X.astype(np.int64))
        self.predict_round()

    def predict_round(self):
        t0 = time.perf_counter()
        with self.torch.no_grad():
            # batch-first in and out, as Model.predict
            out, _ = self.rnn(self.emb(self.X.T))
            self.head(out).transpose(0, 1).contiguous().numpy()
        return time.perf_counter() - t0

    def setup_generate(self, n_chars):
        import fastlstm
        text = fastlstm.data.corpus()
        self.vocab = fastlstm.Vocab.from_text(text)
        self._net("tokens", GENERATE_H, 1, len(self.vocab))
        self.n_chars = n_chars
        self.generate_round()

    def generate_round(self):
        """The usual sampling loop: one step of the LSTM per character, its state
        carried, softmax at temperature 1 and a draw."""
        torch = self.torch
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            ids = torch.from_numpy(self.vocab.encode("the ").astype(np.int64))[:, None]
            out, state = self.rnn(self.emb(ids))
            logits = self.head(out[-1, 0])
            chars = []
            for _ in range(self.n_chars):
                k = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
                chars.append(int(k))
                out, state = self.rnn(self.emb(k[None]), state)
                logits = self.head(out[0, 0])
            self.vocab.decode(chars)
        return (time.perf_counter() - t0) / self.n_chars

    def memory(self):
        torch = self.torch
        N, T, H = MEMORY
        rnn, head = torch.nn.LSTM(1, H, batch_first=True), torch.nn.Linear(H, 1)
        X = torch.from_numpy(np.random.default_rng(0).standard_normal((N, T, 1))
                             .astype(np.float32))
        base = _rss_now()
        with torch.no_grad():
            head(rnn(X)[0]).numpy()
        return _peak_rss() - base


def _rss_now():
    """The resident memory now, after resetting the peak that _peak_rss reads (Linux
    resets it where 5 is written to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


PEERS = {"fastlstm": FastlstmPeer, "torch": TorchPeer}


def worker(conn, peers, peer, threads):
    """Answers (method, *args) with the method's result, ("stop",) ends. peers:
    {name: class taking the thread count}."""
    p = peers[peer](threads)
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        try:
            conn.send(getattr(p, msg[0])(*msg[1:]) if msg[0] != "peak" else sgemm_peak())
        except Exception as exc:  # report, do not hang the parent
            conn.send(exc)


class Workers:
    """One process per (peer, threads), each a worker of peers (default: this
    module's)."""

    def __init__(self, keys, peers=None):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = {}, []
        for peer, threads in keys:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, peers or PEERS, peer, threads),
                               daemon=True)
            proc.start()
            self.conns[peer, threads] = parent
            self.procs.append(proc)

    def call(self, key, *msg):
        self.conns[key].send(msg)
        out = self.conns[key].recv()
        if isinstance(out, Exception):
            raise out
        return out

    def close(self):
        for conn in self.conns.values():
            conn.send(("stop",))
        for proc in self.procs:
            proc.join()


QUIET = 0.3   # s: OpenBLAS's and ONNX Runtime's idle pools spin up to about 0.1 s


def rounds(workers, keys, setup, run, n):
    """Best seconds of n rounds per key; the keys take turns, each round starting
    one further on, after QUIET seconds in which the last peer's idle threads stop
    spinning (else they hold a core of the next peer's run)."""
    for key in keys:
        workers.call(key, *setup)
    best = {key: float("inf") for key in keys}
    for i in range(n):
        k = i % len(keys)
        for key in keys[k:] + keys[:k]:
            if len(keys) > 1:
                time.sleep(QUIET)
            best[key] = min(best[key], workers.call(key, run))
    return best


def busy_loop():
    while True:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-infer", action="store_true", help="skip predict and generation")
    ap.add_argument("--busy", action="store_true",
                    help="also fastlstm's training with another process busy on one core")
    ap.add_argument("--neighbour", action="store_true",
                    help="also fastlstm's training right after another runtime's call in "
                    "the same process")
    ap.add_argument("--memory", action="store_true", help="predict's peak memory")
    ap.add_argument("--chars", type=int, default=300, help="characters per generation round")
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--png")
    args = ap.parse_args(argv)

    import fastlstm
    V = len(fastlstm.Vocab.from_text(fastlstm.data.corpus()))
    keys = [(peer, n) for n in args.threads for peer in PEERS]
    workers = Workers(keys)
    rows = []
    try:
        # NumPy's sgemm in the fastlstm worker, one figure per thread count: the
        # best of its measurements before every config (a shared machine's speed
        # drifts; the best is the closest to what the cores can do)
        peak = {n: 0.0 for n in args.threads}

        def measure_peak(n):
            peak[n] = max(peak[n], workers.call(("fastlstm", n), "peak"))

        for n in args.threads:
            pair = [("fastlstm", n), ("torch", n)]
            for name in [] if args.no_train else args.configs:
                measure_peak(n)
                kind, H, L, B, S, F = CONFIGS[name]
                tokens = B * BATCHES * S * WINDOWS
                best = rounds(workers, pair, ("setup_train", name), "train_round",
                              args.rounds)
                I = EMBED if kind == "tokens" else F
                rows.append(_row("train", name, n, best, tokens,
                                 flops_per_token(kind, H, L, I, V if kind == "tokens" else F)))
                _progress(rows[-1])
            for name in [] if args.no_infer else PREDICT:
                measure_peak(n)
                H, L = PREDICT[name]
                best = rounds(workers, pair, ("setup_predict", name), "predict_round",
                              args.rounds)
                rows.append(_row("predict", name, n, best, 64 * 100,
                                 flops_per_token("tokens", H, L, EMBED, V, train=False)))
                _progress(rows[-1])
            if not args.no_infer:
                measure_peak(n)
                best = rounds(workers, pair, ("setup_generate", args.chars),
                              "generate_round", args.rounds)
                rows.append(_row("generate", f"h{GENERATE_H}", n, best, 1,
                                 flops_per_token("tokens", GENERATE_H, 1, EMBED, V, False)))
                _progress(rows[-1])
        for r in rows:
            n = r["threads"]
            r.update(sgemm_gflops=peak[n], fastlstm_peak=r["fastlstm_gflops"] / peak[n],
                     torch_peak=r["torch_gflops"] / peak[n])
        if args.memory:
            N, T, H = MEMORY
            unit = N * T * H * 4
            for peer in PEERS:
                w = Workers([(peer, args.threads[-1])])
                used = w.call((peer, args.threads[-1]), "memory")
                w.close()
                rows.append(dict(kind="memory", config=f"N{N} T{T} H{H}", peer=peer,
                                 threads=args.threads[-1], bytes=used,
                                 of_array=used / unit))
                print(f"predict peak memory, {peer}: {used / 2**20:.0f} MiB = "
                      f"{used / unit:.2f} x the (N, T, H) float32 array", file=sys.stderr)
        if args.busy:
            rows += busy_rows(workers, args.rounds)
        if args.neighbour:
            rows += neighbour_rows(args.rounds)
    finally:
        workers.close()
    from fastlstm import _cy, config
    meta = dict(cpu=config.cpu_model(), level=_cy.level(), cores=os.cpu_count(),
                python=platform.python_version(),
                numpy=np.__version__, date=time.strftime("%Y-%m-%d %H:%M"),
                command="python bench/bench_train.py " + " ".join(argv or sys.argv[1:]))
    try:
        import torch
        meta["torch"] = torch.__version__
    except ImportError:
        pass
    md = table(rows, meta)
    print(md)
    if args.json:
        _write(args.json, json.dumps(dict(meta=meta, rows=rows), indent=1))
    if args.md:
        _write(args.md, md + "\n")
    if args.png:
        plot(rows, args.png)


def replot(json_path, png_path):
    """The plot again from a JSON this script wrote."""
    with open(json_path) as f:
        plot(json.load(f)["rows"], png_path)


def busy_rows(workers, n_rounds):
    """fastlstm's training at lm-h256 on 1 and 2 threads, idle and then with a
    process spinning beside it."""
    keys = [("fastlstm", n) for n in (1, 2) if ("fastlstm", n) in workers.conns]
    out = []
    for busy in (False, True):
        proc = None
        if busy:
            proc = mp.get_context("spawn").Process(target=busy_loop, daemon=True)
            proc.start()
            time.sleep(0.5)
        try:
            best = rounds(workers, keys, ("setup_train", "lm-h256"), "train_round", n_rounds)
        finally:
            if proc is not None:
                proc.terminate()
                proc.join()
        _, H, L, B, S, _ = CONFIGS["lm-h256"]
        tokens = B * BATCHES * S * WINDOWS
        for key, t in best.items():
            out.append(dict(kind="busy" if busy else "idle", config="lm-h256",
                            peer=key[0], threads=key[1], seconds=t, tokens_per_s=tokens / t))
            print(f"{out[-1]['kind']}: {key[1]} threads {tokens / t:,.0f} tok/s",
                  file=sys.stderr)
    return out


def neighbour_rows(n_rounds):
    """fastlstm's training at lm-h256 on 2 threads, alone and right after a call of
    ONNX Runtime or torch in the same process (a fresh worker for each, so that
    one runtime's threads do not linger into the other's rounds)."""
    _, H, L, B, S, _ = CONFIGS["lm-h256"]
    tokens = B * BATCHES * S * WINDOWS
    out = []
    for runtime in ("none", "ort", "torch"):
        workers = Workers([("fastlstm", 2)])
        try:
            best = rounds(workers, [("fastlstm", 2)], ("setup_neighbour", "lm-h256", runtime),
                          "neighbour_round", n_rounds)[("fastlstm", 2)]
        finally:
            workers.close()
        out.append(dict(kind="neighbour", config="lm-h256", peer=runtime, threads=2,
                        seconds=best, tokens_per_s=tokens / best))
        print(f"after {runtime}: {tokens / best:,.0f} tok/s", file=sys.stderr)
    return out


def _row(kind, name, n, best, tokens, flops):
    f, t = best[("fastlstm", n)], best[("torch", n)]
    return dict(kind=kind, config=name, threads=n, fastlstm_s=f, torch_s=t, ratio=t / f,
                tokens=tokens, fastlstm_gflops=flops * tokens / f / 1e9,
                torch_gflops=flops * tokens / t / 1e9)


def _progress(row):
    print(f"{row['kind']} {row['config']} {row['threads']} thr: torch/fastlstm "
          f"{row['ratio']:.2f}", file=sys.stderr, flush=True)


def _cy_env():
    forced = os.environ.get("FASTLSTM_ISA")
    return f"FASTLSTM_ISA={forced}" if forced else "chosen for the CPU"


def table(rows, meta):
    out = [f"{meta['date']}, {meta['cpu']}, {meta['cores']} cores, fastlstm's kernels at "
           f"{meta.get('level')} ({_cy_env()}), torch "
           f"{meta.get('torch', '-')}, `{meta['command']}`", ""]
    timed = [r for r in rows if r["kind"] in ("train", "predict", "generate")]
    if timed:
        out += ["| what | config | threads | fastlstm | torch | torch/fastlstm "
                "| fastlstm % of sgemm peak | torch % of peak |",
                "|---|---|---|---|---|---|---|---|"]
        for r in timed:
            if r["kind"] == "generate":
                f, t = f"{r['fastlstm_s'] * 1e6:.0f} us/char", f"{r['torch_s'] * 1e6:.0f} us/char"
            else:
                f = f"{r['tokens'] / r['fastlstm_s']:,.0f} tok/s"
                t = f"{r['tokens'] / r['torch_s']:,.0f} tok/s"
            out.append(f"| {r['kind']} | {r['config']} | {r['threads']} | {f} | {t} "
                       f"| {r['ratio']:.2f} | {100 * r['fastlstm_peak']:.0f} "
                       f"| {100 * r['torch_peak']:.0f} |")
        out.append("")
        out.append("sgemm peak (NumPy, 2048^3 float32) per thread count: " + ", ".join(
            sorted({f"{r['threads']}: {r['sgemm_gflops']:.0f} GFLOP/s" for r in timed})))
    mem = [r for r in rows if r["kind"] == "memory"]
    if mem:
        out += ["", "| predict peak memory | peer | MiB | x (N, T, H) float32 |",
                "|---|---|---|---|"]
        out += [f"| {r['config']} | {r['peer']} | {r['bytes'] / 2**20:.0f} "
                f"| {r['of_array']:.2f} |" for r in mem]
    busy = [r for r in rows if r["kind"] in ("idle", "busy")]
    if busy:
        out += ["", "| fastlstm lm-h256 | threads | tok/s |", "|---|---|---|"]
        out += [f"| {r['kind']} | {r['threads']} | {r['tokens_per_s']:,.0f} |" for r in busy]
    near = [r for r in rows if r["kind"] == "neighbour"]
    if near:
        alone = next(r["tokens_per_s"] for r in near if r["peer"] == "none")
        out += ["", "| fastlstm lm-h256, 2 threads, right after a call of | tok/s | of alone |",
                "|---|---|---|"]
        out += [f"| {r['peer']} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / alone:.2f} |"
                for r in near]
    return "\n".join(out)


def plot(rows, path):
    """torch time / fastlstm time per config, a bar per thread count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    timed = [r for r in rows if r["kind"] in ("train", "predict", "generate")]
    names = list(dict.fromkeys(f"{r['kind']}\n{r['config']}" for r in timed))
    counts = sorted({r["threads"] for r in timed})
    width = 0.8 / len(counts)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    for i, n in enumerate(counts):
        got = {f"{r['kind']}\n{r['config']}": r["ratio"] for r in timed if r["threads"] == n}
        xs = [k + (i - (len(counts) - 1) / 2) * width for k, name in enumerate(names)
              if name in got]
        ys = [got[name] for name in names if name in got]
        bars = ax.bar(xs, ys, width, label=f"{n} thread{'s' if n > 1 else ''}")
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1.3, color="tab:red", lw=0.8, ls="--", label="1.3x")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylabel("torch time / fastlstm time")
    ax.set_title("fastlstm end to end against torch (above 1: fastlstm is faster)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _makedirs(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _makedirs(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _write(path, text):
    _makedirs(path)
    with open(path, "w") as f:
        f.write(text)


def report(args, meta, rows, text):
    """Print the table text; write the JSON (meta and rows) and the Markdown where
    args.json and args.md name files."""
    if args.json:
        _write(args.json, json.dumps(dict(meta=meta, rows=rows), indent=1))
    print(text)
    if args.md:
        _write(args.md, text)


if __name__ == "__main__":
    main()
