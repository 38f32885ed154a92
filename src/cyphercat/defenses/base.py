"""The defense contract.

A *training* defense changes how a model is trained: ``train(net, x, y, training, seed, device, aux)``
returns the trained module (and may record facts such as ε in ``info_``). An *inference* defense
changes what the deployed model reveals: ``wrap(model, aux, seed)`` returns the model seen through an
output transform. The pipeline applies the defense to the target and, for an adaptive attacker
(``attacker_knows_defense: true``), to the attacker's shadow and reference models too.

A list of values for a parameter in the spec is a sweep: each combination is one evaluation.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from cyphercat.config import DefenseSpec, TrainingSpec
from cyphercat.errors import CyphercatError
from cyphercat.registry import DEFENSES


@dataclass
class DefenseData:
    """What a defender holds besides the training set: non-member reference records (distillation,
    adversarial regularisation, MemGuard), a validation split (early stopping), and a way to build a
    fresh model of the same architecture. For the target these are the audit's defender split; an
    adaptive attacker imitating the defense on its own models uses the population split instead."""

    reference_x: np.ndarray
    reference_y: np.ndarray
    validation_x: np.ndarray
    validation_y: np.ndarray
    build: Any  # Callable[[int], nn.Module]
    num_classes: int
    modality: str
    value_range: tuple[float, float] | None = None
    training: TrainingSpec | None = None  # the target's training recipe (MemGuard's defender shadow model)


class Defense:
    stage: ClassVar[str] = "training"  # or "inference"
    description: ClassVar[str] = ""
    uses_reference: ClassVar[bool] = False  # trains on DefenseData.reference_x: the run needs a defender split

    @classmethod
    def param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names()}

    def info(self) -> dict[str, Any]:
        """Facts measured while applying the defense (e.g. ``{"epsilon": 0.98, "delta": 1e-3}``)."""
        return dict(getattr(self, "info_", {}))

    def check(self, aux: DefenseData) -> None:
        """Fail fast, before anything is trained, when the defense cannot apply to this setting
        (raise :class:`CyphercatError` naming the defense). The default accepts everything."""

    def train(self, net: nn.Module, x: np.ndarray, y: np.ndarray, training: TrainingSpec, seed: int,
              device, aux: DefenseData) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} is not a training-time defense")

    def wrap(self, model, aux: DefenseData, seed: int):
        raise NotImplementedError(f"{type(self).__name__} is not an inference-time defense")


def defense(name: str):
    return DEFENSES.register(name)


def make_defense(name: str, params: dict[str, Any], field: str = "defenses") -> Defense:
    cls = DEFENSES.get(name, f"{field}.name")
    names = cls.param_names()
    unknown = [k for k in params if k not in names]
    if unknown:
        raise CyphercatError(f"{field}.params", f"defense {name} has no parameter {unknown[0]!r}",
                             f"use one of: {', '.join(names) or '(none)'}")
    try:
        return cls(**params)
    except CyphercatError:
        raise
    except (TypeError, ValueError) as err:
        raise CyphercatError(f"{field}.params", f"defense {name}: {err}", "fix the parameter value") from None


def expand_sweeps(specs: tuple[DefenseSpec, ...]) -> list[DefenseSpec]:
    """``dp_sgd: {epsilon: [1, 4, 8]}`` -> three specs; several list-valued params -> their product."""
    out = []
    for spec in specs:
        keys = sorted(spec.params)
        values = [spec.params[k] if isinstance(spec.params[k], list) else [spec.params[k]] for k in keys]
        for k in keys:
            if isinstance(spec.params[k], list) and not spec.params[k]:
                raise CyphercatError(f"defenses.{spec.name}.{k}", "an empty list sweeps nothing",
                                     "give at least one value")
        for combo in itertools.product(*values):
            out.append(DefenseSpec(name=spec.name, params=dict(zip(keys, combo, strict=True))))
    return out


def evaluation_id(spec: DefenseSpec | None) -> str:
    if spec is None:
        return "none"
    if not spec.params:
        return spec.name
    return spec.name + "-" + ",".join(f"{k}={spec.params[k]}" for k in sorted(spec.params))
