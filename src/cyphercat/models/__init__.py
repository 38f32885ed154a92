"""Architectures (a registry)."""

from cyphercat.models.zoo import build_model, check_output, model

__all__ = ["build_model", "check_output", "model"]
