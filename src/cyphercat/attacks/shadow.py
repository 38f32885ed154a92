"""ML-Leaks (Salem et al., NDSS 2019): adversaries 1 (shadow model) and 2 (data transfer), and
adversary 3 (no shadow model, a threshold on the maximum posterior)."""

from __future__ import annotations

import numpy as np

from cyphercat import signals
from cyphercat.attacks.base import Attack, attack
from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import build_model
from cyphercat.target import log_softmax_np
from cyphercat.training.trainer import predict_logits, train_model


class ShadowModelAttack(Attack):
    """Train an attack model on the shadow model's top-k sorted posteriors (shadow members = 1,
    shadow non-members = 0), then apply it to the target's posteriors. The attack model's architecture
    and training come from the spec's ``attack_model`` (an MLP with one small hidden layer, as in the paper)."""

    transfer = False
    needs = frozenset({"shadow"})

    def __init__(self, top_k: int = 3, random_state=None):
        self.top_k = top_k
        self.random_state = random_state
        if top_k < 1:
            raise ValueError("top_k must be at least 1")

    def fit(self, ctx) -> ShadowModelAttack:
        sh = ctx.transfer_shadow if self.transfer else ctx.shadow
        feats = np.concatenate([signals.top_k_sorted(sh.model.log_probs(sh.dataset.x[sh.in_idx]), self.top_k),
                                signals.top_k_sorted(sh.model.log_probs(sh.dataset.x[sh.out_idx]), self.top_k)])
        labels = np.r_[np.ones(len(sh.in_idx)), np.zeros(len(sh.out_idx))].astype(np.int64)
        am = ctx.spec.attack_model
        seed = int(self._rng().integers(2**62))
        self.attack_model_ = build_model(am.model.name, am.model.params, (self.top_k,), 2, seed=seed,
                                         field="attack_model.model")
        train_model(self.attack_model_, feats, labels, am.training, seed=seed + 1, device="cpu")
        self.threshold_ = 0.0  # log-odds 0 = probability ½
        return self

    def score(self, ctx) -> np.ndarray:
        feats = signals.top_k_sorted(ctx.target_log_probs()[0][: ctx.n_candidates], self.top_k)
        lp = log_softmax_np(predict_logits(self.attack_model_, feats))
        return (lp[:, 1] - lp[:, 0]).astype(np.float64)


@attack("ml_leaks_1")
class MLLeaks1(ShadowModelAttack):
    description = "ML-Leaks adversary 1: shadow model on same-distribution data, attack MLP on top-3 posteriors"


@attack("ml_leaks_2")
class MLLeaks2(ShadowModelAttack):
    description = "ML-Leaks adversary 2: shadow model trained on a different dataset (data transfer)"
    transfer = True
    needs = frozenset({"transfer"})


@attack("ml_leaks_3")
class MLLeaks3(Attack):
    """Adversary 3: member if the maximum posterior exceeds a threshold chosen without membership labels.

    ``threshold_source="noise"`` is the paper's recipe: query the target with random inputs and take
    the ``percentile`` of their maximum posteriors. ``"population"`` uses records known to be
    non-members (the population split) instead, which suits targets whose random inputs look nothing
    like data."""

    description = "ML-Leaks adversary 3: threshold on the maximum posterior, set from non-member queries"

    def __init__(self, threshold_source: str = "population", percentile: float = 90.0, n_queries: int = 500,
                 random_state=None):
        self.threshold_source = threshold_source
        self.percentile = percentile
        self.n_queries = n_queries
        self.random_state = random_state
        if threshold_source not in ("noise", "population"):
            raise ValueError("threshold_source must be 'noise' or 'population'")
        if not 0 < percentile < 100:
            raise ValueError("percentile must lie in (0, 100)")

    def fit(self, ctx) -> MLLeaks3:
        if self.threshold_source == "population":
            pop = ctx.plan.population
            if len(pop) == 0:
                raise CyphercatError("attacks.ml_leaks_3", "threshold_source=population needs population records",
                                     "leave records for the population split or use threshold_source: noise")
            x = ctx.dataset.x[pop]
        else:
            if ctx.dataset.modality == "text":
                raise CyphercatError("attacks.ml_leaks_3", "random-noise queries are not defined for text",
                                     "use threshold_source: population")
            lo, hi = ctx.dataset.value_range or (float(ctx.dataset.x.min()), float(ctx.dataset.x.max()))
            shape = (self.n_queries,) + ctx.dataset.input_shape
            x = self._rng().uniform(lo, hi, size=shape).astype(np.float32)
        max_post = np.exp(ctx.target.log_probs(x).max(axis=1))
        self.threshold_ = float(np.percentile(max_post, self.percentile))
        return self

    def score(self, ctx) -> np.ndarray:
        return np.exp(ctx.target_log_probs()[0][: ctx.n_candidates].max(axis=1)).astype(np.float64)
