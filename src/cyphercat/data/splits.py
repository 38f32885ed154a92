"""Disjoint index sets for an audit, and the paired-halves membership matrix of reference models.

Everything is drawn from one seeded permutation, so the same seed gives the same records in each
role. The candidates an attack is scored on are target members followed by target non-members.
The population (records the attacker may use, e.g. RMIA's reference samples z, and test accuracy) and
the defender's records (what distillation, adversarial regularisation and MemGuard train on) are
disjoint: a population record the defender trained on would be a member of the deployed model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cyphercat.config import SplitSpec
from cyphercat.errors import CyphercatError


@dataclass(frozen=True)
class SplitPlan:
    members: np.ndarray
    nonmembers: np.ndarray
    shadow_in: np.ndarray
    shadow_out: np.ndarray
    validation: np.ndarray
    defender: np.ndarray
    population: np.ndarray

    @property
    def candidates(self) -> np.ndarray:
        return np.concatenate([self.members, self.nonmembers])

    @property
    def is_member(self) -> np.ndarray:
        return np.concatenate([np.ones(len(self.members), bool), np.zeros(len(self.nonmembers), bool)])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("members", "nonmembers", "shadow_in", "shadow_out",
                                               "validation", "defender", "population")}


def plan_splits(n: int, spec: SplitSpec, rng: np.random.Generator, members: np.ndarray | None = None,
                needs_defender: bool = False) -> SplitPlan:
    """``members``: the records a target trained elsewhere used (bring your own target); the other
    roles are drawn from the remaining records. ``needs_defender``: some defense of the run trains on
    the defender's records (sizes ``splits.defender`` when it is left unset)."""
    if members is not None:
        members = np.unique(np.asarray(members, dtype=np.int64))
        if len(members) < 2 or members.min() < 0 or members.max() >= n:
            raise CyphercatError("members", f"member indices must be at least 2 distinct records in 0..{n - 1}",
                                 "give the dataset indices the target was trained on")
        rest = plan_splits(n - len(members), spec.model_copy(update={"target_members": 0}), rng,
                           needs_defender=needs_defender)
        others = np.setdiff1d(np.arange(n), members)
        parts = {k: others[v] for k, v in rest.as_dict().items()}
        parts["members"] = members
        return SplitPlan(**parts)
    sizes = [spec.target_members, spec.target_nonmembers, spec.shadow_members, spec.shadow_nonmembers,
             spec.validation]
    fixed = sum(sizes)
    left = max(n - fixed, 0)
    defender = spec.defender
    if defender is None:
        if not needs_defender:
            defender = 0
        elif spec.population is None:
            defender = left // 2
        else:
            defender = max(left - spec.population, 0)
    population = max(left - defender, 0) if spec.population is None else spec.population
    if fixed + defender + population > n:
        raise CyphercatError(
            "splits", f"asks for {fixed + defender + population} records but the dataset has {n} "
            f"(members {sizes[0]}, non-members {sizes[1]}, shadow {sizes[2]}+{sizes[3]}, validation {sizes[4]}"
            f", defender {defender}, population {population})",
            "shrink the split sizes so they sum to at most the dataset size")
    order = rng.permutation(n)
    # the defender's block sits before the population, so a run without it keeps the same population
    cuts = np.cumsum(sizes + [defender, population])
    parts = np.split(order, cuts[:-1])
    parts[-1] = parts[-1][:population]
    return SplitPlan(*[np.sort(p) for p in parts])


def membership_matrix(n_models: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (models × samples): models 2i and 2i+1 train on complementary random halves, so every
    sample is IN for exactly half of the models (Carlini et al. 2022; ML Privacy Meter)."""
    if n_models % 2:
        raise CyphercatError("reference_models", f"{n_models} is odd but models are trained in complementary pairs",
                             f"use an even number, e.g. {n_models + 1}")
    if n_samples < 4:
        raise CyphercatError("splits", f"a population of {n_samples} records is too small to split into halves",
                             "give the reference models at least 4 records")
    out = np.zeros((n_models, n_samples), dtype=bool)
    half = n_samples // 2
    for i in range(0, n_models, 2):
        perm = rng.permutation(n_samples)
        out[i, perm[:half]] = True
        out[i + 1, perm[half:]] = True
    return out
