"""Content-addressed model cache: key = hash of everything that determines the weights.

An entry is ``<key>.safetensors`` (the weights) plus ``<key>.json`` (metadata, including the weights'
SHA-256). Both are written to a temporary file and renamed into place, metadata last, so a reader
never sees a half-written entry and concurrent writers of one key (a shared cluster directory) at
worst replace an entry by an identical one. A corrupt or truncated entry fails its checksum, is
removed, and is rebuilt by the caller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cyphercat.errors import CyphercatError
from cyphercat.files import write_atomic

# Part of every key: bump it when the same spec would train different weights (2: fused Adam and
# subnormal-free optimizer state in both trainers).
FORMAT_VERSION = 2
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("CYPHERCAT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cyphercat" / "models"


def cache_key(payload: dict[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, **payload}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()



class ModelCache:
    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.safetensors", d / f"{key}.json"

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if not self.enabled:
            return None
        wpath, mpath = self._paths(key)
        if not mpath.exists():
            self.misses += 1
            return None
        try:
            meta = json.loads(mpath.read_text())
            blob = wpath.read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"] or meta.get("key") != key:
                raise ValueError("checksum mismatch")
            state = st_load(blob)
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, RuntimeError) as err:
            log.warning("cache entry %s is corrupt (%s); rebuilding it", key[:12], err)
            self.rebuilt += 1
            self.misses += 1
            for p in (mpath, wpath):
                p.unlink(missing_ok=True)
            return None
        self.hits += 1
        return state, meta

    def save(self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        wpath, mpath = self._paths(key)
        try:
            wpath.parent.mkdir(parents=True, exist_ok=True)
            blob = st_save({k: v.detach().cpu().contiguous() for k, v in state.items()})
            write_atomic(wpath, blob, fsync=True)
            full = {**(meta or {}), "key": key, "format": FORMAT_VERSION,
                    "weights_sha256": hashlib.sha256(blob).hexdigest()}
            write_atomic(mpath, json.dumps(full, sort_keys=True, default=str).encode(), fsync=True)
        except OSError as err:
            raise CyphercatError("cache.dir", f"cannot write to {self.root}: {err}",
                                 "point cache.dir (or CYPHERCAT_CACHE) at a writable directory, or use --no-cache") from None

    def check(self) -> None:
        """Fail before anything is trained when the cache directory cannot be written."""
        if not self.enabled:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise CyphercatError("cache.dir", f"cannot write to {self.root}: {err.strerror or err}",
                                 "point cache.dir (or CYPHERCAT_CACHE) at a writable directory, or use --no-cache") from None

    def info(self) -> dict[str, Any]:
        entries = list(self.root.glob("*/*.json")) if self.root.exists() else []
        size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0
        return {"dir": str(self.root), "entries": len(entries), "bytes": size}

    def clear(self) -> int:
        n = self.info()["entries"]
        if self.root.exists():
            shutil.rmtree(self.root)
        return n
