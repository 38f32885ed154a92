"""Per-sample signals computed from log-probabilities (the hand-off between models and attacks).

Arrays may carry leading model/augmentation axes: ``log_probs[..., sample, class]`` with ``labels[sample]``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def _take(lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    idx = np.broadcast_to(labels[:, None], lp.shape[:-1] + (1,))
    return np.take_along_axis(lp, idx, axis=-1)[..., 0]


def loss(lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy −log p_y."""
    return -_take(lp, labels)


def confidence(lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p_y."""
    return np.exp(_take(lp, labels))


def scaled_logit(lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """φ = log p_y − log(1 − p_y) = z_y − logsumexp_{k≠y} z_k, stable for p_y near 1 (LiRA)."""
    lp = np.asarray(lp, dtype=np.float64)
    others = np.where(np.arange(lp.shape[-1]) == labels[:, None], -np.inf, lp)
    return (_take(lp, labels) - logsumexp(others, axis=-1)).astype(np.float64)


def entropy(lp: np.ndarray) -> np.ndarray:
    """−Σ p_k log p_k."""
    p = np.exp(lp)
    return -(p * lp).sum(axis=-1)


def modified_entropy(lp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal (2021): −(1 − p_y) log p_y − Σ_{k≠y} p_k log(1 − p_k); low for members."""
    lp = np.asarray(lp, dtype=np.float64)
    p = np.exp(lp)
    log1m = np.log1p(-np.minimum(p, 1 - 1e-16))
    is_y = np.arange(lp.shape[-1]) == labels[:, None]
    py, lpy = _take(p, labels), _take(lp, labels)
    others = np.where(is_y, 0.0, p * log1m).sum(axis=-1)
    return -(1 - py) * lpy - others


def top_k_sorted(lp: np.ndarray, k: int = 3) -> np.ndarray:
    """The k largest posteriors, sorted descending (ML-Leaks features; independent of class count).
    Datasets with fewer than k classes are padded with zeros."""
    p = np.exp(lp)
    p = -np.sort(-p, axis=-1)[..., :k]
    if p.shape[-1] < k:
        pad = np.zeros(p.shape[:-1] + (k - p.shape[-1],), p.dtype)
        p = np.concatenate([p, pad], axis=-1)
    return p.astype(np.float32)
