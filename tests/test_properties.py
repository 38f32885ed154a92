"""Property-based tests (hypothesis): the spec parser and the metrics.

A spec, valid or not, must give an :class:`AuditSpec` or one clear :class:`CyphercatError` — never a
traceback. Metrics must respect what ROC analysis guarantees whatever the scores are.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cyphercat.cli import main
from cyphercat.config import EXECUTION_FIELDS, AuditSpec, load_spec, spec_from_dict
from cyphercat.errors import CyphercatError
from cyphercat.metrics import auc, evaluate, roc_curve, tpr_at_fpr
from cyphercat.registry import ATTACKS, DATASETS, DEFENSES, MODELS

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- the spec parser -------------------------------------------------------------------------------
small_int = st.integers(min_value=1, max_value=500)
training = st.fixed_dictionaries({}, optional={
    "optimizer": st.sampled_from(["adam", "adamw", "sgd"]), "lr": st.floats(1e-5, 1.0),
    "epochs": small_int, "batch_size": small_int, "weight_decay": st.floats(0, 0.1),
    "momentum": st.floats(0, 0.99)})
valid_specs = st.fixed_dictionaries({}, optional={
    "seed": st.integers(0, 2**63 - 1),
    "dataset": st.sampled_from(["digits", "synthetic"]),
    "reference_models": st.integers(0, 256),
    "splits": st.fixed_dictionaries({}, optional={"target_members": st.integers(2, 1000),
                                                  "target_nonmembers": st.integers(2, 1000),
                                                  "shadow_members": st.integers(0, 1000)}),
    "target": st.fixed_dictionaries({"model": st.sampled_from(["mlp", "logreg", "cnn"]), "training": training}),
    "attacks": st.lists(st.sampled_from(["loss", "confidence", "entropy", "lira_online", "rmia_online"]),
                        unique=True, max_size=4),
    "backend": st.sampled_from(["serial", "process", "ray"]),
    "workers": st.integers(1, 64),
    "cache": st.fixed_dictionaries({}, optional={"enabled": st.booleans(), "dir": st.text(min_size=1, max_size=20)}),
    "metrics": st.fixed_dictionaries({}, optional={"bootstrap": st.integers(0, 10000),
                                                   "confidence": st.floats(0.5, 0.99)}),
})


@FAST
@given(valid_specs)
def test_valid_specs_parse_and_round_trip(data):
    spec = spec_from_dict(data)
    again = spec_from_dict(spec.canonical())
    assert again == spec and again.hash() == spec.hash()
    assert len(spec.hash()) == 16 and all(c in "0123456789abcdef" for c in spec.hash())


@FAST
@given(valid_specs, st.sampled_from(["serial", "process", "ray"]), st.integers(1, 8),
       st.sampled_from([None, "auto", "10.0.0.1:6379"]), st.booleans())
def test_execution_settings_never_change_the_hash(data, backend, workers, address, cache_on):
    base = spec_from_dict(data)
    moved = spec_from_dict({**data, "backend": backend, "workers": workers, "ray_address": address,
                            "cache": {"enabled": cache_on, "dir": "/shared/cache"}})
    assert moved.hash() == base.hash() and moved.recorded() == base.recorded()
    assert not set(EXECUTION_FIELDS) & set(base.recorded())


@FAST
@given(valid_specs, st.integers(0, 2**62))
def test_the_hash_sees_what_changes_results(data, seed):
    spec = spec_from_dict(data)
    assume(seed != spec.seed)
    assert spec_from_dict({**data, "seed": seed}).hash() != spec.hash()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
FIELDS = list(AuditSpec.model_fields) + ["nonsense", "splits.target_members", "target.training.epochs",
                                         "target.model.params", "attacks.0", "defenses.0.params"]


def parse_or_explain(data) -> None:
    try:
        assert isinstance(spec_from_dict(data), AuditSpec)
    except CyphercatError as err:
        line = str(err)
        assert "\n" not in line and ": " in line and err.field and err.problem


def put(data: dict, dotted: str, value) -> dict:
    out = dict(data)
    head, _, rest = dotted.partition(".")
    if not rest:
        out[head] = value
    else:
        inner = out.get(head)
        out[head] = put(inner if isinstance(inner, dict) else {}, rest, value)
    return out


@settings(max_examples=150, deadline=None)
@given(valid_specs, st.sampled_from(FIELDS), json_values)
def test_fuzzed_fields_give_a_spec_or_one_clear_error(data, field, value):
    parse_or_explain(put(data, field, value))


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_document_gives_a_spec_or_one_clear_error(value):
    parse_or_explain(value)


NAMES = {"dataset": DATASETS, "target.model": MODELS, "attacks.0": ATTACKS, "defenses.0": DEFENSES}


@FAST
@given(st.sampled_from(sorted(NAMES)), st.text(min_size=1, max_size=15))
def test_unknown_registry_names_are_named(field, name):
    assume(name not in NAMES[field] and ":" not in name)
    value = [name] if field.endswith(".0") else name
    key = field.removesuffix(".0")
    with pytest.raises(CyphercatError, match="unknown"):
        spec_from_dict(put({}, key, value) if "." in key else {key: value})


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_fuzzed_yaml_text_never_tracebacks(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except CyphercatError as err:
        assert "\n" not in str(err)


@settings(max_examples=25, deadline=None)
@given(valid_specs, st.sampled_from(FIELDS), json_values)
def test_cli_validate_exits_0_or_2_with_one_line(tmp_path_factory, data, field, value):
    path = tmp_path_factory.mktemp("cli") / "spec.yaml"
    path.write_text(yaml.safe_dump(put(data, field, value)), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["validate", str(path)])
    assert rc in (0, 2)
    if rc == 2:
        assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("error: ")


# ---- metrics ---------------------------------------------------------------------------------------
def scored(min_size: int = 2):
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    return st.lists(st.tuples(finite, st.booleans()), min_size=min_size, max_size=80).filter(
        lambda rows: any(lab for _, lab in rows) and not all(lab for _, lab in rows)).map(
        lambda rows: (np.array([s for s, _ in rows]), np.array([lab for _, lab in rows])))


@settings(max_examples=200, deadline=None)
@given(scored())
def test_auc_is_a_probability_and_flips_with_the_sign(sl):
    scores, labels = sl
    a = auc(scores, labels)
    assert 0.0 <= a <= 1.0
    assert math.isclose(auc(-scores, labels), 1.0 - a, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(scored())
def test_roc_is_monotone_and_tpr_never_decreases_with_fpr(sl):
    scores, labels = sl
    fpr, tpr, thr = roc_curve(scores, labels)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    targets = np.linspace(0, 1, 11)
    tprs = [tpr_at_fpr(fpr, tpr, t) for t in targets]
    assert all(b >= a for a, b in zip(tprs, tprs[1:], strict=False))


@settings(max_examples=150, deadline=None)
@given(scored(), st.integers(-20, 20), st.floats(-1e3, 1e3))
def test_metrics_are_invariant_to_score_scaling(sl, power, shift):
    """Only the order of the scores matters: scaling by a power of two (exact) and shifting by an integer
    amount after rounding to a coarse grid (no new ties) change nothing."""
    scores, labels = np.round(sl[0]), sl[1]
    moved = scores * 2.0**power + round(shift)
    assume(np.array_equal(np.argsort(scores, kind="stable"), np.argsort(moved, kind="stable")))
    assume(len(np.unique(moved)) == len(np.unique(scores)))
    assert auc(moved, labels) == auc(scores, labels)
    m1 = evaluate(scores, labels, None, bootstrap=0)
    m2 = evaluate(moved, labels, None, bootstrap=0)
    assert m1.tpr_at_fpr == m2.tpr_at_fpr and m1.advantage == m2.advantage and m1.auc == m2.auc


@settings(max_examples=60, deadline=None)
@given(scored(min_size=6), st.integers(0, 2**32))
def test_bootstrap_intervals_are_ordered_and_in_range(sl, seed):
    scores, labels = sl
    m = evaluate(scores, labels, float(np.median(scores)), bootstrap=20, rng=np.random.default_rng(seed))
    lo, hi = m.auc_ci
    assert 0 <= lo <= hi <= 1
    assert 0 <= m.precision <= 1 and 0 <= m.recall <= 1 and m.epsilon_lower_bound >= 0
    for t, v in m.tpr_at_fpr.items():
        assert 0 <= v <= 1 and m.tpr_at_fpr_ci[t][0] <= m.tpr_at_fpr_ci[t][1]
