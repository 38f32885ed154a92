"""Metric attacks: one number per record from the target's output (Yeom et al. 2018; Song & Mittal 2021).

Scores are oriented so that higher = member (low loss, high confidence, low entropy). Thresholds are
set on the attacker's shadow model (shadow members vs shadow non-members), never on the evaluation
labels; with ``per_class`` each class gets its own threshold (Song & Mittal's class-dependent
thresholds), applied by scoring ``signal − threshold[class]``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cyphercat import signals
from cyphercat.attacks.base import Attack, attack
from cyphercat.metrics import best_threshold


class MetricAttack(Attack):
    signal: ClassVar[str] = ""

    def __init__(self, per_class: bool = False, calibrate: str = "shadow", random_state=None):
        self.per_class = per_class
        self.calibrate = calibrate
        self.random_state = random_state
        if calibrate not in ("shadow", "none"):
            raise ValueError("calibrate must be 'shadow' or 'none'")

    def requires(self) -> frozenset[str]:
        return frozenset({"shadow"}) if self.calibrate == "shadow" else frozenset()

    def _raw(self, lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, ctx) -> MetricAttack:
        self.thresholds_ = None
        self.threshold_ = None
        if self.calibrate == "none":
            return self
        sh = ctx.shadow
        idx = np.concatenate([sh.in_idx, sh.out_idx])
        labels = np.r_[np.ones(len(sh.in_idx), bool), np.zeros(len(sh.out_idx), bool)]
        y = sh.dataset.y[idx]
        raw = self._raw(sh.model.log_probs(sh.dataset.x[idx]), y)
        if self.per_class:
            k = ctx.dataset.num_classes
            overall = best_threshold(raw, labels)
            self.thresholds_ = np.array([best_threshold(raw[y == c], labels[y == c])
                                         if (labels[y == c].any() and (~labels[y == c]).any()) else overall
                                         for c in range(k)])
            self.threshold_ = 0.0
        else:
            self.threshold_ = best_threshold(raw, labels)
        return self

    def score(self, ctx) -> np.ndarray:
        y = ctx.dataset.y[ctx.candidates]
        raw = self._raw(ctx.target_log_probs()[0][: ctx.n_candidates], y)
        if self.thresholds_ is not None:
            return raw - self.thresholds_[y]
        return raw


@attack("loss")
class LossAttack(MetricAttack):
    description = "member if the loss −log p_y is low (Yeom et al. 2018)"

    def _raw(self, lp, labels):
        return -signals.loss(lp, labels)


@attack("confidence")
class ConfidenceAttack(MetricAttack):
    description = "member if the true-class probability p_y is high"

    def _raw(self, lp, labels):
        return signals.confidence(lp, labels)


@attack("entropy")
class EntropyAttack(MetricAttack):
    description = "member if the prediction entropy is low"

    def _raw(self, lp, labels):
        return -signals.entropy(lp)


@attack("modified_entropy")
class ModifiedEntropyAttack(MetricAttack):
    description = "member if Song & Mittal's modified entropy is low; class-dependent thresholds"

    def __init__(self, per_class: bool = True, calibrate: str = "shadow", random_state=None):
        super().__init__(per_class=per_class, calibrate=calibrate, random_state=random_state)

    def _raw(self, lp, labels):
        return -signals.modified_entropy(lp, labels)
