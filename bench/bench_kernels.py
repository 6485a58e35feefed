"""Time the kernels: forward only and a train step (forward + BPTT), per backend,
cell, shape and thread count, side by side with torch.nn.{RNN,LSTM,GRU} when torch
is installed.

    python bench/bench_kernels.py --threads 1 2 --json bench/out/kernels.json

Prints the machine (fastlstm.show_config(): the CPU, the kernels' instruction-set
level and why) and NumPy's GEMM peak on each thread count, then a Markdown table
of the forward for inference (cache=False; torch under no_grad) and the train
step: ms per call (best of --repeat rounds, the backends interleaved within each
round), GFLOP/s, the fraction of that peak, and the time ratio torch / backend
(above 1: faster than torch). FLOPs counted: forward 2*T*B*G*H*(I+H); train step
three times that. Backends are named as fastlstm takes them: "cython:avx2" runs
one instruction-set level of the Cython kernels. With --ort, ONNX Runtime's
LSTM/GRU/RNN operator is a peer of the forward (it has no training); with
--isolate each library runs in a process of its own. With --bf16, the Cython
backend in precision="bf16" ("cython@bf16") and torch under bf16 autocast
("torch@bf16") join them, measured against torch's bf16 matmul peak (2048 x
2048, the same threads) and against each other.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

# The kernels at the thread counts asked for, whatever else the machine runs
# (fastlstm.train and predict run with the governor: bench_train.py --busy).
os.environ.setdefault("FASTLSTM_ADAPTIVE_THREADS", "0")

import fastlstm  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastlstm import _buffers, config, ops  # noqa: E402
from fastlstm.cells import CELLS  # noqa: E402
from fastlstm.export import onnx_weights  # noqa: E402

GATES = {name: cell.G for name, cell in CELLS.items()}
SHAPES = [(1, 128), (16, 256), (64, 256), (64, 512), (256, 512)]


def make_inputs(cell, T, B, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    s = 1.0 / np.sqrt(H)
    p = dict(x=rng.standard_normal((T, B, I)), Wx=rng.uniform(-s, s, (I, G * H)),
             Wh=rng.uniform(-s, s, (H, G * H)), h0=np.zeros((B, H)), c0=np.zeros((B, H)),
             dy=rng.standard_normal((T, B, H)))
    p.update({name: rng.uniform(-s, s, G * H) for name in CELLS[cell].biases})
    return {k: v.astype(dtype) for k, v in p.items()}


def gemm_peak(n_threads, dtype, size=2048, repeat=7):
    """GFLOP/s of NumPy's BLAS GEMM on size x size matrices of dtype with n_threads:
    the peak every kernel is measured against, taken in the same run."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    with threadpool_limits(n_threads):
        return 2.0 * size ** 3 / _best_seconds(lambda: a @ a, repeat) / 1e9


def bf16_peak(n_threads, size=2048, repeat=7):
    """GFLOP/s of torch's bf16 matmul on size x size matrices with n_threads (fp32
    sums): bf16's peak, as gemm_peak is fp32's."""
    import torch
    torch.set_num_threads(n_threads)
    a = torch.randn(size, size).to(torch.bfloat16)
    return 2.0 * size ** 3 / _best_seconds(lambda: a @ a, repeat) / 1e9


def _best_seconds(fn, repeat):
    """The shortest of `repeat` calls of fn, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fastlstm_calls(cell, backend, p, precision=None):
    """(forward, train_step) closures for a fastlstm backend; "cython+fresh" is the
    Cython backend on newly allocated arrays at every call (no memory reuse)."""
    backend, _, fresh = backend.partition("+")
    memory = _buffers.fresh_memory if fresh else contextlib.nullcontext
    fwd = getattr(ops, f"{cell}_forward")
    bwd = getattr(ops, f"{cell}_backward")
    fargs = [p[k] for k in CELLS[cell].forward_args]

    def forward():
        # inference, as torch's no_grad and ONNX Runtime's forward: no cache
        with memory():
            return fwd(*fargs, backend=backend, cache=False, precision=precision)

    def train_step():
        with memory():
            cache = fwd(*fargs, backend=backend, precision=precision)[-1]
            return bwd(cache, p["dy"], backend=backend)

    return forward, train_step


def ort_session(cell, p, n_threads, states=False):
    """An ONNX Runtime session of ONNX's operator of cell on p's weights: X (T, B, I)
    -> Y; with states, X, h0 (and c0 for the LSTM) -> hT (and cT), the state in and
    out as a server carries it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    T, B, I = p["x"].shape
    H = p["Wh"].shape[0]
    elem = TensorProto.FLOAT if p["x"].dtype == np.float32 else TensorProto.DOUBLE
    biases = [p[b] for b in CELLS[cell].biases]
    weights = [numpy_helper.from_array(a[None].astype(p["x"].dtype), name) for a, name in
               zip(onnx_weights(cell, p["Wx"], p["Wh"], biases), "WRB")]
    attrs = dict(hidden_size=H)
    if cell == "gru":
        attrs["linear_before_reset"] = 1
    inputs, outputs = [("X", [T, B, I])], ["Y"]
    if states:
        names = ["h0", "c0"] if cell == "lstm" else ["h0"]
        inputs += [(n, [1, B, H]) for n in names]
        outputs = ["", "hT", "cT"] if cell == "lstm" else ["", "hT"]
    node = helper.make_node(cell.upper(), ["X", "W", "R", "B"] + (
        ["", *[n for n, _ in inputs[1:]]] if states else []), outputs, **attrs)
    graph = helper.make_graph(
        [node], cell, [helper.make_tensor_value_info(n, elem, shape) for n, shape in inputs],
        [helper.make_tensor_value_info(n, elem, None) for n in outputs if n], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def ort_calls(cell, p, n_threads):
    """(forward, None) for ONNX Runtime's operator of cell on the same weights."""
    session, x = ort_session(cell, p, n_threads), p["x"]
    return (lambda: session.run(None, {"X": x})), None


def one_step_us(backends, B, H, dtype, n_threads, repeat, seconds=0.3):
    """Microseconds per LSTM step of the serving path (the weights prepared once, the
    state carried: the stepper's kernels), and ONNX Runtime's LSTM run on one step
    with its state in and out, best of `repeat` runs of `seconds` each."""
    p = make_inputs("lstm", 1, B, H, H, dtype)
    x, h, c = p["x"][0], p["h0"].copy(), p["c0"].copy()
    calls = {}
    for name in backends:
        k = fastlstm.backends.get_backend(name)
        w = k.lstm_step_weights(p["Wx"], p["Wh"], p["b"])
        h_next = np.empty_like(h)
        calls[name] = lambda k=k, w=w, h_next=h_next: k.lstm_step(w, x, h, c, h_next)
    session = ort_session("lstm", p, n_threads, states=True)
    feed = {"X": p["x"], "h0": h[None], "c0": c[None]}
    calls["ort"] = lambda: session.run(None, feed)
    best = {name: float("inf") for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                fn()
                n += 1
            best[name] = min(best[name], (time.perf_counter() - t0) / n)
    return {name: 1e6 * t for name, t in best.items()}


def peer_calls(name, cell, p, n_threads):
    """The closures of a peer: a backend's name, "torch" or "ort", and "@bf16" after
    the name for bf16 (fastlstm's precision, torch's autocast)."""
    name, _, precision = name.partition("@")
    precision = precision or None
    if name == "torch":
        return torch_calls(cell, p, precision)
    if name == "ort":
        return ort_calls(cell, p, n_threads)
    return fastlstm_calls(cell, name, p, precision)


def torch_calls(cell, p, precision=None):
    import torch
    T, B, I = p["x"].shape
    H = p["Wh"].shape[0]
    dtype = torch.float32 if p["x"].dtype == np.float32 else torch.float64
    kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net = kind(I, H, dtype=dtype)
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    dy = torch.from_numpy(p["dy"])

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward():
        with torch.no_grad(), autocast():
            return net(x)

    def train_step():
        net.zero_grad(set_to_none=True)
        x.grad = None
        with autocast():
            y, _ = net(x)
        y.float().backward(dy)

    return forward, train_step


def best_ms(calls, repeat):
    """Minimum ms per call of each closure in calls {name: fn}, over `repeat` rounds
    that take the closures in turn, so that machine noise hits them all alike. Each
    round starts one closure further on: the one that runs after another's call
    finds its data evicted from the caches, and none should always be that one."""
    for fn in calls.values():
        fn()  # warm-up: first-call costs (JIT, page faults) are not what we measure
    names = list(calls)
    best = {name: float("inf") for name in calls}
    for i in range(repeat):
        k = i % max(len(names), 1)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            calls[name]()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: 1e3 * t for name, t in best.items()}


def worker(conn, name, n_threads):
    """Times one peer in a process of its own (--isolate): answers ("setup", cell,
    p) with None after a warm-up call, and ("time", kind) with one call's seconds."""
    if name.startswith("torch"):
        import torch
        torch.set_num_threads(n_threads)
    fastlstm.set_num_threads(n_threads)
    calls = None
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        if msg[0] == "setup":
            _, cell, p = msg
            calls = peer_calls(name, cell, p, n_threads)
            for fn in calls:
                if fn is not None:
                    fn()
            conn.send(None)
        else:
            fn = calls[0] if msg[1] == "forward" else calls[1]
            if fn is None:
                conn.send(None)
                continue
            t0 = time.perf_counter()
            fn()
            conn.send(time.perf_counter() - t0)


def best_ms_isolated(conns, kind, repeat):
    """As best_ms, each peer in its own process: rounds still take them in turn,
    each after a pause in which the thread pools of the one before stop spinning
    (OpenMP's and ONNX Runtime's spin for a while after their work, and on a
    machine of few cores they took them from the next peer)."""
    best = {name: float("inf") for name in conns}
    for _ in range(repeat):
        for name, conn in conns.items():
            time.sleep(0.05)
            conn.send(("time", kind))
            t = conn.recv()
            best[name] = None if t is None else min(best[name], t)
    return {name: None if t is None else 1e3 * t for name, t in best.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cells", nargs="+", default=["lstm"], choices=list(GATES))
    ap.add_argument("--backends", nargs="+", default=None,
                    help="default: every available backend")
    ap.add_argument("--shapes", nargs="+", default=None, metavar="B,H",
                    help="default: " + " ".join(f"{b},{h}" for b, h in SHAPES))
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--I", type=int, default=None, help="input size (default: H)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--bf16", action="store_true",
                    help="also cython@bf16 and torch@bf16, against bf16's matmul peak")
    ap.add_argument("--ort", action="store_true",
                    help="ONNX Runtime's operator as a peer of the forward (needs onnx "
                    "and onnxruntime: the bench extra; float32, as ORT's LSTM has no "
                    "float64)")
    ap.add_argument("--one-step", action="store_true",
                    help="only the LSTM's one-step serving path against ONNX Runtime's "
                    "LSTM on one step, us per step")
    ap.add_argument("--fresh-memory", action="store_true",
                    help="also time each backend B as B+fresh: new arrays at every "
                    "call instead of reused memory")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--isolate", action="store_true",
                    help="time each peer in a process of its own (still interleaved), "
                    "to rule out that the peers' thread pools interfere")
    ap.add_argument("--compile-times", action="store_true",
                    help="time the Numba kernels' compilation, cold and from the disk "
                    "cache, in fresh processes: warm_up(), and the first train of each "
                    "cell and dtype (about 5 minutes on 2 cores)")
    args = ap.parse_args(argv)

    backends = args.backends or fastlstm.available_backends()
    shapes = [tuple(map(int, s.split(","))) for s in args.shapes] if args.shapes else SHAPES
    peers = list(backends)
    if args.fresh_memory:
        peers += [f"{b}+fresh" for b in backends if b != "numpy"]
    if not args.no_torch:
        try:
            import torch
            peers.append("torch")
        except ImportError:
            print("torch not installed: no peer column", file=sys.stderr)
    if args.ort:
        peers.append("ort")
    if args.bf16:
        peers += [f"{p}@bf16" for p in peers if p in ("cython", "torch")]

    config.show_config()
    peaks = {n: gemm_peak(n, args.dtype) for n in args.threads}
    for n, peak in peaks.items():
        print(f"NumPy {args.dtype} GEMM peak on {n} threads: {peak:.1f} GFLOP/s")
    args.bf16_peaks = {}
    if "torch@bf16" in peers:
        args.bf16_peaks = {n: bf16_peak(n) for n in args.threads}
        for n, peak in args.bf16_peaks.items():
            print(f"torch bf16 matmul peak on {n} threads: {peak:.1f} GFLOP/s")
    if "numba" in backends:
        if args.compile_times:
            print(compile_times(), file=sys.stderr)
        from fastlstm import _numba
        _numba.warm_up()
    if args.one_step:
        print("| threads | B | H | " + " | ".join(f"{b} us" for b in backends)
              + " | ort us | " + " | ".join(f"{b} / ort" for b in backends) + " |")
        print("|---" * (3 + 2 * len(backends) + 1) + "|")
        for n in args.threads:
            with fastlstm.threads(n):
                for B, H in shapes:
                    us = one_step_us(backends, B, H, args.dtype, n, args.repeat)
                    print(f"| {n} | {B} | {H} | "
                          + " | ".join(f"{us[b]:.1f}" for b in backends)
                          + f" | {us['ort']:.1f} | "
                          + " | ".join(f"{us[b] / us['ort']:.2f}" for b in backends) + " |")
        return []
    rows = []
    for n in args.threads:
        if args.isolate:
            args.peaks = peaks
            rows += isolated_rows(args, peers, shapes, n)
            continue
        if "torch" in peers:
            torch.set_num_threads(n)
        with fastlstm.threads(n):
            for cell in args.cells:
                for B, H in shapes:
                    I = args.I or H
                    p = make_inputs(cell, args.T, B, I, H, args.dtype)
                    flops = 2.0 * args.T * B * GATES[cell] * H * (I + H)
                    calls = {name: peer_calls(name, cell, p, n) for name in peers}
                    fwd, step = {}, {}
                    # The NumPy backend's threaded matmuls leave OpenBLAS workers
                    # busy-waiting, which slows whatever runs next on the same cores:
                    # it is timed in a group of its own, the others interleaved.
                    for group in ([k for k in calls if k != "numpy"],
                                  [k for k in calls if k == "numpy"]):
                        fwd.update(best_ms({k: calls[k][0] for k in group}, args.repeat))
                        step.update(best_ms({k: calls[k][1] for k in group
                                             if calls[k][1] is not None}, args.repeat))
                    for name in peers:
                        rows.append(dict(threads=n, cell=cell, T=args.T, B=B, I=I, H=H,
                                         backend=name, flops=flops,
                                         peak=_peak(args, peaks, name, n),
                                         forward_ms=fwd[name], train_ms=step.get(name)))
                    print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(table(rows))
    if {"numba", "cython"} <= set(peers):
        print()
        print(numba_table(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        meta = dict(config.config(), numpy=np.__version__, dtype=args.dtype,
                    gemm_peak=peaks, date=time.strftime("%Y-%m-%d"))
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return rows


def _peak(args, peaks, name, n):
    """The peak a peer is measured against: bf16's for a bf16 peer where it was
    measured, else the dtype's GEMM peak."""
    if name.endswith("@bf16") and n in args.bf16_peaks:
        return args.bf16_peaks[n]
    return peaks[n]


def isolated_rows(args, peers, shapes, n):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    conns, procs = {}, []
    for name in peers:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child, name, n), daemon=True)
        proc.start()
        conns[name] = parent
        procs.append(proc)
    rows = []
    try:
        for cell in args.cells:
            for B, H in shapes:
                I = args.I or H
                p = make_inputs(cell, args.T, B, I, H, args.dtype)
                for conn in conns.values():
                    conn.send(("setup", cell, p))
                    conn.recv()
                fwd = best_ms_isolated(conns, "forward", args.repeat)
                step = best_ms_isolated(conns, "train", args.repeat)
                for name in peers:
                    rows.append(dict(threads=n, cell=cell, T=args.T, B=B, I=I, H=H,
                                     backend=name, flops=2.0 * args.T * B * GATES[cell] * H
                                     * (I + H), peak=_peak(args, args.peaks, name, n),
                                     forward_ms=fwd[name], train_ms=step[name]))
                print(".", end="", file=sys.stderr, flush=True)
    finally:
        for conn in conns.values():
            conn.send(("stop",))
        for proc in procs:
            proc.join()
    return rows


_WARM_UP = """
import time
t0 = time.perf_counter()
from fastlstm import _numba
t1 = time.perf_counter()
_numba.warm_up()
print(t1 - t0, time.perf_counter() - t1)
"""

# What a user's first call is: one epoch of fastlstm.train of a small model of one
# cell and dtype on the Numba backend, from the import on.
_FIRST_TRAIN = """
import time
t0 = time.perf_counter()
import numpy as np
import fastlstm
model = fastlstm.Model.for_series(2, cell={cell!r}, hidden_size=8, dtype={dtype!r},
                                  backend="numba")
X = np.zeros((4, 6, 2))
fastlstm.train(model, X, X, epochs=1, batch_size=2, seq_len=3, progress=False)
print(time.perf_counter() - t0)
"""


def _fresh_runs(code, n):
    """The numbers code prints, in n fresh processes that share a disk cache of
    their own, empty before the first."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        return [[float(t) for t in subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True,
            text=True).stdout.split()] for _ in range(n)]


def compile_times():
    """The Numba kernels' warm_up() in two fresh processes on an empty disk cache
    of their own: compiled cold, then loaded from that cache; and the first
    fastlstm.train of each cell and dtype, cold and warm, likewise."""
    import numba
    (_, cold), (imported, cached) = _fresh_runs(_WARM_UP, 2)
    lines = [f"numba {numba.__version__}: warm_up() {cold:.1f} s cold, {cached:.2f} s from "
             f"the disk cache (import of fastlstm._numba {imported:.2f} s)", "",
             "| first fastlstm.train | dtype | cold s | warm s |", "|---|---|---|---|"]
    for cell in GATES:
        for dtype in ("float32", "float64"):
            (first,), (again,) = _fresh_runs(_FIRST_TRAIN.format(cell=cell, dtype=dtype), 2)
            lines.append(f"| {cell} | {dtype} | {first:.1f} | {again:.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def numba_table(rows):
    """The train step of Numba against Cython and torch, per thread count, cell and
    shape (the Numba backend's goals: numba/cython <= 1.3, torch/numba >= 1)."""
    ms = {(r["threads"], r["cell"], r["B"], r["H"], r["backend"]): r["train_ms"] for r in rows}
    out = ["| threads | cell | B | H | numba/cython | torch/numba |", "|---|---|---|---|---|---|"]
    for (n, cell, B, H, backend), t in ms.items():
        if backend != "numba" or (n, cell, B, H, "cython") not in ms:
            continue
        torch_ms = ms.get((n, cell, B, H, "torch"))
        vs_torch = f"{torch_ms / t:.2f}" if torch_ms else "-"
        out.append(f"| {n} | {cell} | {B} | {H} | {t / ms[(n, cell, B, H, 'cython')]:.2f} "
                   f"| {vs_torch} |")
    return "\n".join(out)


def table(rows):
    def peer(name):
        return {(r["threads"], r["cell"], r["B"], r["H"]): r for r in rows
                if r["backend"] == name}

    def ratio(other, r, key):
        return f"{other[key] / r[key]:.2f}" if other and other[key] and r[key] else "-"

    torch_ms, ort_ms, torch_bf16 = peer("torch"), peer("ort"), peer("torch@bf16")
    out = ["| threads | cell | B | H | backend | fwd ms | fwd GFLOP/s | fwd % peak "
           "| train ms | train GFLOP/s | train % peak | torch/fwd | torch/train | ort/fwd |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key = (r["threads"], r["cell"], r["B"], r["H"])
        # a bf16 peer against torch's bf16 autocast
        torch_of = torch_bf16 if r["backend"].endswith("@bf16") else torch_ms
        fwd = r["flops"] / r["forward_ms"] / 1e6
        train = f"| {r['train_ms']:.2f} | {3 * r['flops'] / r['train_ms'] / 1e6:.1f} " \
            f"| {300 * r['flops'] / r['train_ms'] / 1e6 / r['peak']:.0f}% " \
            if r["train_ms"] else "| - | - | - "
        out.append(
            f"| {r['threads']} | {r['cell']} | {r['B']} | {r['H']} | {r['backend']} "
            f"| {r['forward_ms']:.2f} | {fwd:.1f} | {100 * fwd / r['peak']:.0f}% {train}"
            f"| {ratio(torch_of.get(key), r, 'forward_ms')} "
            f"| {ratio(torch_of.get(key), r, 'train_ms')} "
            f"| {ratio(ort_ms.get(key), r, 'forward_ms')} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
