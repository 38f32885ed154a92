"""An end-to-end audit on a fixture of each modality (files in the dataset's real on-disk format)."""

import json

import numpy as np
import pytest

from cyphercat.config import spec_from_dict
from cyphercat.errors import CyphercatError
from cyphercat.pipeline import run_audit
from fixtures import write_fixture

FAST = {"epochs": 15, "batch_size": 16, "lr": 0.003}
CASES = {
    # dataset, per-class fixture records, target architecture (small widths), attacks
    "image": ("mnist", 12, {"name": "cnn", "params": {"channels": [8, 16], "hidden": 32}},
              ["loss", "ml_leaks_1", "lira_online", "rmia_offline", "label_only", "gap"]),
    "audio": ("audio_folder", 16, {"name": "audio_cnn", "params": {"channels": [8, 16]}},
              ["loss", "ml_leaks_3", "lira_offline", "gap"]),
    "text": ("sst", 40, {"name": "text_embedding_bag", "params": {"dim": 16}},
             ["loss", "modified_entropy", "lira_online", "gap"]),
    "tabular": ("adult", 60, {"name": "mlp", "params": {"hidden": [32]}},
                ["loss", "ml_leaks_1", "rmia_online", "label_only"]),
}


def _spec(name, params, model, attacks, n):
    q = n // 6
    return spec_from_dict({
        "dataset": {"name": name, "params": params},
        "splits": {"target_members": q, "target_nonmembers": q, "shadow_members": q, "shadow_nonmembers": q},
        "target": {"model": model, "training": FAST},
        "attack_model": {"model": {"name": "mlp", "params": {"hidden": [8]}}, "training": {"epochs": 10}},
        "reference_models": 2, "attacks": attacks, "metrics": {"bootstrap": 20},
    })


@pytest.mark.parametrize("modality", list(CASES))
def test_audit_runs_end_to_end_on_each_modality(modality, tmp_path):
    name, per_class, model, attacks = CASES[modality]
    params = write_fixture(name, tmp_path / "data", per_class=per_class)
    from cyphercat.data.base import load_dataset

    n = len(load_dataset(name, params, tmp_path / "data").y)
    out = tmp_path / "out"
    result = run_audit(_spec(name, params, model, attacks, n), out, data_dir=tmp_path / "data")
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"]["modality"] == modality
    ev = saved["evaluations"][0]
    assert [a["name"] for a in ev["attacks"]] == attacks
    for a in ev["attacks"]:
        assert 0.0 <= a["auc"] <= 1.0 and a["auc_ci"][0] <= a["auc"] <= a["auc_ci"][1]
    assert 0 <= ev["target"]["train_accuracy"] <= 1
    assert (out / "report.html").exists() and (out / "scores.npz").exists()
    assert result.scores["candidates"].dtype == np.int64


def test_text_rejects_image_style_augmentations(tmp_path):
    params = write_fixture("sst", tmp_path / "data", per_class=40)
    spec = _spec("sst", params, {"name": "text_embedding_bag", "params": {"dim": 8}},
                 [{"name": "lira_online", "params": {"augmentations": 2}}], 80)
    with pytest.raises(CyphercatError, match="augmentations are not defined for text"):
        run_audit(spec, tmp_path / "out", data_dir=tmp_path / "data")
    assert not (tmp_path / "out").exists()
    spec = _spec("sst", params, {"name": "text_embedding_bag", "params": {"dim": 8}}, ["label_only"], 80)
    with pytest.raises(CyphercatError, match="not defined for text"):
        run_audit(spec, tmp_path / "out", data_dir=tmp_path / "data")


def test_custom_model_example_runs(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "custom_model.py"
    mod_spec = importlib.util.spec_from_file_location("custom_model_example", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "__name__", "custom_model_example")
    result = mod.main(out=str(tmp_path / "custom"))
    assert result.dataset["name"] == "breast_cancer"
    assert {a.name for a in result.evaluations[0].attacks} == {"loss", "ml_leaks_1", "lira_online", "rmia_offline"}
    assert (tmp_path / "custom" / "results.json").exists()
