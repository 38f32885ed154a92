"""The command line end to end: determinism, exit codes, nothing half-written."""

import json

import yaml

from conftest import FAST_SPEC
from cyphercat.cli import main


def _spec_file(tmp_path, name="spec", **extra):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**FAST_SPEC, **extra}))
    return str(path)


def _strip_runtime(text: str) -> str:
    """Everything but wall-clock times and the argv line (which records --no-cache)."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in ("runtime_s", "command")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    return json.dumps(strip(json.loads(text)), sort_keys=True)


def test_two_runs_give_byte_identical_results_and_a_warm_run_trains_nothing(tmp_path, capsys):
    spec = _spec_file(tmp_path, attacks=["loss", "ml_leaks_1", "ml_leaks_3", "lira_online", "rmia_offline"])
    out = tmp_path / "out"
    assert main(["audit", spec, "--out", str(out), "--quiet"]) == 0
    first = (out / "results.json").read_text()
    import cyphercat.backends.jobs as backends

    calls = []
    original = backends._train_group
    backends._train_group = lambda jobs, env: calls.append(len(jobs)) or original(jobs, env)
    try:
        assert main(["audit", spec, "--out", str(out), "--quiet"]) == 0
    finally:
        backends._train_group = original
    second = (out / "results.json").read_text()
    assert calls == [], "a warm rerun trained models"
    first_lines = [ln for ln in first.splitlines() if '"runtime_s"' not in ln]
    second_lines = [ln for ln in second.splitlines() if '"runtime_s"' not in ln]
    assert first_lines == second_lines
    # and without the cache, from scratch, the numbers are the same
    assert main(["audit", spec, "--out", str(out), "--quiet", "--no-cache"]) == 0
    assert _strip_runtime((out / "results.json").read_text()) == _strip_runtime(first)
    r = json.loads(first)
    assert r["schema_version"] == 1 and r["seed"] == 0 and len(r["spec_hash"]) == 16
    assert set(r["environment"]) >= {"python", "torch", "cyphercat", "device"}
    attack = r["evaluations"][0]["attacks"][0]
    assert set(attack) >= {"name", "auc", "auc_ci", "tpr_at_fpr", "advantage", "precision", "recall"}
    assert set(attack["tpr_at_fpr"]) == {"0.001", "0.01", "0.1"}


def test_seed_changes_the_numbers(tmp_path):
    spec = _spec_file(tmp_path, attacks=["loss"])
    main(["audit", spec, "--out", str(tmp_path / "a"), "--quiet"])
    main(["audit", spec, "--out", str(tmp_path / "b"), "--quiet", "--seed", "1"])
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert b["seed"] == 1 and a["spec_hash"] != b["spec_hash"]
    assert a["evaluations"][0]["attacks"][0]["auc"] != b["evaluations"][0]["attacks"][0]["auc"]


def test_bad_input_exits_2_with_one_line_and_leaves_no_output(tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        (["audit", _spec_file(tmp_path, "a", dataset={"name": "digitz"}), "--out", str(out)], "dataset.name"),
        (["audit", _spec_file(tmp_path, "b", splits={"target_members": 1500}), "--out", str(out)], "splits"),
        (["audit", "--attack", "lira_onlin", "--out", str(out)], "attacks[0].name"),
        (["audit", "--out", str(out), "--bogus"], "command line"),
        (["validate", str(tmp_path / "missing.yaml")], "spec"),
    ]
    for argv, field in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {field}"), err
        assert len(err.splitlines()) == 1
        assert not out.exists()
        assert not list(tmp_path.glob(".out.*")), "a temporary output directory was left behind"


def test_validate_and_list(tmp_path, capsys):
    assert main(["validate", _spec_file(tmp_path)]) == 0
    assert "spec hash" in capsys.readouterr().out
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("digits", "synthetic", "mlp", "cnn", "logreg", "lira_online", "ml_leaks_2"):
        assert name in text
