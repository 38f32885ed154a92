"""Label-only attacks (Choquette-Choo et al., ICML 2021): the attacker sees predicted labels only.

``label_only``: query the label of k augmented copies of each record (1-pixel shifts and flips for
images, seeded Gaussian noise of growing scale for other features); the vector "correct under each
augmentation" is the feature of a logistic-regression attack model trained on the shadow model's
members and non-members. Members sit further from the decision boundary, so their labels survive
more perturbations. ``gap``: member iff the prediction is correct (the baseline every label-only
attack must beat).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from cyphercat.attacks.base import Attack, attack
from cyphercat.augment import augmentations
from cyphercat.errors import CyphercatError


def _correct_under(model, x: np.ndarray, y: np.ndarray, modality: str, k: int, noise: float, seed: int) -> np.ndarray:
    if modality == "image" and x.ndim >= 3:
        queries = augmentations(x, modality, k, seed=seed)
    else:
        # growing noise scales probe the distance to the boundary, as the paper's noise attack does
        rng = np.random.default_rng(seed)
        spread = x.std(axis=0, keepdims=True) + 1e-8
        scales = np.linspace(0, noise, k)
        queries = [(x + s * spread * rng.standard_normal(x.shape)).astype(x.dtype) for s in scales]
    return np.stack([model.predict(q) == y for q in queries], axis=1).astype(np.float64)


@attack("label_only")
class LabelOnly(Attack):
    description = "label-only data-augmentation attack: label robustness under augmentations (Choquette-Choo 2021)"
    observes = "labels"
    modalities = ("image", "audio", "tabular")
    needs = frozenset({"shadow"})

    def __init__(self, augmentations: int = 10, noise: float = 1.0, random_state=None):
        self.augmentations = augmentations
        self.noise = noise
        self.random_state = random_state
        if augmentations < 2:
            raise ValueError("augmentations must be at least 2")

    def fit(self, ctx) -> LabelOnly:
        if ctx.dataset.modality == "text":
            raise CyphercatError("attacks.label_only", "augmentations are not defined for text data",
                                 "use the gap attack for text targets")
        self.seed_ = int(self._rng().integers(2**31))
        sh = ctx.shadow
        idx = np.concatenate([sh.in_idx, sh.out_idx])
        feats = _correct_under(sh.model, sh.dataset.x[idx], sh.dataset.y[idx], ctx.dataset.modality,
                               self.augmentations, self.noise, self.seed_)
        labels = np.r_[np.ones(len(sh.in_idx)), np.zeros(len(sh.out_idx))]
        self.clf_ = LogisticRegression(C=1.0, max_iter=1000).fit(feats, labels)
        self.threshold_ = 0.0
        return self

    def score(self, ctx) -> np.ndarray:
        x, y = ctx.dataset.x[ctx.candidates], ctx.dataset.y[ctx.candidates]
        feats = _correct_under(ctx.target, x, y, ctx.dataset.modality, self.augmentations, self.noise, self.seed_)
        # decision_function is the log-odds, so the natural threshold is 0; add the raw count as a
        # tiny tie-breaker so records with equal patterns but more correct labels rank higher.
        return self.clf_.decision_function(feats) + 1e-6 * feats.sum(axis=1)


@attack("gap")
class Gap(Attack):
    description = "gap attack: member iff the target's prediction is correct (Yeom et al. 2018)"
    observes = "labels"

    def score(self, ctx) -> np.ndarray:
        self.threshold_ = 0.5
        x, y = ctx.dataset.x[ctx.candidates], ctx.dataset.y[ctx.candidates]
        return (ctx.target.predict(x) == y).astype(np.float64)
