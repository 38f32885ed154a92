"""Time the shipped audits with a cold and a warm cache, and print the figures the README quotes.

    .venv/bin/python benchmarks/bench_examples.py [--only default defenses inversion attribute]

default:   the built-in digits audit (13 attacks, 16 reference models)
defenses:  examples/defenses.yaml (every defense, scorecard)
inversion: examples/inversion.yaml (MI-Face, undefended and under DP-SGD)
attribute: examples/attribute.yaml (attribute inference on members vs non-members)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cyphercat.cache import ModelCache
from cyphercat.config import load_spec
from cyphercat.pipeline import run_audit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUNS = {"default": None, "defenses": EXAMPLES / "defenses.yaml", "inversion": EXAMPLES / "inversion.yaml",
        "attribute": EXAMPLES / "attribute.yaml"}


def timed(spec, cache_dir: str):
    t0 = time.perf_counter()
    result = run_audit(spec, cache=ModelCache(cache_dir), write_reports=False)
    return result, time.perf_counter() - t0


def describe(name: str, result) -> None:
    for ev in result.evaluations:
        acc = ev.target["test_accuracy"]
        if ev.attacks:
            best = max(ev.attacks, key=lambda a: (a.metrics.tpr_at_fpr["0.01"], a.metrics.auc))
            loss = next((a for a in ev.attacks if a.name == "loss"), None)
            extra = f"  loss AUC {loss.metrics.auc:.3f} CI {loss.metrics.auc_ci[0]:.3f}-{loss.metrics.auc_ci[1]:.3f}" \
                if loss else ""
            print(f"  [{ev.id}] test acc {acc:.3f}  best {best.name} AUC {best.metrics.auc:.3f} "
                  f"TPR@1%FPR {best.metrics.tpr_at_fpr['0.01']:.3f}{extra}")
        if "inversion" in ev.extras:
            avg = ev.extras["inversion"]["average"]
            print(f"  [{ev.id}] test acc {acc:.3f}  inversion: evaluator accuracy on reconstructions "
                  f"{avg['evaluator_accuracy']:.2f} (chance {1 / result.dataset['num_classes']:.2f})")
        if "attribute_inference" in ev.extras:
            a = ev.extras["attribute_inference"]
            m, n = a["members"], a["nonmembers"]
            lo, hi = a["membership_advantage_ci"]
            print(f"  [{ev.id}] attribute inference: gain over the prior on members {m['advantage_over_prior']:+.3f}, "
                  f"on non-members {n['advantage_over_prior']:+.3f}; membership advantage "
                  f"{a['membership_advantage']:.3f} (CI {lo:.3f}-{hi:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    args = ap.parse_args()
    for name in args.only:
        spec = load_spec(RUNS[name])
        with tempfile.TemporaryDirectory() as cache_dir:
            result, cold = timed(spec, cache_dir)
            _, warm = timed(spec, cache_dir)
        print(f"{name}: cold cache {cold:.1f} s, warm {warm:.1f} s (in-process, torch already imported)")
        describe(name, result)


if __name__ == "__main__":
    main()
