"""Training jobs and the backends that run them: ``serial``, ``process`` (a local pool) and ``ray``.

A job is a pure function of (model spec, training spec, indices, seeds, defense) -> weights, so it may
run anywhere and its result is cached under a content hash (:func:`job_key`). Results never depend on
the backend or the number of workers, because the *work units* never do: :func:`plan_groups` splits
the job list into ensemble groups of at most ``GROUP_SIZE`` batchable jobs (same architecture, training
spec and training-set size) from the job list alone, and a group is trained as one ensemble wherever
it runs. (The ensemble trainer matches the one-model trainer only to float rounding, so letting the
worker count decide the grouping would make the numbers depend on it.) A group with any model missing
from the cache is retrained whole, which reproduces its cached members bit for bit.

Workers write each model into the cache themselves (atomic; the cache may be a shared directory)
and return only its info; the driver then loads models one at a time, so it never holds them all.
With the cache disabled, workers return the weights instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cyphercat.cache import ModelCache, cache_key
from cyphercat.config import DefenseSpec, ModelSpec, TrainingSpec
from cyphercat.defenses.base import DefenseData, make_defense
from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import build_model
from cyphercat.training.trainer import torch_threads, train_model

log = logging.getLogger(__name__)

# Models per ensemble group. Part of what determines the weights (see the module docstring), so it is a
# constant rather than a function of the worker count; 4 keeps most of the ensemble speed-up while
# leaving enough groups to spread over workers and to reach the cache progressively (resume).
GROUP_SIZE = 4


@dataclass(frozen=True)
class TrainJob:
    role: str
    indices: np.ndarray
    model: ModelSpec
    training: TrainingSpec
    init_seed: int
    train_seed: int
    defense: DefenseSpec | None = None


@dataclass(frozen=True)
class ModelBuilder:
    """``seed -> fresh model`` for a fixed architecture; unlike a closure it can be shipped to workers."""

    name: str
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    field: str = "model"

    def __call__(self, seed: int) -> Any:
        return build_model(self.name, self.params, self.input_shape, self.num_classes, seed=seed, field=self.field)


@dataclass
class JobEnv:
    """What every job of a run shares: the data, its fingerprint, and the extra data a defense may use —
    the defender's (``aux``, for the target) and the attacker's own (``attacker_aux``, for shadow and
    reference models trained with the defense by an adaptive attacker)."""

    x: np.ndarray
    y: np.ndarray
    fingerprint: str
    input_shape: tuple[int, ...]
    num_classes: int
    device: torch.device
    aux: DefenseData | None = None
    model_params: dict[str, Any] = field(default_factory=dict)  # dataset-derived (vocab size for text)
    threads: int = 1  # torch intra-op threads inside every job, wherever it runs (bit-identical results)
    attacker_aux: DefenseData | None = None
    aux_fingerprint: str = ""  # which records aux and attacker_aux hold: part of a defended job's key

    def aux_for(self, job: TrainJob) -> DefenseData | None:
        return self.aux if job.role == "target" else self.attacker_aux

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
        # ensemble-trained weights depend (at float rounding) on the grouping: a new group size, new keys
        "group_size": GROUP_SIZE if _batchable(job) else 1,
        # a defense may train on the defender's (or attacker's) extra records: which ones decides the weights
        **({"aux": env.aux_fingerprint} if job.defense is not None else {}),
    })


def train_one(job: TrainJob, env: JobEnv) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    net = env.build(job)
    x, y = env.x[job.indices], env.y[job.indices]
    info: dict[str, Any] = {}
    if job.defense is not None:
        d = make_defense(job.defense.name, job.defense.params)
        net = d.train(net, x, y, job.training, job.train_seed, env.device, env.aux_for(job))
        info = d.info()
    else:
        train_model(net, x, y, job.training, job.train_seed, env.device)
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}, info


def _batchable(job: TrainJob) -> bool:
    from cyphercat.registry import MODELS

    return job.defense is None and bool(getattr(MODELS.get(job.model.name), "batchable", False))


def plan_groups(jobs: Sequence[TrainJob], group_size: int = GROUP_SIZE) -> list[list[int]]:
    """Job indices grouped into work units; a function of the job list only (never of the backend)."""
    buckets: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        key = (job.model.model_dump_json(), job.training.model_dump_json(), len(job.indices)) \
            if _batchable(job) else ("single", i)
        buckets.setdefault(key, []).append(i)
    return [idx[s:s + group_size] for idx in buckets.values() for s in range(0, len(idx), group_size)]


def _train_group(jobs: Sequence[TrainJob], env: JobEnv) -> list[tuple[dict, dict]]:
    """Jobs sharing architecture, training spec and training-set size: one ensemble."""
    if len(jobs) == 1:
        return [train_one(jobs[0], env)]
    try:
        from cyphercat.training.ensemble import train_ensemble
    except ImportError:  # pragma: no cover - the ensemble trainer is part of the package
        return [train_one(j, env) for j in jobs]
    first = jobs[0]
    states = train_ensemble(lambda s: env.build(dataclasses.replace(first, init_seed=s)),
                            [j.init_seed for j in jobs], env.x, env.y, [j.indices for j in jobs],
                            first.training, [j.train_seed for j in jobs], env.device)
    return [({k: v.detach().cpu() for k, v in s.items()}, {}) for s in states]


@dataclass(frozen=True)
class _Task:
    """One group: what a worker trains, which entries it must write, and whether to return weights."""

    positions: list[int]          # indices into the caller's job list
    jobs: list[TrainJob]
    keys: list[str]
    save: list[bool]              # False for members already cached (retrained only for exactness)
    cache_root: str
    cache_enabled: bool
    return_states: bool


def run_task(task: _Task, env: JobEnv) -> list[tuple[dict | None, dict]] | tuple[str, str, str, str | None]:
    """Train one group and write its new models into the cache. Runs in a worker (or inline).

    A :class:`CyphercatError` comes back as a plain tuple: its constructor does not survive pickling."""
    try:
        with torch_threads(env.threads):
            results = _train_group(task.jobs, env)
    except CyphercatError as err:
        return ("error", err.field, err.problem, err.fix)
    cache = ModelCache(task.cache_root, enabled=task.cache_enabled)
    out = []
    for job, key, save, (state, info) in zip(task.jobs, task.keys, task.save, results, strict=True):
        if save:
            cache.save(key, state, {"role": job.role, "info": info})
        out.append((state if task.return_states else None, info))
    return out


