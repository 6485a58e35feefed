"""A/B the input checks of fastlstm.ops: the compiled finiteness pass against NumPy's.

    python bench/ab_checks.py --threads 2 --shapes 16,256 1,128 --rounds 400

One process, the Cython LSTM train step through fastlstm.ops (T=100, I=H,
float32), once with each check per round, the order swapped every other round.
Printed: the median and quartiles over rounds of compiled/NumPy in the same round.
"""
import argparse
import time

import numpy as np

import fastlstm
from fastlstm import ops
from bench_kernels import make_inputs


def train_step(p):
    cache = ops.lstm_forward(p["x"], p["Wx"], p["Wh"], p["b"], p["h0"], p["c0"],
                             backend="cython")[-1]
    ops.lstm_backward(cache, p["dy"], p["h0"], p["c0"], backend="cython")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", nargs="+", default=["16,256"], metavar="B,H")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    fastlstm.set_num_threads(args.threads)
    checks = {"compiled": ops._compiled_all_finite, "numpy": None}
    if checks["compiled"] is None:
        raise SystemExit("the Cython extensions are not built")
    for shape in args.shapes:
        B, H = (int(n) for n in shape.split(","))
        p = make_inputs("lstm", 100, B, H, H, np.float32)
        times = {name: [] for name in checks}
        try:
            for r in range(args.rounds + 1):
                for name in checks if r % 2 else list(checks)[::-1]:
                    ops._compiled_all_finite = checks[name]
                    t0 = time.perf_counter()
                    train_step(p)
                    times[name].append(time.perf_counter() - t0)
        finally:
            ops._compiled_all_finite = checks["compiled"]
        # round 0 warms up
        ratio = np.array(times["compiled"][1:]) / np.array(times["numpy"][1:])
        q25, q50, q75 = np.percentile(ratio, [25, 50, 75])
        print(f"threads {args.threads} (B, H) = ({B}, {H}), {args.rounds} rounds: "
              f"compiled/numpy median {q50:.3f} [{q25:.3f}, {q75:.3f}]", flush=True)


if __name__ == "__main__":
    main()
