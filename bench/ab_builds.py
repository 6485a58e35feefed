"""A/B two or more builds of the Cython LSTM kernel in one process.

    python bench/ab_builds.py --builds /tmp/cy_old /tmp/cy_new --threads 1 \
        --seconds 60 --shapes 16,256 64,512

Each build is a folder holding a copy of fastlstm/_cy/_lstm*.so. The train step
(forward + BPTT, T=100, I=H, float32) of each build runs in turn, round after
round, the order reversed every other round. Printed per shape: the first
build's best time, and for each other build the median and quartiles over rounds
of its time divided by the first build's time in the same round. On a shared
machine whose speed drifts by tens of percent within minutes, that paired ratio
tells a few percent apart where the best times of separate runs cannot.
"""
import argparse
import glob
import importlib.util
import os
import time

import numpy as np

import fastlstm
from bench_kernels import make_inputs


def load(folder):
    """The _lstm extension module built into `folder`."""
    path = glob.glob(os.path.join(folder, "_lstm*.so"))[0]
    spec = importlib.util.spec_from_file_location("fastlstm._cy._lstm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paired_times(modules, p, seconds, min_rounds=6):
    """Seconds per train step, {build: [one per round]}."""
    times = {name: [] for name in modules}
    names = list(modules)
    end = time.perf_counter() + seconds
    rounds = 0
    while time.perf_counter() < end or rounds < min_rounds:
        for name in names if rounds % 2 == 0 else names[::-1]:
            m = modules[name]
            t0 = time.perf_counter()
            cache = m.lstm_forward(p["x"], p["Wx"], p["Wh"], p["b"], p["h0"], p["c0"])[-1]
            m.lstm_backward(cache, p["dy"], p["h0"], p["c0"])
            times[name].append(time.perf_counter() - t0)
            del cache
        rounds += 1
    return {name: np.array(t[1:]) for name, t in times.items()}  # round 0 warms up


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", nargs="+", required=True, metavar="FOLDER")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0, help="per shape")
    ap.add_argument("--shapes", nargs="+", default=["16,256"], metavar="B,H")
    args = ap.parse_args()
    fastlstm.set_num_threads(args.threads)
    modules = {folder: load(folder) for folder in args.builds}
    base = args.builds[0]
    for shape in args.shapes:
        B, H = (int(n) for n in shape.split(","))
        p = make_inputs("lstm", T=100, B=B, I=H, H=H, dtype=np.float32)
        t = paired_times(modules, p, args.seconds)
        line = (f"threads {args.threads} (B, H) = ({B}, {H}), {len(t[base])} rounds: "
                f"{base} best {1e3 * t[base].min():.2f} ms")
        for name in args.builds[1:]:
            q25, q50, q75 = np.percentile(t[name] / t[base], [25, 50, 75])
            line += f" | {name} / {base}: median {q50:.3f} [{q25:.3f}, {q75:.3f}]"
        print(line, flush=True)


if __name__ == "__main__":
    main()
