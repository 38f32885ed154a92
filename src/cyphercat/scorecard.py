"""The privacy–utility scorecard: one row per defense setting (the undefended baseline included).

Utility is the target's test accuracy; leakage is the *best* membership attack of that setting,
chosen by TPR at 1% FPR with ties broken by AUC (low-FPR success is what matters to a member, and
AUC alone hides it). A row is on the Pareto front when no other row has both strictly higher test
accuracy and strictly lower leakage, leakage compared as the pair (TPR@1%FPR, AUC).

``build_scorecard(result)`` accepts an :class:`~cyphercat.results.AuditResult` or the dict of a
``results.json``; ``write_scorecard`` saves ``scorecard.json`` and ``scorecard.csv``;
``print_scorecard`` prints a rich table.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from cyphercat.files import write_atomic
from cyphercat.results import jsonable

LOW_FPRS = ("0.001", "0.01")
RANK_FPR = "0.01"


def _leakage(row: dict[str, Any]) -> tuple[float, float] | None:
    if row["auc"] is None:
        return None
    tpr = row.get(f"tpr_at_{RANK_FPR}")
    return (-1.0 if tpr is None else float(tpr), float(row["auc"]))


def best_attack(attacks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The membership attack with the highest TPR at 1% FPR; ties (common at few members) go to AUC."""
    scored = [a for a in attacks if a.get("kind", "membership") == "membership" and a.get("auc") is not None]
    if not scored:
        return None

    def key(a):
        tpr = (a.get("tpr_at_fpr") or {}).get(RANK_FPR)
        return (-1.0 if tpr is None else tpr, a["auc"])

    return max(scored, key=key)


def mark_pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``pareto`` on each row in place (and return the rows): True unless another row dominates it
    (accuracy >=, leakage <=, one of them strict). Rows without accuracy or attacks are never on it."""
    points = [(r.get("test_accuracy"), _leakage(r)) for r in rows]
    for row, (acc, leak) in zip(rows, points, strict=True):
        if acc is None or leak is None:
            row["pareto"] = False
            continue
        row["pareto"] = not any(a is not None and lk is not None and a >= acc and lk <= leak and (a > acc or lk < leak)
                                for a, lk in points)
    return rows


def build_scorecard(result: Any) -> list[dict[str, Any]]:
    data = result.to_dict() if hasattr(result, "to_dict") else result
    evaluations = data["evaluations"]
    baseline = next((e for e in evaluations if e["defense"].get("name") == "none"), None)
    base_acc = baseline["target"].get("test_accuracy") if baseline else None
    rows = []
    for ev in evaluations:
        d = ev["defense"]
        acc = ev["target"].get("test_accuracy")
        best = best_attack(ev["attacks"])
        row: dict[str, Any] = {
            "id": ev["id"], "defense": d.get("name", "none"), "params": dict(d.get("params") or {}),
            "stage": d.get("stage"), "epsilon": d.get("epsilon"),
            "attacker_knows_defense": ev.get("attacker_knows_defense"),
            "test_accuracy": acc,
            "accuracy_drop": None if acc is None or base_acc is None else base_acc - acc,
            "best_attack": best["name"] if best else None,
            "auc": best["auc"] if best else None,
            "auc_ci": list(best["auc_ci"]) if best else None,
        }
        for fpr in LOW_FPRS:
            tpr = (best.get("tpr_at_fpr") or {}).get(fpr) if best else None
            ci = (best.get("tpr_at_fpr_ci") or {}).get(fpr) if best else None
            row[f"tpr_at_{fpr}"] = tpr
            row[f"tpr_at_{fpr}_ci"] = list(ci) if ci is not None else None
        rows.append(row)
    return mark_pareto(rows)


CSV_COLUMNS = ["id", "defense", "params", "stage", "epsilon", "attacker_knows_defense", "test_accuracy",
               "accuracy_drop", "best_attack", "auc", "auc_ci_lo", "auc_ci_hi",
               *[c for f in LOW_FPRS for c in (f"tpr_at_{f}", f"tpr_at_{f}_ci_lo", f"tpr_at_{f}_ci_hi")], "pareto"]


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = {k: v for k, v in r.items() if k in CSV_COLUMNS}
        flat["params"] = json.dumps(r.get("params") or {}, sort_keys=True)
        for name in ("auc_ci", *(f"tpr_at_{f}_ci" for f in LOW_FPRS)):
            lo, hi = r.get(name) or (None, None)
            flat[f"{name}_lo"], flat[f"{name}_hi"] = lo, hi
        w.writerow({k: "" if v is None else v for k, v in jsonable(flat).items()})
    return buf.getvalue()


def write_scorecard(out_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    out = Path(out_dir)
    write_atomic(out / "scorecard.json", (json.dumps(jsonable(rows), indent=2, allow_nan=False) + "\n").encode())
    write_atomic(out / "scorecard.csv", to_csv(rows).encode())


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(ci: Any) -> str:
    return "" if not ci or ci[0] is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def print_scorecard(rows: list[dict[str, Any]], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="privacy–utility scorecard (best attack per setting; ★ = Pareto front)")
    for col in ("setting", "ε", "test acc", "Δ acc", "best attack", "AUC [95% CI]", "TPR@0.1%", "TPR@1% [CI]", "★"):
        table.add_column(col, justify="left" if col in ("setting", "best attack") else "right")
    for r in rows:
        drop = r.get("accuracy_drop")
        table.add_row(
            r["id"], _fmt(r.get("epsilon"), 2), _fmt(r.get("test_accuracy")),
            "–" if drop is None else f"{0.0 - drop:+.3f}", r.get("best_attack") or "–",
            _fmt(r.get("auc")) + _ci(r.get("auc_ci")), _fmt(r.get("tpr_at_0.001")),
            _fmt(r.get("tpr_at_0.01")) + _ci(r.get("tpr_at_0.01_ci")), "★" if r.get("pareto") else "")
    console.print(table)
