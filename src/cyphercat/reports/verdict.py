"""What every report says first, computed once: the strongest attack, the verdict in plain words, and
the most exposed training records. HTML, Markdown and the terminal all format these same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LOW_FPR, MAIN_FPR = "0.001", "0.01"


def membership_attacks(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in evaluation.get("attacks", []) if isinstance(a, dict) and a.get("kind", "membership") == "membership"]


def _num(value: Any, default: float = float("nan")) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def tpr(attack: dict[str, Any], fpr: str) -> float:
    return _num((attack.get("tpr_at_fpr") or {}).get(fpr))


def tpr_ci(attack: dict[str, Any], fpr: str) -> tuple[float, float] | None:
    ci = (attack.get("tpr_at_fpr_ci") or {}).get(fpr)
    return (_num(ci[0]), _num(ci[1])) if isinstance(ci, list | tuple) and len(ci) == 2 else None


def strongest_attack(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """Highest TPR at 1% FPR, ties broken by AUC (NaN counts as lowest)."""

    def key(a: dict[str, Any]) -> tuple[float, float]:
        t, u = tpr(a, MAIN_FPR), _num(a.get("auc"))
        return (-1.0 if math.isnan(t) else t, -1.0 if math.isnan(u) else u)

    attacks = membership_attacks(evaluation)
    return max(attacks, key=key) if attacks else None


def pct(value: Any, digits: int = 1) -> str:
    v = _num(value)
    return "n/a" if math.isnan(v) else f"{100 * v:.{digits}f}%"


def num(value: Any, digits: int = 3) -> str:
    v = _num(value)
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def ci_text(ci: Any, as_pct: bool = False) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return ""
    fmt = pct if as_pct else num
    return f"{fmt(ci[0])}–{fmt(ci[1])}"


def fpr_words(fpr: str) -> str:
    v = float(fpr)
    return f"{100 * v:g}%"


@dataclass
class Verdict:
    headline: str
    sentences: list[str]
    attack: str | None
    test_accuracy: float
    train_accuracy: float
    auc: float
    tpr_low: float
    tpr_low_ci: tuple[float, float] | None
    tpr_main: float
    tpr_main_ci: tuple[float, float] | None
    leaks: bool | None
    notes: list[str] = field(default_factory=list)


def verdict(results: dict[str, Any]) -> Verdict:
    """The verdict on the undefended evaluation (``evaluations[0]``), in words a reader can repeat."""
    evaluations = results.get("evaluations") or [{}]
    ev = evaluations[0]
    target = ev.get("target") or {}
    test_acc, train_acc = _num(target.get("test_accuracy")), _num(target.get("train_accuracy"))
    best = strongest_attack(ev)
    sentences = []
    if not math.isnan(test_acc):
        acc = f"The target model is {pct(test_acc)} accurate on records it did not train on"
        acc += f" ({pct(train_acc)} on its training records)." if not math.isnan(train_acc) else "."
        sentences.append(acc)
    if best is None:
        return Verdict("No membership attack was run.", sentences, None, test_acc, train_acc, float("nan"),
                       float("nan"), None, float("nan"), None, None)
    name = str(best.get("name"))
    t1, t1_ci = tpr(best, MAIN_FPR), tpr_ci(best, MAIN_FPR)
    t01, t01_ci = tpr(best, LOW_FPR), tpr_ci(best, LOW_FPR)
    ci1 = f" (95% CI {pct(t1_ci[0])}–{pct(t1_ci[1])})" if t1_ci else ""
    ci01 = f" (95% CI {pct(t01_ci[0])}–{pct(t01_ci[1])})" if t01_ci else ""
    headline = (f"An attacker identifies {pct(t1)} of training records with 1% false alarms "
                f"(strongest attack: {name}).")
    sentences.append(f"With 0.1% false alarms the same attack identifies {pct(t01)}{ci01}; "
                     f"at 1% false alarms {pct(t1)}{ci1}. Its AUC is {num(best.get('auc'))} "
                     f"(95% CI {ci_text(best.get('auc_ci')) or 'n/a'}; 0.5 is guessing).")
    # Guessing flags 1% of members at 1% false alarms; leakage is shown only when the CI clears that.
    leaks = None if t1_ci is None else bool(t1_ci[0] > float(MAIN_FPR))
    if leaks:
        sentences.append("That is more than guessing would find: the model leaks membership of its training data.")
    elif leaks is False:
        sentences.append("That is not distinguishable from guessing at this sample size.")
    notes = []
    floor = _num(best.get("lowest_measurable_fpr"), 0.0)
    if floor > float(LOW_FPR):
        n = best.get("n_nonmembers", "the")
        notes.append(f"TPR at 0.1% FPR rests on fewer than one of {n} non-members: "
                     "read it as the TPR at zero false alarms.")
    return Verdict(headline, sentences, name, test_acc, train_acc, _num(best.get("auc")), t01, t01_ci, t1, t1_ci,
                   leaks, notes)


@dataclass
class Exposed:
    rank: int
    index: int
    score: float
    nonmembers_above: float  # share of non-members scoring at least as high: the FPR at which it is caught
    label: str | None = None


def score_key(evaluation_id: str, attack: str) -> str:
    return f"{evaluation_id}/{attack}"


def most_exposed(results: dict[str, Any], scores: dict[str, np.ndarray], k: int = 20,
                 labels: np.ndarray | None = None, class_names: tuple[str, ...] | None = None) -> list[Exposed]:
    """Members ranked by the strongest attack's score on the undefended evaluation, top ``k``."""
    ev = (results.get("evaluations") or [{}])[0]
    best = strongest_attack(ev)
    if best is None or "candidates" not in scores or "is_member" not in scores:
        return []
    key = score_key(str(ev.get("id")), str(best.get("name")))
    if key not in scores:
        return []
    s = np.asarray(scores[key], dtype=np.float64)
    cand = np.asarray(scores["candidates"], dtype=np.int64)
    member = np.asarray(scores["is_member"], dtype=bool)
    if not (len(s) == len(cand) == len(member)):
        return []
    non = np.sort(np.nan_to_num(s[~member], nan=-np.inf))
    pos = np.flatnonzero(member)
    order = pos[np.argsort(-np.nan_to_num(s[pos], nan=-np.inf), kind="stable")][:k]
    out = []
    for r, i in enumerate(order, start=1):
        above = (len(non) - np.searchsorted(non, s[i], side="left")) / max(len(non), 1)
        label = None
        if labels is not None and 0 <= cand[i] < len(labels):
            y = int(labels[cand[i]])
            label = class_names[y] if class_names and 0 <= y < len(class_names) else str(y)
        out.append(Exposed(r, int(cand[i]), float(s[i]), float(above), label))
    return out
