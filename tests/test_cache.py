"""The model cache: corrupt entries are detected and rebuilt, concurrent writers never corrupt it."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import torch

from cyphercat.cache import ModelCache
from cyphercat.config import spec_from_dict
from cyphercat.errors import CyphercatError
from cyphercat.pipeline import run_audit

SPEC = {
    "seed": 2, "dataset": "digits", "shadow_dataset": None,
    "splits": {"target_members": 80, "target_nonmembers": 80, "shadow_members": 0, "shadow_nonmembers": 0,
               "population": 120},
    "target": {"model": {"name": "mlp", "params": {"hidden": [16]}}, "training": {"epochs": 3, "batch_size": 32}},
    "attacks": ["lira_online"], "reference_models": 8, "metrics": {"bootstrap": 10},
}


def results_text(out: Path) -> str:
    return re.sub(r' *"(runtime_s|command)": .*\n', "", (out / "results.json").read_text())


def run(cache_dir: Path, out: Path):
    return run_audit(spec_from_dict(SPEC), out, cache=ModelCache(cache_dir), write_reports=False)


def truncate(w: Path, m: Path) -> None:
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def flip_weight_byte(w: Path, m: Path) -> None:
    blob = bytearray(w.read_bytes())
    blob[-5] ^= 0xFF  # inside the tensor data: still a valid safetensors file, only the checksum knows
    w.write_bytes(bytes(blob))


def flip_header_byte(w: Path, m: Path) -> None:
    blob = bytearray(w.read_bytes())
    blob[10] ^= 0xFF
    w.write_bytes(bytes(blob))


def garble_metadata(w: Path, m: Path) -> None:
    m.write_bytes(m.read_bytes()[:7] + b"\x00\xff{")


def wrong_checksum(w: Path, m: Path) -> None:
    meta = json.loads(m.read_text())
    meta["weights_sha256"] = "0" * 64
    m.write_text(json.dumps(meta))


def metadata_not_a_mapping(w: Path, m: Path) -> None:
    m.write_text("[1, 2, 3]")


def weights_missing(w: Path, m: Path) -> None:
    w.unlink()


def metadata_missing(w: Path, m: Path) -> None:  # a run killed between the two renames: a plain miss
    m.unlink()


CORRUPTIONS = [truncate, flip_weight_byte, flip_header_byte, garble_metadata, wrong_checksum,
               metadata_not_a_mapping, weights_missing, metadata_missing]


def test_corrupt_entries_are_detected_and_rebuilt_with_the_same_results(tmp_path):
    cache = tmp_path / "cache"
    run(cache, tmp_path / "clean")
    metas = sorted(cache.glob("*/*.json"))
    assert len(metas) == 9 >= len(CORRUPTIONS)
    for corrupt, meta in zip(CORRUPTIONS, metas, strict=False):
        corrupt(meta.with_suffix(".safetensors"), meta)
    again = run(cache, tmp_path / "again")
    assert again.cache["rebuilt"] == len(CORRUPTIONS) - 1  # the missing-metadata entry is a plain miss
    assert again.cache["hits"] >= 9 - len(CORRUPTIONS)  # the intact entry (the pipeline may look twice)
    assert results_text(tmp_path / "again") == results_text(tmp_path / "clean")
    check = ModelCache(cache)
    for meta in cache.glob("*/*.json"):
        assert check.load(meta.stem) is not None
    assert check.rebuilt == 0 and check.info()["entries"] == 9


def test_entry_under_another_key_is_rejected(tmp_path):
    c = ModelCache(tmp_path)
    c.save("a" * 64, {"w": torch.ones(3)})
    for suffix in (".safetensors", ".json"):
        src = tmp_path / "aa" / f"{'a' * 64}{suffix}"
        dst = tmp_path / "bb" / f"{'b' * 64}{suffix}"
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes(src.read_bytes())
    assert c.load("b" * 64) is None and c.rebuilt == 1
    assert torch.equal(c.load("a" * 64)[0]["w"], torch.ones(3))


def test_concurrent_writers_of_one_key_never_corrupt_it(tmp_path):
    """Cluster workers racing on one key (same content): readers see nothing or a valid entry."""
    key = "c" * 64
    state = {"w": torch.arange(50_000, dtype=torch.float32), "b": torch.ones(7)}
    bad: list[str] = []
    stop = threading.Event()

    def write() -> None:
        c = ModelCache(tmp_path)
        for _ in range(15):
            c.save(key, state, {"role": "reference0"})

    def read() -> None:
        c = ModelCache(tmp_path)
        while not stop.is_set():
            hit = c.load(key)
            if hit is not None and not torch.equal(hit[0]["w"], state["w"]):
                bad.append("wrong weights")
        if c.rebuilt:
            bad.append(f"{c.rebuilt} corrupt reads")

    writers = [threading.Thread(target=write) for _ in range(4)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert bad == []
    assert ModelCache(tmp_path).load(key) is not None
    assert not list(tmp_path.glob("*/.*.tmp")), "temporary files are renamed or removed"


def test_unwritable_cache_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CyphercatError, match=r"^cache.dir: cannot write to .*-> point cache.dir"):
        ModelCache(blocker / "models").check()
    ModelCache(blocker, enabled=False).check()  # --no-cache never touches it


def test_cache_info_and_clear(tmp_path):
    c = ModelCache(tmp_path / "m")
    c.save("d" * 64, {"w": torch.zeros(2)})
    assert c.info()["entries"] == 1 and c.info()["bytes"] > 0
    assert c.clear() == 1 and c.info()["entries"] == 0
