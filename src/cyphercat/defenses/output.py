"""Inference-time defenses that change what the deployed model's API returns: top-k, rounding,
labels only, additive noise. Each wraps the model with an output transform ``(probs, x) -> probs``;
the predicted label is kept by all of them except ``output_noise`` without ``keep_label``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cyphercat.defenses.base import Defense, defense


def row_generators(x: np.ndarray, seed: int) -> list[np.random.Generator]:
    """One generator per query, seeded by (seed, the query's bytes): asking the same question twice gets
    the same answer (a cached API), so averaging repeated queries does not remove the noise, and runs
    are reproducible whatever the batching."""
    rows = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1))
    return [np.random.default_rng([int(seed) & 0xFFFFFFFF,
                                   int.from_bytes(hashlib.sha256(r.tobytes()).digest()[:8], "little")])
            for r in rows]


def one_hot_argmax(probs: np.ndarray) -> np.ndarray:
    out = np.zeros_like(probs)
    out[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return out


@defense("top_k")
class TopK(Defense):
    description = "return only the k largest posteriors, renormalised (break_posterior: fixed rank values 1/r)"
    stage = "inference"

    def __init__(self, k: int = 3, break_posterior: bool = False):
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.break_posterior = break_posterior

    def transform(self, probs: np.ndarray, x=None) -> np.ndarray:
        k = min(self.k, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        out = np.zeros_like(probs)
        rows = np.arange(len(probs))[:, None]
        # the original Cyphercat's break_posterior: rank r gets 1/r whatever the model said
        out[rows, top] = 1.0 / np.arange(1, k + 1) if self.break_posterior else probs[rows, top]
        return out / out.sum(axis=1, keepdims=True)

    def wrap(self, model, aux, seed):
        return model.with_transform(self.transform)


@defense("rounding")
class Rounding(Defense):
    description = "round every posterior to `decimals` decimals (the predicted label is kept)"
    stage = "inference"

    def __init__(self, decimals: int = 1):
        if decimals < 0:
            raise ValueError("decimals must be >= 0")
        self.decimals = decimals

    def transform(self, probs: np.ndarray, x=None) -> np.ndarray:
        out = np.round(probs, self.decimals)
        label = probs.argmax(axis=1)
        rows = np.arange(len(probs))
        # an API rounds the scores but reports the model's label; a tiny nudge keeps argmax on it when
        # rounding makes a tie or zeroes everything
        out[rows, label] = np.maximum(out[rows, label], 10.0 ** -self.decimals) + 1e-9
        return out

    def wrap(self, model, aux, seed):
        return model.with_transform(self.transform)


@defense("labels_only")
class LabelsOnly(Defense):
    description = "return the predicted label only (a one-hot vector)"
    stage = "inference"

    def transform(self, probs: np.ndarray, x=None) -> np.ndarray:
        return one_hot_argmax(probs)

    def wrap(self, model, aux, seed):
        return model.with_transform(self.transform)


@defense("output_noise")
class OutputNoise(Defense):
    description = "add Laplace or Gaussian noise of `scale` to the posteriors, clip at 0 and renormalise"
    stage = "inference"

    def __init__(self, scale: float = 0.1, distribution: str = "laplace", keep_label: bool = False):
        if scale <= 0:
            raise ValueError("scale must be > 0")
        if distribution not in ("laplace", "gaussian"):
            raise ValueError("distribution must be 'laplace' or 'gaussian'")
        self.scale = scale
        self.distribution = distribution
        self.keep_label = keep_label

    def transform_with(self, seed: int):
        def transform(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
            gens = row_generators(x, seed)
            k = probs.shape[1]
            draw = (lambda g: g.laplace(0, self.scale, k)) if self.distribution == "laplace" \
                else (lambda g: g.normal(0, self.scale, k))
            noisy = np.clip(probs + np.stack([draw(g) for g in gens]), 1e-12, None)
            if self.keep_label:  # swap so the model's label stays on top
                rows = np.arange(len(probs))
                label, top = probs.argmax(axis=1), noisy.argmax(axis=1)
                a, b = noisy[rows, label].copy(), noisy[rows, top].copy()
                noisy[rows, label], noisy[rows, top] = b, a
            return noisy / noisy.sum(axis=1, keepdims=True)

        return transform

    def wrap(self, model, aux, seed):
        return model.with_transform(self.transform_with(seed))
