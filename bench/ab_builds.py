"""A/B two or more builds of the Cython LSTM kernel in one process.

    python bench/ab_builds.py --builds /tmp/native avx512 --threads 1 \
        --seconds 60 --shapes 16,256 64,512

Each build is an instruction-set level of this installation (baseline, avx2,
avx512), or a folder holding one level's compiled modules (fastlstm/_cy/<level>/
of another build: the baseline level of a build made with
CFLAGS="-march=native -mprefer-vector-width=512" is a native build). The train
step (forward + BPTT, T=100, I=H, float32; --what forward: the forward alone)
of each build runs in turn, round after round, the order reversed every other
round. Printed per shape: the first
build's best time, and for each other build the median and quartiles over rounds
of its time divided by the first build's time in the same round. On a shared
machine whose speed drifts by tens of percent within minutes, that paired ratio
tells a few percent apart where the best times of separate runs cannot.
"""
import argparse
import importlib
import os
import sys
import time
import types

import numpy as np

import fastlstm
from bench_kernels import make_inputs
from fastlstm import _cy


def load(build):
    """The _lstm module of build: a level of this installation, or a folder of a
    level's modules, imported as a package of its own (its _lstm imports the
    _panels beside it)."""
    if build in _cy.LEVELS:
        return _cy.module("_lstm", build)
    name = f"fastlstm._cy.ab{len([m for m in sys.modules if m.startswith('fastlstm._cy.ab')])}"
    package = types.ModuleType(name)
    package.__path__ = [os.path.abspath(build)]
    sys.modules[name] = package
    return importlib.import_module(f"{name}._lstm")


def paired_times(modules, p, seconds, forward_only, min_rounds=6):
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
            if not forward_only:
                m.lstm_backward(cache, p["dy"], p["h0"], p["c0"])
            times[name].append(time.perf_counter() - t0)
            del cache
        rounds += 1
    return {name: np.array(t[1:]) for name, t in times.items()}  # round 0 warms up


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", nargs="+", required=True, metavar="LEVEL_OR_FOLDER")
    ap.add_argument("--what", choices=("train", "forward"), default="train")
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
        t = paired_times(modules, p, args.seconds, args.what == "forward")
        line = (f"{args.what}, threads {args.threads} (B, H) = ({B}, {H}), "
                f"{len(t[base])} rounds: "
                f"{base} best {1e3 * t[base].min():.2f} ms")
        for name in args.builds[1:]:
            q25, q50, q75 = np.percentile(t[name] / t[base], [25, 50, 75])
            line += f" | {name} / {base}: median {q50:.3f} [{q25:.3f}, {q75:.3f}]"
        print(line, flush=True)


if __name__ == "__main__":
    main()
