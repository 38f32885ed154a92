"""Shared machinery of reference-model attacks (LiRA, RMIA): signals of the pool, and a decision
threshold calibrated by playing one reference model as the target (its membership row is known to
the attacker), so no threshold ever sees the evaluation labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cyphercat.context import ReferencePool
from cyphercat.errors import CyphercatError
from cyphercat.metrics import best_threshold


def require_models(pool_size: int, online: bool, name: str) -> None:
    need = 2 if online else 1
    if pool_size < need:
        raise CyphercatError("reference_models", f"{name} needs at least {need} reference models, got {pool_size}",
                             f"set reference_models (or --reference-models) to {max(need, 2)} or more")


def leave_one_out(pool: ReferencePool, held_out: int = 0) -> tuple[ReferencePool, np.ndarray, np.ndarray]:
    """(pool without model ``held_out``, that model's log-probs, its membership row over candidates)."""
    keep = np.arange(len(pool.membership)) != held_out
    rest = ReferencePool(pool.membership[keep], pool.log_probs[keep], pool.query_idx, pool.n_candidates)
    return rest, pool.log_probs[held_out], pool.membership[held_out]


def calibrated_threshold(pool: ReferencePool, score_fn: Callable[[ReferencePool, np.ndarray], np.ndarray],
                         ) -> float | None:
    """Best threshold for ``score_fn`` when reference model 0 plays the target."""
    if len(pool.membership) < 3:
        return None
    rest, lp, member = leave_one_out(pool, 0)
    scores = score_fn(rest, lp)
    scores = np.where(np.isfinite(scores), scores, np.sign(scores) * 1e300)
    return best_threshold(scores, member)
