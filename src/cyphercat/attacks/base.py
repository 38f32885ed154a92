"""The attack contract (scikit-learn manners).

* ``__init__`` only stores hyperparameters (and ``random_state``); learned attributes end in ``_``.
* ``fit(ctx)`` learns what the attack needs (shadow models, thresholds, Gaussians) and returns self.
* ``score(ctx)`` returns one score per candidate in ``ctx.candidates`` (members first, then non-members);
  higher means more likely a member. ``threshold_`` is the attack's own decision threshold, chosen
  without the evaluation membership labels (None if the attack has no natural one).

The context ``ctx`` (:class:`cyphercat.context.AuditContext`) lazily trains and caches what attacks
share: the target, shadow models, the reference-model pool and their signals. An attack never trains
the target itself.

Attacks that answer a different question than membership (``kind`` = "inversion", "attribute")
override :meth:`run` and return a JSON-able dict stored under ``result_key`` in the evaluation.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cyphercat.errors import CyphercatError
from cyphercat.registry import ATTACKS
from cyphercat.seeding import as_generator


@dataclass
class MembershipOutput:
    scores: np.ndarray
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)


class Attack:
    kind: ClassVar[str] = "membership"
    result_key: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    # what the attacker observes: "scores" (posteriors) or "labels" (predicted labels only)
    observes: ClassVar[str] = "scores"
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio", "text", "tabular")
    # models the attack asks the context for ("shadow", "transfer", "reference"), so the pipeline can
    # train them all in one batched call before the attack runs
    needs: ClassVar[frozenset[str]] = frozenset()

    def requires(self) -> frozenset[str]:
        return self.needs

    def check(self, dataset, defenses: list) -> None:
        """Fail before anything is trained when the attack cannot run in this setting (``defenses``:
        the :class:`~cyphercat.defenses.base.Defense` objects of every evaluation). Default: accept."""

    def __init__(self, random_state: int | np.random.Generator | None = None):
        self.random_state = random_state

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names() if p != "random_state"}

    def _rng(self) -> np.random.Generator:
        return as_generator(self.random_state)

    def fit(self, ctx) -> Attack:
        return self

    def score(self, ctx) -> np.ndarray:
        raise NotImplementedError

    def run(self, ctx) -> MembershipOutput | dict[str, Any]:
        self.fit(ctx)
        scores = np.asarray(self.score(ctx), dtype=np.float64)
        return MembershipOutput(scores, getattr(self, "threshold_", None), getattr(self, "details_", {}))


def attack(name: str):
    return ATTACKS.register(name)


def make_attack(name: str, params: dict[str, Any], random_state: int | None, field: str = "attacks") -> Attack:
    cls = ATTACKS.get(name, f"{field}.name")
    names = cls.param_names()
    unknown = [k for k in params if k not in names or k == "random_state"]
    if unknown:
        raise CyphercatError(f"{field}.params", f"attack {name} has no parameter {unknown[0]!r}",
                             f"use one of: {', '.join(n for n in names if n != 'random_state') or '(none)'}")
    try:
        return cls(**params, random_state=random_state)
    except (TypeError, ValueError) as err:
        if isinstance(err, CyphercatError):
            raise
        raise CyphercatError(f"{field}.params", f"attack {name}: {err}", "fix the parameter value") from None
