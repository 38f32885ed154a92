"""Bring your own: factories named by import path, a target trained elsewhere (weights file, black box)."""

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

import cyphercat as cc
from cyphercat.cli import main
from cyphercat.training.trainer import train_model

SMALL = {"splits": {"target_members": 100, "target_nonmembers": 100, "shadow_members": 100, "shadow_nonmembers": 100},
         "target": {"model": {"name": "byo_factories:tiny_net", "params": {"width": 32}},
                    "training": {"epochs": 40, "batch_size": 32}},
         "attack_model": {"model": {"name": "mlp", "params": {"hidden": [8]}}, "training": {"epochs": 20}},
         "reference_models": 2, "metrics": {"bootstrap": 20}, "attacks": ["loss", "lira_online", "gap"]}


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    import pathlib

    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parent))


def test_spec_names_dataset_and_model_factories_by_import_path(tmp_path):
    spec = {**SMALL, "dataset": {"name": "byo_factories:blobs", "params": {"n": 600}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["audit", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    import json

    r = json.loads((tmp_path / "o" / "results.json").read_text())
    assert r["dataset"]["name"] == "blobs" and r["spec"]["target"]["model"]["name"] == "byo_factories:tiny_net"


def test_unimportable_factory_is_a_clear_error(tmp_path, capsys):
    spec = {**SMALL, "target": {"model": {"name": "no_such_module:net"}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2
    assert "cannot import module 'no_such_module'" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_audit_a_target_from_its_weights_file(tmp_path, fmt):
    from byo_factories import tiny_net

    digits = cc.load_dataset("digits")
    members = np.arange(0, 1797, 6)[:100]
    net = tiny_net((1, 8, 8), 10, width=32)
    train_model(net, digits.x[members], digits.y[members], cc.spec_from_dict({}).target.training.model_copy(
        update={"epochs": 60}), seed=0)
    path = tmp_path / f"target.{fmt}"
    if fmt == "safetensors":
        save_file(net.state_dict(), path)
    else:
        torch.save(net.state_dict(), path)
    np.save(tmp_path / "members.npy", members)
    spec = {**SMALL, "target": {**SMALL["target"], "weights": str(path)},
            "splits": {**SMALL["splits"], "members_file": str(tmp_path / "members.npy")}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["audit", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    results, scores = cc.results.load_results(tmp_path / "o")
    assert set(scores["split/members"].tolist()) == set(members.tolist())
    ev = results["evaluations"][0]
    assert ev["target"]["train_accuracy"] == pytest.approx((net(torch.from_numpy(digits.x[members])).argmax(1).numpy()
                                                            == digits.y[members]).mean())
    loss = next(a for a in ev["attacks"] if a["name"] == "loss")
    assert loss["auc_ci"][0] > 0.5  # 60 epochs on 100 records memorises


def test_weights_that_do_not_fit_the_architecture(tmp_path, capsys):
    save_file({"bogus": torch.zeros(3)}, tmp_path / "w.safetensors")
    np.save(tmp_path / "m.npy", np.arange(100))
    spec = {**SMALL, "target": {**SMALL["target"], "weights": str(tmp_path / "w.safetensors")},
            "splits": {**SMALL["splits"], "members_file": str(tmp_path / "m.npy")}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["audit", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: target.weights: w.safetensors does not fit")
    assert not (tmp_path / "o").exists()


def test_black_box_predict_proba_target_with_python_api():
    from sklearn.linear_model import LogisticRegression

    digits = cc.load_dataset("digits", {"flatten": True})
    members = np.arange(200)
    clf = LogisticRegression(C=100.0, max_iter=2000).fit(digits.x[members], digits.y[members])
    target = cc.Model(predict_proba=clf.predict_proba)
    result = cc.audit(dataset=digits, target=target, members=members, attacks=["loss", "rmia_offline"],
                      reference_models=2, metrics={"bootstrap": 20}, splits={**SMALL["splits"], "target_members": 200})
    ev = result.evaluations[0]
    assert ev.target["train_accuracy"] == pytest.approx(clf.score(digits.x[members], digits.y[members]))
    assert {a.name for a in ev.attacks} == {"loss", "rmia_offline"}
