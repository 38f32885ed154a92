"""How an audit's cost grows with the number of reference models M.

Runs the default digits audit with every membership attack for M in {4, 16, 64} (cold cache in a fresh
temporary directory, then warm), and prints wall seconds, seconds per reference model and the size of
the reference signals kept in memory (M × queries × augmentations × classes floats: the pool keeps
signals, never M models). The M = 4 row is the baseline the growth is measured against.

    .venv/bin/python benchmarks/bench_scaling.py [--models 4 16 64] [--epochs 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from cyphercat.cache import ModelCache
from cyphercat.config import spec_from_dict
from cyphercat.context import AuditContext
from cyphercat.pipeline import prepare_run, run_audit
from cyphercat.registry import ATTACKS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--epochs", type=int, default=300)
    args = ap.parse_args()
    attacks = [n for n, cls in ATTACKS.items() if cls.kind == "membership"]
    rows = []
    for m in args.models:
        spec = spec_from_dict({"reference_models": m, "attacks": attacks,
                               "target": {"training": {"epochs": args.epochs}}})
        with tempfile.TemporaryDirectory() as tmp:
            cache = ModelCache(tmp)
            t0 = time.perf_counter()
            result = run_audit(spec, cache=cache, write_reports=False)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_audit(spec, cache=ModelCache(tmp), write_reports=False)
            warm = time.perf_counter() - t0
            shared, _ = prepare_run(spec, cache=ModelCache(tmp))
            pool = AuditContext(shared).reference_pool()
        best = max(result.evaluations[0].attacks, key=lambda a: (a.metrics.tpr_at_fpr["0.01"], a.metrics.auc))
        rows.append((m, cold, warm, pool.log_probs.nbytes, best))
        print(f"M={m:3d}  cold {cold:7.1f} s  warm {warm:5.1f} s  cold per reference model {cold / m:5.2f} s  "
              f"signals {pool.log_probs.nbytes / 2**20:6.2f} MiB  best {best.name} "
              f"TPR@1%FPR {best.metrics.tpr_at_fpr['0.01']:.3f}", flush=True)
    base_m, base_cold = rows[0][0], rows[0][1]
    print("\ngrowth against the first row (linear in M would be the M ratio):")
    for m, cold, _, _, _ in rows[1:]:
        print(f"  M={m}: time x{cold / base_cold:.2f} for M x{m / base_m:.1f}  "
              f"(marginal {(cold - base_cold) / (m - base_m):.2f} s per extra reference model)")


if __name__ == "__main__":
    main()
