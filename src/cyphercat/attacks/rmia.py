"""RMIA (Zarifzadeh et al., ICML 2024, "Low-Cost High-Power Membership Inference Attacks").

Pr(x|θ) = p_y(x) under the target; Pr(x) = its mean over reference models (online: all of them;
offline: OUT models only, corrected as Pr(x) ≈ ½((1 + a)·Pr_out(x) + (1 − a)) because OUT-only
averages underestimate it). With population records z (never trained on by any model here),
LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) and score(x) = fraction of z with LR(x, z) ≥ γ.
Under augmentations the probabilities are averaged over the augmented queries. ``a="auto"`` picks
``a`` on the reference models (one plays the target), as the paper does.
"""

from __future__ import annotations

import numpy as np

from cyphercat import signals
from cyphercat.attacks.base import Attack, attack
from cyphercat.attacks.reference import calibrated_threshold, leave_one_out, require_models
from cyphercat.context import ReferencePool
from cyphercat.metrics import auc


class _RMIA(Attack):
    online = True
    needs = frozenset({"reference"})

    def __init__(self, gamma: float = 1.0, a: float | str = "auto", n_population: int = 5000,
                 augmentations: int = 1, random_state=None):
        self.gamma = gamma
        self.a = a
        self.n_population = n_population
        self.augmentations = augmentations
        self.random_state = random_state
        if gamma <= 0:
            raise ValueError("gamma must be positive")
        if a != "auto" and not (isinstance(a, int | float) and 0 <= a <= 1):
            raise ValueError("a must be 'auto' or a number in [0, 1]")

    def _ratio(self, pool: ReferencePool, target_lp: np.ndarray, labels: np.ndarray, a: float) -> np.ndarray:
        """Pr(q|θ)/Pr(q) for every query (candidates then population)."""
        p_t = signals.confidence(target_lp, labels).mean(axis=0)               # queries
        p_ref = signals.confidence(pool.log_probs, labels).mean(axis=1)        # models, queries
        n = pool.n_candidates
        member = np.zeros(p_ref.shape, bool)
        member[:, :n] = pool.membership
        if self.online:
            pr = p_ref.mean(axis=0)
        else:
            out = ~member
            pr_out = (p_ref * out).sum(axis=0) / np.maximum(out.sum(axis=0), 1)
            pr = 0.5 * ((1 + a) * pr_out + (1 - a))
        return p_t / np.maximum(pr, 1e-30)

    def _score(self, pool: ReferencePool, target_lp: np.ndarray, labels: np.ndarray, a: float) -> np.ndarray:
        ratio = self._ratio(pool, target_lp, labels, a)
        n = pool.n_candidates
        z = np.sort(ratio[n:][self.z_])
        # fraction of z with ratio_x / ratio_z >= gamma  <=>  ratio_z <= ratio_x / gamma
        frac = np.searchsorted(z, ratio[:n] / self.gamma, side="right") / len(z)
        # Ties (e.g. every x above all z) are broken by the ratio itself, the limit of infinitely many z;
        # the tie-break stays below one step of the fraction so it never reorders distinct fractions.
        tie = np.arctan(np.log(np.maximum(ratio[:n], 1e-300))) / np.pi + 0.5
        return frac + tie / (len(z) + 1)

    def _pick_a(self, pool: ReferencePool, labels: np.ndarray) -> float:
        if self.online or self.a != "auto":
            return float(self.a) if self.a != "auto" else 1.0
        if len(pool.membership) < 2:
            return 0.3  # the paper's typical value when nothing is left to tune on
        rest, lp, member = leave_one_out(pool, 0)
        grid = np.linspace(0, 1, 11)
        aucs = [auc(self._score(rest, lp, labels, a), member) for a in grid]
        return float(grid[int(np.nanargmax(aucs))])

    def fit(self, ctx) -> _RMIA:
        pool = ctx.reference_pool(n_aug=self.augmentations)
        require_models(len(pool.membership), self.online, self.registry_name)
        n_pop = len(pool.query_idx) - pool.n_candidates
        if n_pop == 0:
            from cyphercat.errors import CyphercatError

            raise CyphercatError("splits.population", "RMIA needs population records as reference samples z",
                                 "leave records for the population split")
        rng = self._rng()
        self.z_ = np.sort(rng.choice(n_pop, min(self.n_population, n_pop), replace=False))
        self.pool_ = pool
        self.labels_ = ctx.dataset.y[ctx.query_idx]
        self.a_ = self._pick_a(pool, self.labels_)
        self.threshold_ = calibrated_threshold(pool, lambda p, lp: self._score(p, lp, self.labels_, self.a_))
        self.details_ = {"reference_models": int(len(pool.membership)), "a": self.a_, "gamma": self.gamma,
                         "population_z": int(len(self.z_)), "augmentations": self.augmentations}
        return self

    def score(self, ctx) -> np.ndarray:
        return self._score(self.pool_, ctx.target_log_probs(self.augmentations), self.labels_, self.a_)


@attack("rmia_online")
class RMIAOnline(_RMIA):
    description = "RMIA online: likelihood ratio against population samples, Pr(x) from IN and OUT models"


@attack("rmia_offline")
class RMIAOffline(_RMIA):
    description = "RMIA offline: Pr(x) from OUT models only, corrected with parameter a"
    online = False
