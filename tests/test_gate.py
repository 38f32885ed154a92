"""The ``--fail-if`` gate: parsing, metric paths (dotted keys, ``best``, ``EVAL_ID:``), pass and fail."""

from __future__ import annotations

import math

import pytest

from cyphercat.errors import CyphercatError
from cyphercat.gate import Condition, check, parse_condition, parse_conditions, resolve


def _attack(name, auc, t001, t01):
    return {"name": name, "kind": "membership", "auc": auc, "auc_ci": [auc - 0.03, auc + 0.03],
            "tpr_at_fpr": {"0.001": t001, "0.01": t01, "0.1": 0.3},
            "tpr_at_fpr_ci": {"0.001": [0.0, t001 + 0.01], "0.01": [0.0, t01 + 0.02], "0.1": [0.2, 0.4]},
            "advantage": 0.2, "precision": 0.6, "recall": 0.7}


RESULTS = {
    "evaluations": [
        {"id": "none", "defense": {"name": "none", "params": {}},
         "target": {"train_accuracy": 1.0, "test_accuracy": 0.93},
         "attacks": [_attack("loss", 0.61, 0.0, 0.02), _attack("lira_online", 0.70, 0.083, 0.12),
                     {"name": "mi_face", "kind": "inversion"}],
         "inversion": {"average": {"mse": 0.04}}},
        {"id": "dp_sgd-epsilon=1", "defense": {"name": "dp_sgd", "params": {"epsilon": 1}},
         "target": {"train_accuracy": 0.9, "test_accuracy": 0.85},
         "attacks": [_attack("loss", 0.52, 0.0, 0.011), _attack("lira_online", 0.51, 0.001, 0.009)]},
    ]
}


def test_parse_reads_prefix_path_operator_and_number():
    c = parse_condition("dp_sgd-epsilon=1:loss.auc >= 0.6")
    assert c == Condition("dp_sgd-epsilon=1:loss.auc >= 0.6", "dp_sgd-epsilon=1", "loss.auc", ">=", 0.6)
    c = parse_condition("lira_online.tpr_at_fpr.0.001>5e-2")
    assert (c.evaluation, c.path, c.op, c.value) == (None, "lira_online.tpr_at_fpr.0.001", ">", 0.05)
    assert [x.op for x in parse_conditions(["a.b < 1", "a.b <= 1", "a.b == 1", "a.b != 1"])] == ["<", "<=", "==", "!="]
    assert parse_conditions(None) == []


@pytest.mark.parametrize("text, problem", [
    ("", "empty condition"),
    ("loss.auc", "no comparison operator"),
    ("loss.auc > 0.5 > 0.2", "more than one comparison operator"),
    ("loss.auc > high", "is not a number"),
    ("loss.auc > 5%", "is not a number"),
    ("loss.auc > nan", "must be finite"),
    ("> 0.5", "is not a metric path"),
    ("loss auc > 0.5", "is not a metric path"),
    (":loss.auc > 0.5", "empty evaluation id"),
    ("loss.auc => 0.5", "uses '=', '=>' or '=<'"),
    ("loss.auc = 0.5", "uses '=', '=>' or '=<'"),
])
def test_malformed_conditions_are_clear_errors(text, problem):
    with pytest.raises(CyphercatError) as err:
        parse_condition(text)
    assert err.value.field == "--fail-if"
    assert problem in str(err.value)
    assert "\n" not in str(err.value)


def test_paths_resolve_with_dotted_keys_best_target_and_prefix():
    def get(text):
        return resolve(RESULTS, parse_condition(text + " > 0"))

    assert get("lira_online.tpr_at_fpr.0.001") == 0.083
    assert get("loss.tpr_at_fpr.0.01") == 0.02  # "0.01" is not confused with "0.001" or "0.1"
    assert get("best.auc") == 0.70  # strongest = highest TPR at 1% FPR
    assert get("target.test_accuracy") == 0.93
    assert get("lira_online.auc_ci.0") == pytest.approx(0.67)
    assert get("inversion.average.mse") == 0.04
    assert get("dp_sgd-epsilon=1:target.test_accuracy") == 0.85
    assert get("dp_sgd-epsilon=1:best.auc") == 0.52  # loss is stronger there


def test_gate_passes_and_fails_with_actual_values():
    assert check(RESULTS, parse_conditions(["lira_online.tpr_at_fpr.0.001 > 0.1", "loss.auc > 0.65"])) == []
    failures = check(RESULTS, parse_conditions(["lira_online.tpr_at_fpr.0.001 > 0.05", "loss.auc > 0.65",
                                                "dp_sgd-epsilon=1:best.auc >= 0.52"]))
    assert failures == ["lira_online.tpr_at_fpr.0.001 > 0.05 (actual 0.083)",
                        "dp_sgd-epsilon=1:best.auc >= 0.52 (actual 0.52)"]


def test_nan_metric_fails_the_gate():
    results = {"evaluations": [{"id": "none", "attacks": [_attack("loss", math.nan, 0.0, 0.0)]}]}
    failures = check(results, parse_conditions(["loss.auc > 0.9"]))
    assert len(failures) == 1 and "NaN" in failures[0]


@pytest.mark.parametrize("text, problem, listing", [
    ("lira_offline.auc > 0.5", "no attack or section 'lira_offline'", "lira_online"),
    ("loss.aucc > 0.5", "no metric 'aucc' in loss", "auc_ci"),
    ("loss.tpr_at_fpr.0.05 > 0.5", "no metric '0' in loss.tpr_at_fpr", "0.001, 0.01, 0.1"),
    ("loss.auc.x > 0.5", "loss.auc is a number", "end the path at loss.auc"),
    ("loss.tpr_at_fpr > 0.5", "is dict, not a number", "point the path at a number"),
    ("loss.auc_ci > 0.5", "is list, not a number", "auc_ci.0"),
    ("dp_sgd:loss.auc > 0.5", "no evaluation 'dp_sgd'", "dp_sgd-epsilon=1"),
])
def test_unknown_paths_list_what_exists(text, problem, listing):
    with pytest.raises(CyphercatError) as err:
        check(RESULTS, parse_conditions([text]))
    assert err.value.field == "--fail-if"
    assert problem in str(err.value) and listing in str(err.value)
