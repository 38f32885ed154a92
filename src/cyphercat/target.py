"""What an attacker can query: a trained network or a black-box ``predict_proba``, seen through the
deployed output transform (an inference-time defense), always as log-probabilities.

Log-probabilities are valid logits (softmax(log p) = p), so every signal is computed from them
stably; for an undefended network they are ``log_softmax`` of its logits, not logs of clipped
probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cyphercat.training.trainer import predict_logits

# Floor for logs of probabilities that an API rounded to exactly zero (labels-only, top-k, rounding).
LOG_FLOOR = -60.0

OutputTransform = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (probs, x) -> defended probs


def log_softmax_np(logits: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return torch.log_softmax(t, dim=-1).numpy()


def probs_to_log(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.asarray(probs, dtype=np.float64)), LOG_FLOOR).astype(np.float32)


class Model:
    """A queryable model. ``net`` is kept for white-box attacks (inversion); it is None for black boxes."""

    def __init__(self, net: nn.Module | None = None, predict_proba: Callable[[np.ndarray], np.ndarray] | None = None,
                 device: torch.device | str = "cpu", transform: OutputTransform | None = None,
                 info: dict | None = None):
        if (net is None) == (predict_proba is None):
            raise ValueError("give exactly one of net or predict_proba")
        self.net = net
        self._predict_proba = predict_proba
        self.device = device
        self.transform = transform
        self.info = dict(info or {})

    @property
    def white_box(self) -> bool:
        return self.net is not None and self.transform is None

    def with_transform(self, transform: OutputTransform | None, **info) -> Model:
        return Model(self.net, self._predict_proba, self.device, transform, {**self.info, **info})

    def raw_log_probs(self, x: np.ndarray) -> np.ndarray:
        if self.net is not None:
            return log_softmax_np(predict_logits(self.net, x, self.device))
        return probs_to_log(self._predict_proba(x))

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        lp = self.raw_log_probs(x)
        if self.transform is None:
            return lp
        return probs_to_log(self.transform(np.exp(lp.astype(np.float64)), x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.log_probs(x).argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == y).mean()) if len(y) else float("nan")
