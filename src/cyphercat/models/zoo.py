"""Architecture registry: ``build_model(spec, input_shape, num_classes) -> nn.Module``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cyphercat.errors import CyphercatError
from cyphercat.registry import MODELS
from cyphercat.seeding import torch_rng


def model(name: str, modalities: tuple[str, ...], description: str, batchable: bool = False) -> Callable:
    """Register ``factory(input_shape, num_classes, **params) -> nn.Module``.

    ``batchable`` marks architectures that the ensemble trainer may train many-at-once with ``vmap``
    (no batch norm, no data-dependent control flow)."""

    def deco(fn: Callable) -> Callable:
        fn.modalities = modalities
        fn.description = description
        fn.batchable = batchable
        return MODELS.register(name)(fn)

    return deco


def build_model(name: str, params: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                seed: int, field: str = "model") -> nn.Module:
    """Build with parameters initialised from ``seed`` (torch's global RNG is restored afterwards)."""
    factory = MODELS.get(name, f"{field}.name")
    accepted = inspect.signature(factory).parameters
    unknown = [k for k in params if k not in accepted]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise CyphercatError(f"{field}.params", f"{name} has no parameter {unknown[0]!r}",
                             f"use one of: {', '.join(k for k in accepted if k not in ('input_shape', 'num_classes'))}")
    with torch_rng(seed):
        try:
            net = factory(tuple(input_shape), int(num_classes), **params)
        except CyphercatError:
            raise
        except (ValueError, RuntimeError, TypeError) as err:
            raise CyphercatError(field, f"{name} cannot be built for input {tuple(input_shape)} "
                                 f"and {num_classes} classes: {err}", "pick an architecture that fits the data") from None
    if not isinstance(net, nn.Module):
        raise CyphercatError(field, f"{name} returned {type(net).__name__}, not an nn.Module",
                             "make the factory return a torch.nn.Module")
    return net


def check_output(net: nn.Module, x: torch.Tensor, num_classes: int, field: str = "model") -> None:
    """One forward pass on two records to fail early, with a clear message, on shapes that don't fit."""
    net.eval()
    try:
        with torch.no_grad():
            out = net(x[:2])
    except RuntimeError as err:
        raise CyphercatError(field, f"input of shape {tuple(x.shape[1:])} does not fit the model: {str(err).splitlines()[0]}",
                             "pick an architecture for this modality or reshape the data") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise CyphercatError(field, f"model outputs shape {tuple(out.shape)}, expected (batch, {num_classes})",
                             "make the last layer output one logit per class")
