"""The ``--fail-if`` gate: parsing, metric paths (dotted keys, ``best``, ``EVAL_ID:``), pass and fail."""

from __future__ import annotations

import math
from pathlib import Path

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


# --- through the CLI ---------------------------------------------------------------------------------------
# Fast tests stand a fabricated audit in for the pipeline (the gate and the exit codes are what is tested);
# one slow test runs a real tiny audit end to end.


class _FakeAudit:
    def __init__(self, results, scores):
        self.results, self.scores = results, scores

    def to_dict(self):
        return self.results


@pytest.fixture
def fake_pipeline(monkeypatch):
    import json

    from cyphercat import pipeline
    from cyphercat.reports import write_all
    from test_reports import fabricate

    results, scores = fabricate(defenses=False)
    calls = []

    def run_audit(spec, out_dir=None, **kw):
        calls.append(out_dir)
        out = Path(out_dir)
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps(results))
        write_all(out, results, scores)
        return _FakeAudit(results, scores)

    monkeypatch.setattr(pipeline, "run_audit", run_audit)
    return calls


def _cli(out: Path, *conditions: str) -> int:
    from cyphercat.cli import main

    argv = ["audit", "--out", str(out), "--quiet"]
    for c in conditions:
        argv += ["--fail-if", c]
    return main(argv)


def test_cli_gate_fail_exits_3_after_writing_outputs(fake_pipeline, tmp_path, capsys):
    # The fabricated run's lira_online finds ~10% of members at 0.1% FPR (30 planted outliers of 300).
    assert _cli(tmp_path / "out", "lira_online.tpr_at_fpr.0.001 > 0.05", "target.test_accuracy < 0.5") == 3
    err = capsys.readouterr().err
    assert "lira_online.tpr_at_fpr.0.001 > 0.05 (actual 0.1" in err and "test_accuracy" not in err
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "summary.md").is_file()


def test_cli_gate_pass_exits_0(fake_pipeline, tmp_path, capsys):
    assert _cli(tmp_path / "out", "lira_online.tpr_at_fpr.0.001 > 0.5", "best.auc < 0.5") == 0
    assert "fail-if" not in capsys.readouterr().err


def test_cli_malformed_condition_exits_2_before_the_audit(fake_pipeline, tmp_path, capsys):
    assert _cli(tmp_path / "out", "loss.auc > 0.5", "loss.auc >> 0.5") == 2
    err = capsys.readouterr().err
    assert "--fail-if" in err and "comparison operator" in err and len(err.strip().splitlines()) == 1
    assert fake_pipeline == []  # nothing was trained


def test_cli_unknown_metric_exits_2_listing_attacks(fake_pipeline, tmp_path, capsys):
    assert _cli(tmp_path / "out", "lira_offline.auc > 0.5") == 2
    err = capsys.readouterr().err
    assert "no attack or section 'lira_offline'" in err and "lira_online" in err


SPEC = """
seed: 0
splits: {target_members: 150, target_nonmembers: 150, shadow_members: 150, shadow_nonmembers: 150}
target: {model: {name: mlp, params: {hidden: [128]}}, training: {epochs: 40, batch_size: 64, lr: 0.003}}
attacks: [loss, confidence]
reference_models: 0
metrics: {bootstrap: 50}
"""


@pytest.mark.slow
def test_cli_gate_on_a_real_audit(tmp_path, capsys):
    from cyphercat.cli import main

    (tmp_path / "spec.yaml").write_text(SPEC)
    base = ["audit", str(tmp_path / "spec.yaml"), "--quiet", "--cache-dir", str(tmp_path / "cache")]
    # An MLP trained to 100% on 150 digits leaks: the loss attack's AUC is well above 0.55.
    assert main([*base, "--out", str(tmp_path / "fail"), "--fail-if", "loss.auc > 0.55"]) == 3
    assert "loss.auc > 0.55 (actual 0." in capsys.readouterr().err
    for name in ("results.json", "scores.npz", "report.html", "summary.md"):
        assert (tmp_path / "fail" / name).is_file()
    page = (tmp_path / "fail" / "report.html").read_text()
    assert "An attacker identifies" in page and 'class="thumb"' in page  # digits thumbnails
    assert main([*base, "--out", str(tmp_path / "pass"), "--fail-if", "loss.auc > 0.99"]) == 0
