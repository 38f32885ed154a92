"""Shared fixtures: every test gets its own model cache, so nothing leaks between tests or runs."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CYPHERCAT_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    monkeypatch.setenv("CYPHERCAT_DATA", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets: intra-op threads only add hand-off overhead (and spin-waits on a busy machine)."""
    from cyphercat.training.trainer import torch_threads

    with torch_threads(1):
        yield


# A small digits audit that trains in seconds but still memorises (used by several test files).
FAST_SPEC = {
    "seed": 0,
    "splits": {"target_members": 200, "target_nonmembers": 200, "shadow_members": 200, "shadow_nonmembers": 200},
    "target": {"model": {"name": "mlp", "params": {"hidden": [256]}},
               "training": {"epochs": 80, "batch_size": 64, "lr": 0.002}},
    "attack_model": {"model": {"name": "mlp", "params": {"hidden": [32]}}, "training": {"epochs": 60, "batch_size": 128}},
    "reference_models": 4,
    "metrics": {"bootstrap": 100},
}
