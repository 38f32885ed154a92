"""LiRA — the likelihood-ratio attack (Carlini et al., IEEE S&P 2022, "Membership Inference Attacks
From First Principles").

For each candidate, the scaled-logit confidence φ = log p_y − log(1 − p_y) under reference models that
trained on it (IN) and did not (OUT) is modelled as Gaussian, one dimension per query augmentation
(diagonal). Online: log N(φ_t; μ_in, σ_in²) − log N(φ_t; μ_out, σ_out²). Offline: the one-sided test
log Φ((φ_t − μ_out)/σ_out) against OUT models only. ``global_variance`` pools one σ over all
candidates, which the paper finds far better below ~64 reference models.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from cyphercat import signals
from cyphercat.attacks.base import Attack, attack
from cyphercat.attacks.reference import calibrated_threshold, require_models
from cyphercat.context import ReferencePool


def _phi(lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(..., aug, samples) scaled logits from (..., aug, samples, classes) log-probs."""
    return signals.scaled_logit(lp, labels)


def _masked_stats(values: np.ndarray, mask: np.ndarray, global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over models (axis 0) of ``values`` (models, aug, samples) where ``mask`` (models, samples).

    The global variance is that of every value on this side pooled over candidates, as in the
    authors' code (``np.std(dat_in)``): broad, but estimable with a single model per side. Per-example
    variances need at least two models on the side; candidates with fewer fall back to the pooled one."""
    w = mask[:, None, :].astype(np.float64)
    n = w.sum(axis=0)
    mu = (values * w).sum(axis=0) / np.maximum(n, 1)
    flat = values.transpose(1, 0, 2)[:, mask]                  # aug, (models·samples on this side)
    pooled = flat.var(axis=1, ddof=1)[:, None] if flat.shape[1] > 1 else np.ones((values.shape[1], 1))
    if global_variance:
        var = np.broadcast_to(pooled, mu.shape)
    else:
        var = (((values - mu) ** 2) * w).sum(axis=0) / np.maximum(n - 1, 1)
        var = np.where(n > 1, var, pooled)
    mu = np.where(n > 0, mu, (flat.mean(axis=1)[:, None] if flat.size else 0.0))
    return mu, np.sqrt(np.maximum(var, 1e-8))


class _LiRA(Attack):
    online = True
    needs = frozenset({"reference"})

    def __init__(self, augmentations: int = 1, global_variance: bool | None = None, random_state=None):
        self.augmentations = augmentations
        self.global_variance = global_variance
        self.random_state = random_state
        if augmentations < 1:
            raise ValueError("augmentations must be at least 1 (the identity query)")

    def _fixed(self, n_models: int) -> bool:
        return n_models < 64 if self.global_variance is None else bool(self.global_variance)

    def _score(self, pool: ReferencePool, target_lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
        n = pool.n_candidates
        ref = _phi(pool.log_probs[:, :, :n], labels)          # models, aug, samples
        tgt = _phi(target_lp[:, :n], labels)                  # aug, samples
        member = pool.membership
        fixed = self._fixed(len(member))
        mu_out, sd_out = _masked_stats(ref, ~member, fixed)
        if self.online:
            mu_in, sd_in = _masked_stats(ref, member, fixed)
            s = norm.logpdf(tgt, mu_in, sd_in) - norm.logpdf(tgt, mu_out, sd_out)
        else:
            s = norm.logcdf((tgt - mu_out) / sd_out)
        return s.sum(axis=0)

    def fit(self, ctx) -> _LiRA:
        self.pool_ = ctx.reference_pool(n_aug=self.augmentations)
        require_models(len(self.pool_.membership), self.online, self.registry_name)
        self.labels_ = ctx.dataset.y[ctx.candidates]
        self.threshold_ = calibrated_threshold(self.pool_, lambda p, lp: self._score(p, lp, self.labels_))
        self.details_ = {"reference_models": int(len(self.pool_.membership)), "augmentations": self.augmentations,
                         "global_variance": self._fixed(len(self.pool_.membership)),
                         "threshold_calibration": "reference model 0 played as the target"}
        return self

    def score(self, ctx) -> np.ndarray:
        return self._score(self.pool_, ctx.target_log_probs(self.augmentations), self.labels_)


@attack("lira_online")
class LiRAOnline(_LiRA):
    description = "LiRA online: per-example Gaussians of scaled logits under IN and OUT reference models"


@attack("lira_offline")
class LiRAOffline(_LiRA):
    description = "LiRA offline: one-sided test against OUT reference models only"
    online = False
