"""Seconds per model: the one-model trainer in a loop vs the ensemble trainer, in the same run.

Each of M default MLPs (hidden [512], adam lr 1e-3, batch 64) trains on a random 300-record half of
600 digits records, as LiRA/RMIA reference models would. Also prints the largest weight difference
between the two paths: 0, because the ensemble's MLP path calls the kernels the one-model run calls.
Both use the library's trainers as they are (fused Adam, one optimizer step per batch).

    .venv/bin/python benchmarks/bench_ensemble.py                 # 300 epochs, M = 16 and 64
    .venv/bin/python benchmarks/bench_ensemble.py --epochs 20 --models 16
    .venv/bin/python benchmarks/bench_ensemble.py --threads 1    # as audits run (spec field threads)
    .venv/bin/python benchmarks/bench_ensemble.py --arch cnn --models 4 --epochs 30   # vmap engine
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cyphercat.config import TrainingSpec
from cyphercat.data.base import load_dataset
from cyphercat.models.zoo import build_model
from cyphercat.training.ensemble import train_ensemble
from cyphercat.training.trainer import train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--models", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--arch", choices=["mlp", "cnn"], default="mlp",
                    help="mlp: the default MLP (Linear-stack engine); cnn: the default cnn (vmap engine)")
    ap.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset("digits", {})
    x, y = ds.x[:600], ds.y[:600]
    lr = 0.05 if args.optimizer == "sgd" else 1e-3
    training = TrainingSpec(optimizer=args.optimizer, lr=lr, momentum=0.9, batch_size=64, epochs=args.epochs)
    params = {"hidden": [512]} if args.arch == "mlp" else {}

    def build(s: int) -> torch.nn.Module:
        return build_model(args.arch, params, ds.input_shape, ds.num_classes, seed=s)

    # one-time costs (kernel selection, allocator warm-up) should not count against either path
    warm = TrainingSpec(optimizer="adam", lr=1e-3, batch_size=64, epochs=2)
    train_model(build(0), x[:300], y[:300], warm, seed=0, device=args.device)
    train_ensemble(build, [0, 1], x, y, [np.arange(300), np.arange(300, 600)], warm, [0, 1], device=args.device,
                   vmap_on_cpu=True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.arch}, {args.optimizer}, epochs {args.epochs}")
    print("wall = elapsed seconds per model; cpu = process CPU seconds per model (all threads), which a busy\n"
          "machine distorts less; max |diff| = largest weight difference between the two paths, relative = as a\n"
          "fraction of that weight tensor's largest magnitude")
    print(f"{'M':>4} {'one-model wall':>15} {'ensemble wall':>14} {'speed-up':>9} "
          f"{'one-model cpu':>14} {'ensemble cpu':>13} {'cpu ratio':>10} {'max |diff|':>11} {'relative':>9}")
    for m in args.models:
        rng = np.random.default_rng(args.seed + m)
        sets = [np.sort(rng.choice(600, 300, replace=False)) for _ in range(m)]
        init_seeds = [1000 + i for i in range(m)]
        train_seeds = [2000 + i for i in range(m)]

        t0, c0 = time.perf_counter(), time.process_time()
        # vmap_on_cpu: measure the vmap engine for --arch cnn (audits train conv nets one by one on a CPU)
        fast = train_ensemble(build, init_seeds, x, y, sets, training, train_seeds, device=args.device,
                              vmap_on_cpu=True)
        t_ens, c_ens = (time.perf_counter() - t0) / m, (time.process_time() - c0) / m

        t0, c0 = time.perf_counter(), time.process_time()
        slow = [train_model(build(init_seeds[i]), x[sets[i]], y[sets[i]], training, seed=train_seeds[i],
                            device=args.device).state_dict() for i in range(m)]
        t_one, c_one = (time.perf_counter() - t0) / m, (time.process_time() - c0) / m

        pairs = [(a[k], b[k]) for a, b in zip(fast, slow, strict=True) for k in a]
        diff = max((a - b).abs().max().item() for a, b in pairs)
        rel = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in pairs)
        print(f"{m:>4} {t_one:>15.3f} {t_ens:>14.3f} {t_one / t_ens:>8.1f}x "
              f"{c_one:>14.3f} {c_ens:>13.3f} {c_one / c_ens:>9.1f}x {diff:>11.2e} {rel:>9.1e}", flush=True)


if __name__ == "__main__":
    main()
