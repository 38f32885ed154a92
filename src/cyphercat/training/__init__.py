"""Training: one model at a time (``trainer``) or many at once (``ensemble``)."""

from cyphercat.training.trainer import predict_logits, resolve_device, train_model

__all__ = ["predict_logits", "resolve_device", "train_model"]
