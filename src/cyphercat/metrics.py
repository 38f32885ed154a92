"""Pure functions from (scores, membership labels) to attack metrics. Higher score = more likely member.

Nothing here chooses a threshold on the evaluation labels except the ROC summaries that are defined
over all thresholds (AUC, TPR at a fixed FPR, the maximal advantage). Precision, recall and the ε
lower bound are computed at the threshold the attack chose itself, without these labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import beta

from cyphercat.errors import CyphercatError


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds at every distinct score (ties move together), starting at (0, 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(lab)[distinct]
    fp = np.cumsum(~lab)[distinct]
    n_pos, n_neg = max(lab.sum(), 1), max((~lab).sum(), 1)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC = P(score of a member > score of a non-member) + ½ P(tie) (Mann–Whitney)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The best TPR among thresholds whose FPR does not exceed ``target`` (no interpolation upwards)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def epsilon_lower_bound(tp: int, fp: int, n_pos: int, n_neg: int, confidence: float = 0.95,
                        delta: float = 0.0) -> float:
    """Empirical ε lower bound at one threshold (Jagielski et al. 2020): from Clopper–Pearson upper
    bounds on FPR and FNR, ε ≥ max(log((1−δ−FNR)/FPR), log((1−δ−FPR)/FNR))."""
    fpr_hi = clopper_pearson(fp, n_neg, confidence)[1]
    fnr_hi = clopper_pearson(n_pos - tp, n_pos, confidence)[1]
    cands = [0.0]
    for num, den in ((1 - delta - fnr_hi, fpr_hi), (1 - delta - fpr_hi, fnr_hi)):
        if num > 0 and den > 0:
            cands.append(math.log(num / den))
    return max(cands)


@dataclass(frozen=True)
class AttackMetrics:
    auc: float
    auc_ci: tuple[float, float]
    tpr_at_fpr: dict[str, float]
    tpr_at_fpr_ci: dict[str, tuple[float, float]]
    advantage: float
    precision: float
    recall: float
    threshold: float | None
    advantage_at_threshold: float
    epsilon_lower_bound: float
    n_members: int
    n_nonmembers: int
    lowest_measurable_fpr: float
    notes: list[str] = field(default_factory=list)


def _summaries(scores, labels, fprs):
    fpr, tpr, _ = roc_curve(scores, labels)
    return auc(scores, labels), [tpr_at_fpr(fpr, tpr, t) for t in fprs], float(np.max(tpr - fpr))


def evaluate(scores: np.ndarray, labels: np.ndarray, threshold: float | None, *, fprs=(0.001, 0.01, 0.1),
             bootstrap: int = 200, confidence: float = 0.95, rng: np.random.Generator | None = None) -> AttackMetrics:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise CyphercatError("scores", f"{scores.shape} scores for {labels.shape} labels", "give one score per candidate")
    if not np.isfinite(scores).all():
        # -inf/+inf are legitimate extreme scores; NaN is not.
        if np.isnan(scores).any():
            raise CyphercatError("scores", "attack produced NaN scores", "report this as a bug in the attack")
        finite = scores[np.isfinite(scores)]
        span = (finite.max() - finite.min() + 1.0) if finite.size else 1.0
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        scores = np.where(scores == np.inf, hi + span, np.where(scores == -np.inf, lo - span, scores))
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    a, tprs, adv = _summaries(scores, labels, fprs)
    rng = rng or np.random.default_rng(0)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    boot_auc, boot_tpr = [], []
    for _ in range(bootstrap):
        idx = np.r_[rng.choice(pos, n_pos), rng.choice(neg, n_neg)]
        b_auc, b_tpr, _ = _summaries(scores[idx], labels[idx], fprs)
        boot_auc.append(b_auc)
        boot_tpr.append(b_tpr)
    q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
    if bootstrap:
        auc_ci = tuple(float(v) for v in np.percentile(boot_auc, q))
        tpr_ci = {str(t): tuple(float(v) for v in np.percentile(np.array(boot_tpr)[:, i], q))
                  for i, t in enumerate(fprs)}
    else:
        auc_ci, tpr_ci = (a, a), {str(t): (v, v) for t, v in zip(fprs, tprs, strict=True)}
    if threshold is None or not np.isfinite(threshold):
        pred = np.zeros_like(labels)
    else:
        pred = scores >= threshold
    tp, fp = int((pred & labels).sum()), int((pred & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_pos if n_pos else 0.0
    notes = []
    floor = 1.0 / max(n_neg, 1)
    for t in fprs:
        if t < floor:
            notes.append(f"TPR at FPR {t:g} rests on fewer than one non-member ({t * n_neg:.2f} of {n_neg}): "
                         "it is the TPR at zero false positives")
    return AttackMetrics(
        auc=a, auc_ci=auc_ci, tpr_at_fpr={str(t): v for t, v in zip(fprs, tprs, strict=True)}, tpr_at_fpr_ci=tpr_ci,
        advantage=adv, precision=precision, recall=recall,
        threshold=None if threshold is None or not np.isfinite(threshold) else float(threshold),
        advantage_at_threshold=recall - fp / max(n_neg, 1),
        epsilon_lower_bound=epsilon_lower_bound(tp, fp, n_pos, n_neg, confidence),
        n_members=n_pos, n_nonmembers=n_neg, lowest_measurable_fpr=floor, notes=notes,
    )


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising TPR − FPR on *calibration* data (shadow models), never evaluation data."""
    fpr, tpr, thr = roc_curve(scores, labels)
    i = int(np.argmax(tpr - fpr))
    if i == 0:
        return float(thr[1]) if len(thr) > 1 else 0.0
    return float(thr[i])
