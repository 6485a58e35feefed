"""Time a call that comes after the process was idle: the one-step serving path and
a short forward, as a server or a notebook calls them, against ONNX Runtime and torch.

Between calls OpenMP's threads (and ONNX Runtime's, and torch's) spin a while and
then sleep; the next call that wants them waits for them to wake. This bench calls
each peer after 0, 10, 50 and 200 ms without work and reports the median time of
a call, each peer in a process of its own, one after another. "fastlstm, team
always" is fastlstm with FASTLSTM_ADAPTIVE_THREADS=0: every call takes the full
team, as before fastlstm._threads._Wake ran small calls after idle on one thread.

    python bench/bench_idle.py --threads 1 2 --H 128 256
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

IDLE = (0.0, 0.01, 0.05, 0.2)
PEERS = ("fastlstm", "fastlstm, team always", "ort", "torch")
WHAT = {"step": "one step, B1", "forward": "forward, B1 T100"}


def calls(peer, what, H, n_threads):
    """The closure a peer runs once per call, and its multiply-adds."""
    import bench_kernels as bk
    T = 1 if what == "step" else 100
    p = bk.make_inputs("lstm", T, 1, H, H, np.float32)
    work = T * 2 * H * 4 * H
    if peer == "ort":
        if what == "step":
            session = bk.ort_session("lstm", p, n_threads, states=True)
            feed = {"X": p["x"], "h0": p["h0"][None], "c0": p["c0"][None]}
            return (lambda: session.run(None, feed)), work
        return bk.ort_calls("lstm", p, n_threads)[0], work
    if peer == "torch":
        import torch
        torch.set_num_threads(n_threads)
        net = torch.nn.LSTM(H, H)
        x = torch.from_numpy(p["x"])
        state = (torch.zeros(1, 1, H), torch.zeros(1, 1, H))

        def forward():
            with torch.no_grad():
                return net(x, state)
        return forward, work
    import fastlstm
    fastlstm.set_num_threads(n_threads)
    if what == "forward":
        return bk.fastlstm_calls("lstm", "cython", p)[0], work
    k = fastlstm.backends.get_backend("cython")
    w = k.lstm_step_weights(p["Wx"], p["Wh"], p["b"])
    x, h, c = p["x"][0], p["h0"].copy(), p["c0"].copy()
    h_next = np.empty_like(h)
    return (lambda: k.lstm_step(w, x, h, c, h_next)), work


def worker(peer, what, H, n_threads, n_calls):
    """{idle s: median s of a call after that idle} for one peer, printed as JSON."""
    fn, work = calls(peer, what, H, n_threads)
    for _ in range(50):
        fn()
    out = {}
    for idle in IDLE:
        times = []
        for _ in range(n_calls):
            if idle:
                time.sleep(idle)
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[idle] = float(np.median(times))
    print(json.dumps({"work": work, "median_s": out}))


def run_worker(peer, what, H, n_threads, n_calls):
    env = dict(os.environ, FASTLSTM_ADAPTIVE_THREADS="0" if "always" in peer else "1")
    r = subprocess.run([sys.executable, __file__, "--worker", peer, what, str(H),
                        str(n_threads), str(n_calls)], env=env, capture_output=True,
                       text=True, check=True)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return got["work"], {float(k): v for k, v in got["median_s"].items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--H", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--what", nargs="+", default=list(WHAT), choices=list(WHAT))
    ap.add_argument("--calls", type=int, default=15, help="calls per idle time")
    ap.add_argument("--json")
    ap.add_argument("--worker", nargs=5, metavar=("PEER", "WHAT", "H", "THREADS", "CALLS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        peer, what, H, n, k = args.worker
        return worker(peer, what, int(H), int(n), int(k))

    import bench_kernels as bk
    import fastlstm
    from fastlstm.config import config
    c = config()
    peaks = {n: bk.gemm_peak(n, np.float32) for n in args.threads}
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {c['cpu']}, {c['cores']} cores, fastlstm "
          f"{fastlstm.__version__} at {c['level']}, `python bench/bench_idle.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}`; median of "
          f"{args.calls} calls; NumPy float32 GEMM peak "
          + ", ".join(f"{n} thread(s) {p:.0f} GFLOP/s" for n, p in peaks.items()) + "\n")
    print("| call | H | threads | peer | " + " | ".join(
        f"after {1e3 * i:g} ms idle" for i in IDLE) + " | back to back, % of peak |")
    print("|---|---|---|---|" + "---|" * (len(IDLE) + 1))
    rows = []
    for what in args.what:
        for H in args.H:
            for n in args.threads:
                for peer in PEERS:
                    work, med = run_worker(peer, what, H, n, args.calls)
                    rows.append(dict(what=what, H=H, threads=n, peer=peer, median_s=med))
                    pct = 100 * 2 * work / med[0.0] / 1e9 / peaks[n]
                    print(f"| {WHAT[what]} | {H} | {n} | {peer} | " + " | ".join(
                        f"{1e3 * med[i]:.3f} ms" for i in IDLE) + f" | {pct:.0f}% |",
                        flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(peaks=peaks, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
