"""Data-parallel training over MPI: 1 -> P ranks, and the model of what more
machines would give.

    python bench/bench_mpi.py --layouts 1x1 1x2 2x1 --json bench/out/mpi.json \
        --md bench/out/mpi.md

A layout RxN is R ranks of N threads each (mpiexec -n R on this machine). Each
runs fastlstm.train(distributed="mpi") on the character model of bench_train.py
(Embedding(32) -> LSTM -> Linear, Adam, clipping at 5) over the same global
batches, and reports rank 0's best epoch of --rounds: steps/s, tokens/s, and
the efficiency against the first layout (speed-up / (R*N / its R*N)). It also
times the Allreduce of the flat gradient buffer alone.

Then the written model (docs/DESIGN.md, "Training on many machines"): one step
on P machines takes

    t(P) = C / P + alpha + 2 (P - 1) / P * bytes / bandwidth

for a global batch whose gradient takes C seconds on one machine (the first
layout's measured step, or --compute), a gradient of `bytes`, a ring Allreduce
of latency alpha (--alpha, default 50 us) and link bandwidth; efficiency is
C / (P t(P)).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_train import CONFIGS, EMBED, _write, text_data   # noqa: E402
from fastlstm.config import cpu_model   # noqa: E402

NODES = (8, 16, 32, 64)
LINKS_GBIT = (10, 25, 100)


def worker(config, threads, rounds, batches):
    """On every rank: train, then print rank 0's figures as one JSON line."""
    import fastlstm
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    fastlstm.set_num_threads(threads)
    _, H, L, B, S, _ = CONFIGS[config]
    vocab, X, Y = text_data(B * batches, 2 * S)
    model = fastlstm.Model.for_tokens(len(vocab), hidden_size=H, num_layers=L,
                                      embed_size=EMBED)
    opt = fastlstm.Adam(1e-3)
    steps = batches * 2
    best = float("inf")
    for r in range(rounds + 1):   # round 0 warms up
        comm.Barrier()
        t0 = time.perf_counter()
        fastlstm.train(model, X, Y, epochs=1, batch_size=B, seq_len=S, optimizer=opt,
                       progress=False, distributed="mpi")
        if r:
            best = min(best, time.perf_counter() - t0)
    n = sum(a.size for a in model.params.values())
    buf = np.zeros(n + 3, np.float32)
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(20):
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    allreduce = (time.perf_counter() - t0) / 20
    if comm.Get_rank() == 0:
        print(json.dumps(dict(config=config, ranks=comm.Get_size(), threads=threads,
                              epoch_s=best, steps=steps, step_s=best / steps,
                              tokens_per_s=X.size / best, params=n,
                              grad_bytes=4 * (n + 3), allreduce_s=allreduce)), flush=True)


def run_layout(config, ranks, threads, rounds, batches):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(ranks),
           sys.executable, __file__, "--worker", config, str(threads), str(rounds),
           str(batches)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=dict(os.environ, FASTLSTM_ADAPTIVE_THREADS="0"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_table(compute_s, grad_bytes, alpha):
    """{(P, Gbit/s): efficiency} of the written model."""
    out = {}
    for P in NODES:
        for g in LINKS_GBIT:
            t = compute_s / P + alpha + 2 * (P - 1) / P * grad_bytes / (g * 1e9 / 8)
            out[P, g] = compute_s / (P * t)
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        config, threads, rounds, batches = argv[1], *map(int, argv[2:5])
        return worker(config, threads, rounds, batches)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["lm-h256", "lm-h512x2"],
                    choices=[k for k, v in CONFIGS.items() if v[0] == "tokens"])
    ap.add_argument("--layouts", nargs="+", default=["1x1", "1x2", "2x1"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=4, help="global batches an epoch")
    ap.add_argument("--alpha", type=float, default=50e-6, help="Allreduce latency (s)")
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)
    rows = []
    for config in args.configs:
        for layout in args.layouts:
            R, N = (int(v) for v in layout.split("x"))
            row = run_layout(config, R, N, args.rounds, args.batches)
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = dict(cpu=cpu_model(), cores=os.cpu_count(), alpha=args.alpha,
                command="python bench/bench_mpi.py " + " ".join(argv))
    text = table(rows, meta)
    print(text)
    if args.json:
        _write(args.json, json.dumps(dict(meta=meta, rows=rows), indent=1))
    if args.md:
        _write(args.md, text)


def table(rows, meta):
    lines = [f"CPU: {meta['cpu']} ({meta['cores']} cores)", "",
             "| config | ranks x threads | step ms | tokens/s | speed-up | efficiency | "
             "Allreduce ms (gradient MB) |", "|---|---|---|---|---|---|---|"]
    first = {}
    for r in rows:
        base = first.setdefault(r["config"], r)
        speedup = base["step_s"] / r["step_s"]
        cores = (r["ranks"] * r["threads"]) / (base["ranks"] * base["threads"])
        lines.append(f"| {r['config']} | {r['ranks']} x {r['threads']} | "
                     f"{1e3 * r['step_s']:.1f} | {r['tokens_per_s']:,.0f} | {speedup:.2f} | "
                     f"{speedup / cores:.2f} | {1e3 * r['allreduce_s']:.2f} "
                     f"({r['grad_bytes'] / 1e6:.1f}) |")
    lines += ["", f"The written model, efficiency on P machines (alpha = "
              f"{1e6 * meta['alpha']:.0f} us; C = the best measured step of one machine):",
              "", "| config | C ms | gradient MB | " + " | ".join(
                  f"P={P} @ {g} Gbit/s" for P in NODES for g in LINKS_GBIT) + " |",
              "|---|---|---|" + "---|" * (len(NODES) * len(LINKS_GBIT))]
    for config in first:
        mine = [r for r in rows if r["config"] == config and r["ranks"] == 1]
        C = min(r["step_s"] for r in mine) if mine else first[config]["step_s"]
        eff = model_table(C, first[config]["grad_bytes"], meta["alpha"])
        lines.append(f"| {config} | {1e3 * C:.1f} | {first[config]['grad_bytes'] / 1e6:.1f} | "
                     + " | ".join(f"{eff[P, g]:.2f}" for P in NODES for g in LINKS_GBIT)
                     + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
