"""The privacy–utility scorecard: best-attack choice, accuracy drop, Pareto marking, files, table."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from cyphercat.scorecard import best_attack, build_scorecard, mark_pareto, print_scorecard, write_scorecard


def _attack(name, auc, tpr01, tpr001=0.0, kind="membership"):
    return {"name": name, "kind": kind, "auc": auc, "auc_ci": [auc - 0.05, auc + 0.05],
            "tpr_at_fpr": {"0.001": tpr001, "0.01": tpr01, "0.1": 0.5},
            "tpr_at_fpr_ci": {"0.001": [0.0, tpr001 + 0.1], "0.01": [0.0, tpr01 + 0.1], "0.1": [0.4, 0.6]}}


def _evaluation(id_, name, acc, attacks, epsilon=None, params=None):
    return {"id": id_, "defense": {"name": name, "params": params or {}, "stage": None if name == "none" else "training",
                                   "epsilon": epsilon},
            "attacker_knows_defense": True, "target": {"train_accuracy": 1.0, "test_accuracy": acc},
            "attacks": attacks}


def _row(id_, acc, tpr, auc):
    return {"id": id_, "test_accuracy": acc, "tpr_at_0.01": tpr, "auc": auc}


def test_pareto_marking_on_a_hand_made_table():
    rows = mark_pareto([
        _row("baseline", 0.90, 0.50, 0.95),   # most accurate: on the front
        _row("dominated", 0.80, 0.60, 0.97),  # baseline is more accurate and leaks less
        _row("private", 0.60, 0.00, 0.51),    # leaks least: on the front
        _row("middle", 0.85, 0.10, 0.70),     # nobody is both more accurate and less leaky
        _row("worse", 0.55, 0.05, 0.60),      # private is more accurate and leaks less
        _row("tie_acc", 0.90, 0.70, 0.99),    # as accurate as baseline but leakier: dominated
        _row("no_attacks", 0.95, None, None),  # nothing measured: never on the front
    ])
    front = {r["id"]: r["pareto"] for r in rows}
    assert front == {"baseline": True, "dominated": False, "private": True, "middle": True, "worse": False,
                     "tie_acc": False, "no_attacks": False}


def test_leakage_ties_at_low_fpr_are_broken_by_auc():
    rows = mark_pareto([_row("a", 0.9, 0.0, 0.80), _row("b", 0.8, 0.0, 0.85), _row("c", 0.7, 0.0, 0.60)])
    assert [r["pareto"] for r in rows] == [True, False, True]


def test_best_attack_is_highest_tpr_at_1pct_then_auc_and_ignores_other_kinds():
    attacks = [_attack("high_auc", 0.95, 0.10), _attack("low_fpr", 0.80, 0.30), _attack("tie", 0.85, 0.30),
               {"name": "inv", "kind": "inversion", "auc": 0.99}]
    assert best_attack(attacks)["name"] == "tie"
    assert best_attack([]) is None


def test_build_scorecard_rows():
    result = {"evaluations": [
        _evaluation("none", "none", 0.90, [_attack("loss", 0.95, 0.40, 0.2), _attack("gap", 0.70, 0.0)]),
        _evaluation("dp_sgd-epsilon=1", "dp_sgd", 0.70, [_attack("loss", 0.52, 0.0)], epsilon=0.98,
                    params={"epsilon": 1}),
        _evaluation("labels_only", "labels_only", 0.90, [_attack("label_only", 0.80, 0.0)]),
    ]}
    rows = build_scorecard(result)
    by = {r["id"]: r for r in rows}
    assert by["none"]["best_attack"] == "loss" and by["none"]["accuracy_drop"] == 0.0
    assert by["none"]["tpr_at_0.001"] == 0.2 and by["none"]["tpr_at_0.01_ci"] == pytest.approx([0.0, 0.5])
    dp = by["dp_sgd-epsilon=1"]
    assert dp["epsilon"] == 0.98 and dp["params"] == {"epsilon": 1}
    assert dp["accuracy_drop"] == pytest.approx(0.20) and dp["auc_ci"] == pytest.approx([0.47, 0.57])
    # labels_only: as accurate as the baseline and less leaky -> the baseline leaves the front
    assert [by[k]["pareto"] for k in ("none", "dp_sgd-epsilon=1", "labels_only")] == [False, True, True]
    expected = {"id", "defense", "params", "epsilon", "test_accuracy", "accuracy_drop", "best_attack", "auc", "auc_ci",
                "tpr_at_0.001", "tpr_at_0.001_ci", "tpr_at_0.01", "tpr_at_0.01_ci", "pareto"}
    assert expected <= set(rows[0])


def test_write_and_print(tmp_path):
    result = {"evaluations": [
        _evaluation("none", "none", 0.9, [_attack("loss", 0.95, 0.4)]),
        _evaluation("dp_sgd-epsilon=1", "dp_sgd", 0.7, [_attack("loss", 0.52, 0.01)], epsilon=0.98),
        _evaluation("empty", "rounding", float("nan"), []),
    ]}
    rows = build_scorecard(result)
    write_scorecard(tmp_path, rows)
    saved = json.loads((tmp_path / "scorecard.json").read_text())
    assert [r["id"] for r in saved] == ["none", "dp_sgd-epsilon=1", "empty"]
    assert saved[2]["test_accuracy"] is None  # NaN -> null, the file stays valid JSON
    table = list(csv.DictReader(io.StringIO((tmp_path / "scorecard.csv").read_text())))
    assert table[1]["epsilon"] == "0.98" and table[1]["pareto"] == "True"
    assert float(table[0]["auc_ci_lo"]) == pytest.approx(0.9) and table[2]["best_attack"] == ""
    console = Console(record=True, width=200)
    print_scorecard(rows, console=console)
    text = console.export_text()
    assert "dp_sgd-epsilon=1" in text and "0.98" in text and "★" in text
