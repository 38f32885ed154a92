"""Training jobs and the backends that run them.

A job is a pure function of (model spec, training spec, indices, seeds, defense) -> weights, so it
may run anywhere and its result may be cached under a content hash. The serial backend runs jobs
here; batchable jobs without a training-time defense are grouped and trained as one ensemble.
Results never depend on the backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cyphercat.cache import ModelCache, cache_key
from cyphercat.config import DefenseSpec, ModelSpec, TrainingSpec
from cyphercat.defenses.base import DefenseData, make_defense
from cyphercat.models.zoo import build_model
from cyphercat.training.trainer import train_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    role: str
    indices: np.ndarray
    model: ModelSpec
    training: TrainingSpec
    init_seed: int
    train_seed: int
    defense: DefenseSpec | None = None


@dataclass
class JobEnv:
    """What every job of a run shares: the data, its fingerprint, and the defender's extra data."""

    x: np.ndarray
    y: np.ndarray
    fingerprint: str
    input_shape: tuple[int, ...]
    num_classes: int
    device: torch.device
    aux: DefenseData | None = None
    model_params: dict[str, Any] = field(default_factory=dict)  # dataset-derived (vocab size for text)

    def build(self, job: TrainJob) -> torch.nn.Module:
        params = {**self.model_params, **job.model.params}
        return build_model(job.model.name, params, self.input_shape, self.num_classes, seed=job.init_seed,
                           field=f"{job.role}.model")


def job_key(job: TrainJob, env: JobEnv) -> str:
    idx = np.ascontiguousarray(job.indices, dtype=np.int64)
    return cache_key({
        "data": env.fingerprint, "indices": hashlib.sha256(idx.tobytes()).hexdigest(),
        "model": job.model.model_dump(mode="json"), "model_params": env.model_params,
        "training": job.training.model_dump(mode="json"),
        "defense": job.defense.model_dump(mode="json") if job.defense else None,
        "init_seed": job.init_seed, "train_seed": job.train_seed, "device": env.device.type,
    })


def train_one(job: TrainJob, env: JobEnv) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    net = env.build(job)
    x, y = env.x[job.indices], env.y[job.indices]
    info: dict[str, Any] = {}
    if job.defense is not None:
        d = make_defense(job.defense.name, job.defense.params)
        net = d.train(net, x, y, job.training, job.train_seed, env.device, env.aux)
        info = d.info()
    else:
        train_model(net, x, y, job.training, job.train_seed, env.device)
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}, info


def _batchable(job: TrainJob, env: JobEnv) -> bool:
    from cyphercat.registry import MODELS

    return job.defense is None and bool(getattr(MODELS.get(job.model.name), "batchable", False))


def _train_group(jobs: Sequence[TrainJob], env: JobEnv) -> list[tuple[dict, dict]]:
    """Jobs sharing architecture, training spec and training-set size: one ensemble."""
    try:
        from cyphercat.training.ensemble import train_ensemble
    except ImportError:  # pragma: no cover - the ensemble trainer is part of the package
        return [train_one(j, env) for j in jobs]
    first = jobs[0]
    states = train_ensemble(lambda s: env.build(dataclasses.replace(first, init_seed=s)),
                            [j.init_seed for j in jobs], env.x, env.y, [j.indices for j in jobs],
                            first.training, [j.train_seed for j in jobs], env.device)
    return [({k: v.detach().cpu() for k, v in s.items()}, {}) for s in states]


class SerialBackend:
    name = "serial"

    def run(self, jobs: Sequence[TrainJob], env: JobEnv, cache: ModelCache,
            on_done: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, torch.Tensor], dict]]:
        """Yield ``(job index, weights, info)`` for every job, from the cache where possible."""
        todo: dict[tuple, list[int]] = {}
        keys = [job_key(j, env) for j in jobs]
        for i, (job, key) in enumerate(zip(jobs, keys, strict=True)):
            hit = cache.load(key)
            if hit is not None:
                state, meta = hit
                if on_done:
                    on_done(1)
                yield i, state, meta.get("info", {})
                continue
            group = (job.model.model_dump_json(), job.training.model_dump_json(), len(job.indices)) \
                if _batchable(job, env) else ("single", i)
            todo.setdefault(group, []).append(i)
        for idxs in todo.values():
            group_jobs = [jobs[i] for i in idxs]
            results = _train_group(group_jobs, env) if len(idxs) > 1 else [train_one(group_jobs[0], env)]
            for i, (state, info) in zip(idxs, results, strict=True):
                cache.save(keys[i], state, {"role": jobs[i].role, "info": info})
                if on_done:
                    on_done(1)
                yield i, state, info


BACKENDS: dict[str, Callable[..., Any]] = {"serial": lambda **kw: SerialBackend()}


def get_backend(name: str, **kwargs: Any):
    from cyphercat.errors import CyphercatError

    if name not in BACKENDS:
        raise CyphercatError("backend", f"unknown backend {name!r}", f"use one of: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](**kwargs)
