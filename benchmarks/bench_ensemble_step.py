"""Where an ensemble training step goes, and what subnormal optimizer state costs.

Trains M default MLPs (512 hidden units, Adam, batch 64, 300 random records each of digits) in lock-step
for 300 epochs, as bench_ensemble.py does, and prints

* milliseconds per step spent computing gradients and in the optimizer, for the first and second half
  of the run, with the optimizer state cleared of subnormals every FLUSH_EVERY steps (as both trainers
  do) and without (flushing disabled for this run only), plus how many subnormal moment entries were
  left at the end;
* with --profile, torch's profiler table of the operators of the last 20 steps (self CPU time); the
  profiler slows those steps, so read the per-half timings from a run without it.

    .venv/bin/python benchmarks/bench_ensemble_step.py                # M = 16
    .venv/bin/python benchmarks/bench_ensemble_step.py --profile
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch

import cyphercat.training.stacked_optim as stacked_optim
from cyphercat.config import TrainingSpec
from cyphercat.data.base import load_dataset
from cyphercat.models.zoo import build_model
from cyphercat.training.ensemble import _make_engine
from cyphercat.training.stacked_optim import StackedOptimizer
from cyphercat.training.trainer import to_tensor


def run(m: int, epochs: int, flush: bool, profile: bool) -> None:
    ds = load_dataset("digits", {})
    x, y = ds.x[:600], ds.y[:600]
    training = TrainingSpec(optimizer="adam", lr=1e-3, batch_size=64, epochs=epochs)
    nets = [build_model("mlp", {"hidden": [512]}, ds.input_shape, ds.num_classes, seed=1000 + i) for i in range(m)]
    rng = np.random.default_rng(m)
    positions = torch.from_numpy(np.stack([np.sort(rng.choice(600, 300, replace=False)) for _ in range(m)]))
    xu, yu = to_tensor(x, torch.device("cpu")), torch.from_numpy(np.asarray(y, dtype=np.int64))
    engine = _make_engine(nets, torch.device("cpu"), xu[:1], [64, 300 % 64])
    xe = engine.prepare(xu)
    gens = [torch.Generator().manual_seed(2000 + i) for i in range(m)]
    every = stacked_optim.FLUSH_EVERY if flush else 10**12
    with mock.patch.object(stacked_optim, "FLUSH_EVERY", every):
        opt = StackedOptimizer(engine.params, training)
        halves = [[0.0, 0.0, 0], [0.0, 0.0, 0]]  # gradient seconds, optimizer seconds, steps
        prof = None
        for epoch in range(epochs):
            if profile and epoch == epochs - 4:
                prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                prof.__enter__()
            perm = torch.stack([torch.randperm(300, generator=g) for g in gens])
            order = torch.gather(positions, 1, perm)
            for b in range(-(-300 // 64)):
                idx = order[:, b * 64:(b + 1) * 64].reshape(-1)
                xb = xe.index_select(0, idx).view(m, -1, xe.shape[1])
                yb = yu.index_select(0, idx).view(m, -1)
                t0 = time.perf_counter()
                engine.compute_grads(xb, yb, [])
                t1 = time.perf_counter()
                opt.step()
                t2 = time.perf_counter()
                half = halves[epoch >= epochs // 2]
                half[0] += t1 - t0
                half[1] += t2 - t1
                half[2] += 1
        if prof is not None:
            prof.__exit__(None, None, None)
    tiny = torch.finfo(torch.float32).tiny
    stuck = sum(int(((t != 0) & (t.abs() < tiny)).sum()) for st in opt.opt.state.values()
                for k, t in st.items() if k != "step")
    label = f"flush every {stacked_optim.FLUSH_EVERY}" if flush else "no flush"
    for name, (g, o, n) in zip(("first half", "second half"), halves, strict=True):
        print(f"{label:>15}  {name:<11}  gradients {1e3 * g / n:6.2f} ms/step  optimizer {1e3 * o / n:6.2f} ms/step")
    print(f"{label:>15}  subnormal moment entries left at the end: {stuck}")
    if prof is not None:
        print(f"\nprofile of the last 4 epochs ({4 * -(-300 // 64)} steps), self CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, M = {args.models}, "
          f"epochs {args.epochs}")
    run(args.models, args.epochs, flush=True, profile=args.profile)
    run(args.models, args.epochs, flush=False, profile=False)


if __name__ == "__main__":
    main()
