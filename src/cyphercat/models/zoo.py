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


def model(name: str, modalities: tuple[str, ...], description: str, batchable: bool = False,
          framework: str = "torch") -> Callable:
    """Register ``factory(input_shape, num_classes, **params) -> nn.Module``.

    ``batchable`` marks architectures that the ensemble trainer may train many-at-once with ``vmap``
    (no batch norm, no data-dependent control flow). ``framework="sklearn"`` marks factories that
    return an unfitted scikit-learn estimator instead (trained with ``fit``, queried with ``predict_proba``)."""

    def deco(fn: Callable) -> Callable:
        fn.modalities = modalities
        fn.description = description
        fn.batchable = batchable
        fn.framework = framework
        return MODELS.register(name)(fn)

    return deco


def build_model(name: str, params: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                seed: int, field: str = "model") -> Any:
    """Build with parameters initialised from ``seed`` (torch's global RNG is restored afterwards).

    A scikit-learn factory's estimator is returned unfitted with ``random_state`` set from ``seed``
    (when it has one), so it is as reproducible as a torch model."""
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
    if is_sklearn(net):
        if not hasattr(net, "predict_proba"):
            raise CyphercatError(field, f"{name} returned a {type(net).__name__} without predict_proba",
                                 "use an estimator with predict_proba (e.g. wrap it in sklearn.calibration.CalibratedClassifierCV)")
        if "random_state" in net.get_params(deep=False):
            # scikit-learn wants a 32-bit seed; our seed tree hands out 63-bit ones.
            net.set_params(random_state=int(seed) & 0xFFFFFFFF)
        return net
    if not isinstance(net, nn.Module):
        raise CyphercatError(field, f"{name} returned {type(net).__name__}, not an nn.Module",
                             "make the factory return a torch.nn.Module or a scikit-learn estimator")
    return net


def is_sklearn(obj: Any) -> bool:
    """True for a scikit-learn style estimator (``fit`` + ``get_params``) or a factory registered with
    ``framework="sklearn"``; such models are trained with ``fit`` and queried with ``predict_proba``."""
    if getattr(obj, "framework", None) == "sklearn":
        return True
    if isinstance(obj, nn.Module) or isinstance(obj, type):
        return False
    return callable(getattr(obj, "fit", None)) and callable(getattr(obj, "get_params", None))


def check_output(net: nn.Module, x: torch.Tensor, num_classes: int, field: str = "model") -> None:
    """One forward pass on two records to fail early, with a clear message, on shapes that don't fit.

    An unfitted scikit-learn estimator cannot be queried; its input is flattened, so any shape fits."""
    if is_sklearn(net):
        return
    net.eval()
    try:
        with torch.no_grad():
            out = net(x[:2])
    except (RuntimeError, ValueError, IndexError) as err:
        raise CyphercatError(field, f"input of shape {tuple(x.shape[1:])} does not fit the model: {str(err).splitlines()[0]}",
                             "pick an architecture for this modality or reshape the data") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise CyphercatError(field, f"model outputs shape {tuple(out.shape)}, expected (batch, {num_classes})",
                             "make the last layer output one logit per class")
