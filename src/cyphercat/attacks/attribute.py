"""Attribute inference on tabular data (Fredrikson et al. 2014; Yeom et al. 2018; ML-Doctor).

The attacker knows a record's other features and its label, can query the deployed model, and wants
one sensitive column. For each candidate value v it completes the record with v, queries the model,
and scores v by how well the model fits the known label, plus log π(v) (Yeom et al.'s loss-based
attack, weighted by the attribute's prior as in Fredrikson et al.'s MAP estimator). The fit is the
scaled logit φ = log p_y − log(1 − p_y), computed stably from log-probabilities, rather than the
loss −log p_y: on training records p_y rounds to 1 for every candidate in float32, every loss is 0
and the attack would fall back to the prior exactly where the model remembers most; ``method="fredrikson"`` instead keeps
the values whose completed record the model labels as it labels the true record (the output the
attacker observes) and takes the most probable of those under the prior.

The prior π comes from population records (what the attacker may know), never from members. The same
attack runs on members and on non-members: what it achieves on non-members is what population
statistics give; the excess on members is what the model remembers about its training records.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from cyphercat.attacks.base import Attack, attack
from cyphercat.errors import CyphercatError
from cyphercat.signals import scaled_logit

METHODS = ("loss", "fredrikson")
MAX_VALUES = 32


def nearest_value(column: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the candidate value closest to each entry of ``column``."""
    return np.abs(np.asarray(column, np.float64)[:, None] - np.asarray(values, np.float64)[None]).argmin(1)


def attribute_prior(column: np.ndarray, values: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """Log of the (Laplace-smoothed) frequency of each candidate value in ``column``."""
    counts = np.bincount(nearest_value(column, values), minlength=len(values)).astype(np.float64) + smoothing
    return np.log(counts / counts.sum())


def infer_attribute(query: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, feature: int,
                    values: np.ndarray, log_prior: np.ndarray, method: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """Guess column ``feature`` of each record of ``x`` (its current content is overwritten, never read).

    ``query`` maps records to log-probabilities (N, C). Returns the index into ``values`` of each guess
    and the (N, V) score matrix (higher = more likely)."""
    if method not in METHODS:
        raise CyphercatError("attacks.attribute.params.method", f"unknown method {method!r}", f"use one of {METHODS}")
    n, values = len(x), np.asarray(values, dtype=np.float64)
    fit = np.empty((n, len(values)))
    labels = np.empty((n, len(values)), dtype=np.int64)
    for j, v in enumerate(values):
        xv = np.array(x, copy=True)
        xv[:, feature] = v
        lp = np.asarray(query(xv), dtype=np.float64)
        fit[:, j] = scaled_logit(lp, y)
        labels[:, j] = lp.argmax(1)
    if method == "loss":
        scores = fit + log_prior[None]
    else:
        observed = np.asarray(query(x), dtype=np.float64).argmax(1)
        consistent = labels == observed[:, None]
        # no value reproduces the observed output: fall back to the prior alone
        consistent[~consistent.any(1)] = True
        scores = np.where(consistent, log_prior[None], -np.inf)
    return scores.argmax(1), scores


def _ci(samples: np.ndarray, confidence: float) -> list[float]:
    q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
    return [float(v) for v in np.percentile(samples, q)]


def summarise(correct_m: np.ndarray, prior_m: np.ndarray, correct_n: np.ndarray, prior_n: np.ndarray,
              bootstrap: int, confidence: float, rng: np.random.Generator) -> dict:
    """Accuracies, gains over the prior-only guess, and the membership advantage, with bootstrap CIs
    (members and non-members resampled independently; the attack and the prior paired per record)."""
    gain_m = correct_m.astype(np.float64) - prior_m
    gain_n = correct_n.astype(np.float64) - prior_n
    out = {"members": {"n": int(len(correct_m)), "accuracy": float(correct_m.mean()),
                       "prior_accuracy": float(prior_m.mean()), "advantage_over_prior": float(gain_m.mean())},
           "nonmembers": {"n": int(len(correct_n)), "accuracy": float(correct_n.mean()),
                          "prior_accuracy": float(prior_n.mean()), "advantage_over_prior": float(gain_n.mean())}}
    out["attribute_advantage"] = float(correct_m.mean() - correct_n.mean())
    out["membership_advantage"] = float(gain_m.mean() - gain_n.mean())
    if bootstrap:
        im = rng.integers(0, len(gain_m), (bootstrap, len(gain_m)))
        in_ = rng.integers(0, len(gain_n), (bootstrap, len(gain_n)))
        acc_m, acc_n = correct_m[im].mean(1), correct_n[in_].mean(1)
        g_m, g_n = gain_m[im].mean(1), gain_n[in_].mean(1)
        out["members"]["accuracy_ci"] = _ci(acc_m, confidence)
        out["members"]["advantage_over_prior_ci"] = _ci(g_m, confidence)
        out["nonmembers"]["accuracy_ci"] = _ci(acc_n, confidence)
        out["nonmembers"]["advantage_over_prior_ci"] = _ci(g_n, confidence)
        out["attribute_advantage_ci"] = _ci(acc_m - acc_n, confidence)
        out["membership_advantage_ci"] = _ci(g_m - g_n, confidence)
    return out


@attack("attribute")
class AttributeInference(Attack):
    """Infer a sensitive tabular column from the other features, the label and the model's output.

    ``feature`` defaults to the dataset's ``extra["sensitive_feature"]`` (``synthetic`` sets it with
    ``sensitive_feature``); ``values`` to ``extra["sensitive_values"]`` or the distinct values of the
    column in population records (at most 32). Reports accuracy on members and non-members next to the
    prior-only guess (the most frequent value in the population) and the label-conditional guess from
    population statistics, with bootstrap CIs from ``spec.metrics``.
    """

    kind = "attribute"
    result_key = "attribute_inference"
    description = "attribute inference (Fredrikson et al. 2014; Yeom et al. 2018) on a sensitive tabular column"
    modalities = ("tabular",)

    def __init__(self, feature: int | None = None, values: list[float] | None = None, method: str = "loss",
                 random_state: int | np.random.Generator | None = None):
        super().__init__(random_state)
        self.feature = feature
        self.values = values
        self.method = method

    def _resolve(self, ds, population: np.ndarray) -> tuple[int, np.ndarray]:
        field = "attacks.attribute.params"
        if ds.modality != "tabular" or ds.x.ndim != 2:
            raise CyphercatError("attacks.attribute", f"attribute inference needs tabular records, but dataset "
                                 f"{ds.name!r} is {ds.modality} with shape {tuple(ds.x.shape[1:])}",
                                 "use a tabular dataset (e.g. synthetic with sensitive_feature)")
        if self.method not in METHODS:
            raise CyphercatError(f"{field}.method", f"unknown method {self.method!r}", f"use one of {METHODS}")
        feature = self.feature if self.feature is not None else ds.extra.get("sensitive_feature")
        if feature is None:
            raise CyphercatError(f"{field}.feature", f"no sensitive column given and dataset {ds.name!r} names none",
                                 "set feature: <column index> (or synthetic's sensitive_feature)")
        n_features = ds.x.shape[1]
        if isinstance(feature, bool) or not isinstance(feature, int | np.integer) or not 0 <= feature < n_features:
            raise CyphercatError(f"{field}.feature", f"column {feature!r} is outside 0..{n_features - 1}",
                                 "give the index of a column of the dataset")
        values = self.values
        if values is None and feature == ds.extra.get("sensitive_feature"):
            values = ds.extra.get("sensitive_values")
        if values is None:
            values = np.unique(ds.x[population, feature])
            if len(values) > MAX_VALUES:
                raise CyphercatError(f"{field}.values", f"column {feature} has {len(values)} distinct values in the "
                                     "population; it looks continuous", "list the candidate values: values: [...]")
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or len(values) < 2 or not np.isfinite(values).all():
            raise CyphercatError(f"{field}.values", f"need at least two finite candidate values, got {values.tolist()}",
                                 "list the values the attribute can take")
        return int(feature), values

    def run(self, ctx) -> dict:
        t0 = time.perf_counter()
        ds, plan = ctx.dataset, ctx.plan
        # population statistics the attacker may know: population records, else the shadow pools
        pop = plan.population if len(plan.population) else np.concatenate([plan.shadow_in, plan.shadow_out])
        if len(pop) == 0:
            raise CyphercatError("splits.population", "attribute inference needs population records for the prior",
                                 "leave some records for the population")
        feature, values = self._resolve(ds, pop)
        log_prior = attribute_prior(ds.x[pop, feature], values)
        pop_truth = nearest_value(ds.x[pop, feature], values)
        # P(v | y) from the population: what the label alone tells about the attribute
        cond = np.ones((ds.num_classes, len(values)))
        np.add.at(cond, (ds.y[pop], pop_truth), 1.0)
        rng = self._rng()
        groups = {}
        for name, idx in (("members", plan.members), ("nonmembers", plan.nonmembers)):
            x, y = ds.x[idx], ds.y[idx]
            truth = nearest_value(x[:, feature], values)
            guess, _ = infer_attribute(ctx.target.log_probs, x, y, feature, values, log_prior, self.method)
            groups[name] = (guess == truth, (truth == log_prior.argmax()).astype(np.float64),
                            (cond[y].argmax(1) == truth).astype(np.float64))
        spec_m = ctx.spec.metrics
        out = {"feature": feature, "values": values.tolist(), "method": self.method,
               "prior": np.exp(log_prior).tolist(), "prior_from": "population" if len(plan.population) else "shadow",
               **summarise(groups["members"][0], groups["members"][1], groups["nonmembers"][0],
                           groups["nonmembers"][1], spec_m.bootstrap, spec_m.confidence, rng)}
        for name in ("members", "nonmembers"):
            out[name]["label_prior_accuracy"] = float(groups[name][2].mean())
        out["runtime_s"] = time.perf_counter() - t0
        return out
