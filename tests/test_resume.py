"""A run killed at any point (SIGKILL included) and started again reuses what it cached and ends
with results identical to an uninterrupted run; Ctrl-C stops cleanly and says how to resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cyphercat.cache import ModelCache
from cyphercat.config import load_spec
from cyphercat.pipeline import run_audit

# 1 target + 16 reference models; reference models reach the cache in ensemble groups of 4, so the
# kill points below fall before, between and late in the groups.
SPEC = """
seed: 11
dataset: digits
shadow_dataset: null
splits: {target_members: 100, target_nonmembers: 100, shadow_members: 0, shadow_nonmembers: 0, population: 200}
target:
  model: {name: mlp, params: {hidden: [64]}}
  training: {epochs: 10, batch_size: 32}
attacks: [lira_online]
reference_models: 16
metrics: {bootstrap: 10}
"""
N_MODELS = 17


def entries(cache: Path) -> int:
    return len(list(cache.glob("*/*.json")))


def results_text(out: Path) -> str:
    return re.sub(r' *"(runtime_s|command)": .*\n', "", (out / "results.json").read_text())


def api_run(spec: Path, cache: Path, out: Path):
    return run_audit(load_spec(spec), out, cache=ModelCache(cache), write_reports=False)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec_file, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("clean")
    api_run(spec_file, root / "cache", root / "out")
    assert entries(root / "cache") == N_MODELS
    return results_text(root / "out")


def start(spec: Path, out: Path, cache: Path, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "CYPHERCAT_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cyphercat.cli", "audit", str(spec), "--out", str(out),
                             "--quiet", *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def wait_for(proc: subprocess.Popen, cache: Path, n: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while entries(cache) < n:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {n} models were cached: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"fewer than {n} models cached after {timeout} s")
        time.sleep(0.005)


@pytest.mark.parametrize("kill_at", [1, 6, 12])
def test_sigkill_then_rerun_gives_identical_results(spec_file, uninterrupted, tmp_path, kill_at):
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = start(spec_file, out, cache)
    wait_for(proc, cache, kill_at)
    assert proc.poll() is None
    proc.kill()
    proc.wait()
    proc.stderr.close()
    cached = entries(cache)
    assert kill_at <= cached < N_MODELS, "the kill should land while models are still being trained"
    assert not out.exists(), "outputs appear only when a run completes"
    result = api_run(spec_file, cache, out)
    assert result.cache["hits"] >= cached and result.cache["rebuilt"] == 0
    assert entries(cache) == N_MODELS
    assert results_text(out) == uninterrupted


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(spec_file, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = start(spec_file, out, cache, "--backend", "process", "--workers", "2")
    wait_for(proc, cache, 1)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop within 60 s of Ctrl-C")
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("interrupted: finished models are cached; "
                                            "run the same command again to resume")
    assert not out.exists()
    # what was cached is whole (resuming from it is what the SIGKILL tests check)
    check = ModelCache(cache)
    assert entries(cache) >= 1 and all(check.load(m.stem) is not None for m in cache.glob("*/*.json"))
