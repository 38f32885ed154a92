"""Backends give the same models, and the same results.json, whatever runs the jobs."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch

from cyphercat import backends
from cyphercat.backends import (
    JobEnv,
    ProcessBackend,
    SerialBackend,
    TrainJob,
    get_backend,
    job_key,
    plan_groups,
)
from cyphercat.backends import jobs as backend_jobs
from cyphercat.backends import process as backend_process
from cyphercat.cache import ModelCache
from cyphercat.cli import main
from cyphercat.config import DefenseSpec, ModelSpec, TrainingSpec
from cyphercat.data.base import load_dataset

HAS_RAY = importlib.util.find_spec("ray") is not None
MLP = ModelSpec(name="mlp", params={"hidden": [16]})
TRAIN = TrainingSpec(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def env() -> JobEnv:
    ds = load_dataset("digits", {})
    return JobEnv(ds.x, ds.y, "digits-test", ds.input_shape, ds.num_classes, torch.device("cpu"))


def make_jobs(n: int = 6) -> list[TrainJob]:
    rng = np.random.default_rng(0)
    jobs = [TrainJob(f"reference{i}", np.sort(rng.choice(400, 120, replace=False)), MLP, TRAIN, 100 + i, 200 + i)
            for i in range(n)]
    # a different training-set size and a different architecture: groups of their own
    jobs.append(TrainJob("odd", np.arange(50), MLP, TRAIN, 7, 8))
    jobs.append(TrainJob("linear", np.arange(80), ModelSpec(name="logreg"), TRAIN, 9, 10))
    return jobs


def collect(backend, jobs, env, cache) -> tuple[dict[int, dict], int]:
    done = []
    out = {i: state for i, state, _info in backend.run(jobs, env, cache, on_done=done.append)}
    return out, sum(done)


def assert_same(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert a.keys() == b.keys()
    for i in a:
        assert a[i].keys() == b[i].keys()
        for k in a[i]:
            assert torch.equal(a[i][k], b[i][k]), (i, k)


def test_groups_depend_on_the_job_list_only():
    jobs = make_jobs(6)
    groups = plan_groups(jobs)
    assert groups == plan_groups(jobs)
    assert sorted(i for g in groups for i in g) == list(range(len(jobs)))
    assert all(len(g) <= backends.GROUP_SIZE for g in groups)
    assert groups[:2] == [[0, 1, 2, 3], [4, 5]]          # batchable, same size: chunked in order
    assert [6] in groups and [7] in groups                  # other size / other architecture
    dp = [TrainJob("r", np.arange(10), MLP, TRAIN, 1, 2, DefenseSpec(name="dp_sgd")) for _ in range(3)]
    assert plan_groups(dp) == [[0], [1], [2]]                # training-time defenses never batch


@pytest.fixture(scope="module")
def pool():
    """One pool of 2 spawned workers for the module (starting one costs seconds)."""
    proc = ProcessBackend(workers=2)
    yield proc
    proc.close()


def test_process_backend_matches_serial(env, pool, tmp_path, monkeypatch):
    jobs = make_jobs(6)
    serial, n_serial = collect(SerialBackend(), jobs, env, ModelCache(tmp_path / "a"))
    assert n_serial == len(jobs)
    # large-array path: ship the data through shared memory, as for a real image dataset
    monkeypatch.setattr(backend_process, "INLINE_BYTES", 0)
    cache = ModelCache(tmp_path / "b")
    pooled, n_pooled = collect(pool, jobs, env, cache)
    assert_same(serial, pooled)
    assert n_pooled == len(jobs) and cache.info()["entries"] == len(jobs)
    # --no-cache: workers return the weights themselves
    uncached, _ = collect(pool, jobs, env, ModelCache(tmp_path / "c", enabled=False))
    assert_same(serial, uncached)
    assert not (tmp_path / "c").exists()


def test_partly_cached_group_is_rebuilt_exactly(env, tmp_path):
    jobs = make_jobs(6)
    full, _ = collect(SerialBackend(), jobs, env, ModelCache(tmp_path / "full"))
    cache = ModelCache(tmp_path / "part")
    for i in (1, 4):  # one member of each of the two ensemble groups is already there
        cache.save(job_key(jobs[i], env), full[i], {"role": jobs[i].role, "info": {}})
    again, n = collect(SerialBackend(), jobs, env, cache)
    assert_same(full, again)
    assert n == len(jobs) and cache.hits == 2 and cache.info()["entries"] == len(jobs)


def test_driver_reads_models_one_at_a_time(env, tmp_path):
    """The process backend hands back keys, not weights, when the cache is on."""
    jobs = make_jobs(2)[:2]
    task = backend_jobs._Task([0, 1], jobs, [job_key(j, env) for j in jobs], [True, True], str(tmp_path), True, False)
    out = backend_jobs.run_task(task, env)
    assert [state for state, _ in out] == [None, None]
    assert ModelCache(tmp_path).info()["entries"] == 2


def test_worker_errors_come_back_as_one_line(env, tmp_path):
    bad = TrainJob("target", np.arange(10), ModelSpec(name="mlp", params={"nope": 1}), TRAIN, 1, 2)
    with pytest.raises(Exception) as err:
        list(SerialBackend().run([bad], env, ModelCache(tmp_path)))
    assert "target.model.params: mlp has no parameter 'nope'" in str(err.value)


@pytest.mark.parametrize("name,kw,field", [
    ("dask", {}, "backend"), ("serial", {"workers": 3}, "workers"), ("process", {"workers": 0}, "workers"),
    ("serial", {"address": "auto"}, "ray_address"), ("ray", {"address": "not an address"}, "ray_address"),
])
def test_bad_backend_settings(name, kw, field):
    with pytest.raises(Exception) as err:
        get_backend(name, **kw)
    assert str(err.value).startswith(f"{field}: ")


# ---- whole audits: results.json byte-identical apart from runtimes and the command line ----------------
SPEC = """
seed: 5
dataset: digits
shadow_dataset: null
splits: {target_members: 80, target_nonmembers: 80, shadow_members: 0, shadow_nonmembers: 0, population: 120}
target:
  model: {name: mlp, params: {hidden: [16]}}
  training: {epochs: 3, batch_size: 32}
attacks: [lira_online]
metrics: {bootstrap: 10}
"""


def normalised(path) -> str:
    """results.json minus the lines that may differ: runtimes and the command line (argv)."""
    return re.sub(r' *"(runtime_s|command)": .*\n', "", (path / "results.json").read_text())


def audit(tmp_path, name: str, *flags: str) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    rc = main(["audit", str(spec), "--out", str(tmp_path / name), "--quiet", "--reference-models", "8",
               "--cache-dir", str(tmp_path / f"cache-{name}"), *flags])
    assert rc == 0
    return normalised(tmp_path / name)


@pytest.fixture(scope="module")
def serial_results(tmp_path_factory) -> str:
    return audit(tmp_path_factory.mktemp("serial"), "serial")


def test_process_audit_equals_serial(serial_results, pool, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "process", lambda workers, address: pool)  # reuse the warm pool
    assert audit(tmp_path, "process", "--backend", "process", "--workers", "2") == serial_results
    assert '"backend"' not in serial_results  # execution settings are not part of the recorded spec


@pytest.mark.ray
@pytest.mark.skipif(not HAS_RAY, reason="needs the optional ray extra: pip install 'cyphercat[ray]'")
def test_ray_audit_equals_serial(serial_results, tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert audit(tmp_path, "ray", "--backend", "ray") == serial_results
    finally:
        ray.shutdown()
