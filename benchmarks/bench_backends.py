"""The same 32-reference-model job on the serial, process (2 workers) and Ray (2 CPUs) backends.

Prints, in one run: seconds per backend (startup of workers shown apart), the speed-up of each against
serial (and against serial with one torch thread, as each process worker has on 2 cores), whether every backend produced bit-identical weights, and Ray's overhead per job (the round
trip of an empty task through the same path the training tasks take).

    python benchmarks/bench_backends.py                 # 32 models, mlp [512], 30 epochs
    python benchmarks/bench_backends.py --epochs 300    # the default training spec's length
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cyphercat.backends import GROUP_SIZE, JobEnv, ProcessBackend, SerialBackend, TrainJob, get_backend
from cyphercat.cache import ModelCache
from cyphercat.config import ModelSpec, TrainingSpec
from cyphercat.data.base import load_dataset
from cyphercat.data.splits import membership_matrix
from cyphercat.seeding import Seeds


def make_jobs(models: int, epochs: int, hidden: int) -> tuple[list[TrainJob], JobEnv]:
    ds = load_dataset("digits", {})
    env = JobEnv(ds.x, ds.y, "bench-digits", ds.input_shape, ds.num_classes, torch.device("cpu"))
    seeds = Seeds(0)
    candidates = np.arange(600)
    member = membership_matrix(models, len(candidates), seeds.numpy("membership", models))
    spec, training = ModelSpec(name="mlp", params={"hidden": [hidden]}), TrainingSpec(epochs=epochs)
    jobs = [TrainJob(f"reference{i}", candidates[member[i]], spec, training, seeds.int("reference", i, "init"),
                     seeds.int("reference", i, "train")) for i in range(models)]
    return jobs, env


def run(backend, jobs, env, root: Path) -> tuple[float, str]:
    """Seconds to get every model (trained by workers into a fresh cache, read back one at a time)."""
    digest = [""] * len(jobs)
    t0 = time.perf_counter()
    for i, state, _ in backend.run(jobs, env, ModelCache(root)):
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode() + state[k].numpy().tobytes())
        digest[i] = h.hexdigest()
    return time.perf_counter() - t0, hashlib.sha256("".join(digest).encode()).hexdigest()


def _noop(x):
    return x


def _warm(x):
    """Start a worker the way a training task would find it: torch and the trainers imported."""
    import cyphercat.backends  # noqa: F401
    import cyphercat.training.ensemble  # noqa: F401

    return x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-ray", action="store_true", help="skip Ray even when it is installed")
    args = p.parse_args()
    jobs, env = make_jobs(args.models, args.epochs, args.hidden)
    print(f"{args.models} reference models: mlp [{args.hidden}] on 300 digits records each, {args.epochs} epochs, "
          f"ensemble groups of {GROUP_SIZE}; torch threads in the driver: {torch.get_num_threads()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seconds, digest = run(SerialBackend(), jobs, env, Path(tmp) / "serial")
        rows.append(("serial", 0.0, seconds, digest))
        # the process workers run one torch thread each; this row separates that effect from parallelism
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        seconds, digest = run(SerialBackend(), jobs, env, Path(tmp) / "serial1")
        torch.set_num_threads(threads)
        rows.append(("serial, 1 thread", 0.0, seconds, digest))

        proc = ProcessBackend(workers=args.workers)
        t0 = time.perf_counter()
        list(proc._get_pool().map(_noop, range(args.workers * 4)))  # spawn the workers (they import torch)
        startup = time.perf_counter() - t0
        seconds, digest = run(proc, jobs, env, Path(tmp) / "process")
        proc.close()
        rows.append((f"process ({args.workers} workers)", startup, seconds, digest))

        overhead = None
        if not args.no_ray:
            try:
                import ray
            except ImportError:
                print("ray is not installed: pip install 'cyphercat[ray]' to include it")
            else:
                t0 = time.perf_counter()
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING")
                backend = get_backend("ray")
                noop = ray.remote(num_cpus=1)(_noop)
                ray.get([ray.remote(num_cpus=1)(_warm).remote(i) for i in range(args.workers * 4)])
                startup = time.perf_counter() - t0
                seconds, digest = run(backend, jobs, env, Path(tmp) / "ray")
                rows.append((f"ray ({args.workers} CPUs)", startup, seconds, digest))
                # overhead per job: an empty group through the same task, env ref and result path
                env_ref = ray.put(env)
                n = 200
                t0 = time.perf_counter()
                ray.get([noop.remote(env_ref) for _ in range(n)])
                overhead = (time.perf_counter() - t0) / n
                ray.shutdown()

    base = rows[0][2]
    print(f"\n{'backend':<22}{'startup s':>10}{'run s':>9}{'speed-up':>10}{'s/model':>9}  identical to serial")
    for name, startup, seconds, digest in rows:
        print(f"{name:<22}{startup:>10.1f}{seconds:>9.1f}{base / seconds:>9.2f}x{seconds / len(jobs):>9.3f}  "
              f"{'yes' if digest == rows[0][3] else 'NO'}")
    groups = -(-len(jobs) // GROUP_SIZE)
    if overhead is not None:
        print(f"\nray overhead per job (empty task round trip, env by reference): {overhead * 1e3:.1f} ms; "
              f"{groups} jobs (ensemble groups) here -> {overhead * groups:.2f} s of {rows[-1][2]:.1f} s")


if __name__ == "__main__":
    main()
