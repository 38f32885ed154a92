"""Training: one model at a time (``trainer``) or many at once (``ensemble``)."""

from cyphercat.training.ensemble import can_batch, train_ensemble
from cyphercat.training.trainer import predict_logits, resolve_device, train_model

__all__ = ["can_batch", "predict_logits", "resolve_device", "train_ensemble", "train_model"]
