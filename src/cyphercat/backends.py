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
import multiprocessing as mp
import os
import re
import signal
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
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
# Arrays smaller than this travel to process workers by pickling; larger ones through shared memory.
INLINE_BYTES = 1 << 20
RESUME_HINT = "finished models are cached; run the same command again to resume"


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
    """What every job of a run shares: the data, its fingerprint, and the defender's extra data."""

    x: np.ndarray
    y: np.ndarray
    fingerprint: str
    input_shape: tuple[int, ...]
    num_classes: int
    device: torch.device
    aux: DefenseData | None = None
    model_params: dict[str, Any] = field(default_factory=dict)  # dataset-derived (vocab size for text)
    threads: int = 1  # torch intra-op threads inside every job, wherever it runs (bit-identical results)

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


class _Backend:
    """The driver side shared by every backend: cache look-ups, grouping, yielding one model at a time."""

    name = ""
    local = False  # runs in this process: keep the weights it just trained instead of re-reading them

    def __init__(self, group_size: int = GROUP_SIZE):
        self.group_size = group_size

    def run(self, jobs: Sequence[TrainJob], env: JobEnv, cache: ModelCache,
            on_done: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, torch.Tensor], dict]]:
        """Yield ``(job index, weights, info)`` for every job, from the cache where possible."""
        keys = [job_key(j, env) for j in jobs]
        missing: set[int] = set()
        for i, key in enumerate(keys):
            hit = cache.load(key)
            if hit is None:
                missing.add(i)
                continue
            state, meta = hit
            if on_done:
                on_done(1)
            yield i, state, meta.get("info", {})
        if not missing:
            return
        root = str(Path(cache.root).resolve())
        tasks = [_Task(g, [jobs[i] for i in g], [keys[i] for i in g], [i in missing for i in g], root,
                       cache.enabled, self.local or not cache.enabled)
                 for g in plan_groups(jobs, self.group_size) if any(i in missing for i in g)]
        for task, results in self._execute(tasks, env):
            if isinstance(results, tuple):
                raise CyphercatError(*results[1:])
            for i, key, (state, info) in zip(task.positions, task.keys, results, strict=True):
                if i not in missing:
                    continue
                if state is None:
                    state = _fetch(cache, key, jobs[i].role)
                if on_done:
                    on_done(1)
                yield i, state, info

    def _execute(self, tasks: list[_Task], env: JobEnv) -> Iterator[tuple[_Task, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers and shared memory (also done automatically when the backend is collected)."""


def _fetch(cache: ModelCache, key: str, role: str) -> dict[str, torch.Tensor]:
    """Read what a worker wrote. A shared filesystem may show a new file late, so retry briefly."""
    for delay in (0.0, 0.1, 0.3, 1.0, 2.0):
        time.sleep(delay)
        hit = cache.load(key)
        if hit is not None:
            return hit[0]
    raise CyphercatError("cache.dir", f"a worker trained {role} but its model is not readable in {cache.root}",
                         "with a Ray cluster, put the cache on a filesystem that every node and this machine "
                         "share (--cache-dir), or use --no-cache")


class SerialBackend(_Backend):
    name = "serial"
    local = True

    def _execute(self, tasks, env):
        for task in tasks:
            yield task, run_task(task, env)


# ---- process pool -----------------------------------------------------------------------------------
_WORKER_ENVS: dict[str, tuple[JobEnv, list]] = {}
_ARRAY_FIELDS = ("x", "y")
_AUX_ARRAY_FIELDS = ("reference_x", "reference_y", "validation_x", "validation_y")


@dataclass(frozen=True)
class _SharedArray:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class _EnvHandle:
    """A :class:`JobEnv` with its large arrays swapped for shared-memory references."""

    token: str
    env: JobEnv
    arrays: dict[str, _SharedArray]


def _share(env: JobEnv) -> tuple[_EnvHandle, list[shared_memory.SharedMemory]]:
    blocks, refs = [], {}

    def put(path: str, arr: Any) -> Any:
        if not isinstance(arr, np.ndarray) or arr.dtype == object or arr.nbytes < max(INLINE_BYTES, 1):
            return arr
        shm = shared_memory.SharedMemory(create=True, size=arr.nbytes)
        np.ndarray(arr.shape, arr.dtype, buffer=shm.buf)[...] = arr
        blocks.append(shm)
        refs[path] = _SharedArray(shm.name, tuple(arr.shape), arr.dtype.str)
        return None

    changes = {f: put(f, getattr(env, f)) for f in _ARRAY_FIELDS}
    if env.aux is not None:
        changes["aux"] = dataclasses.replace(env.aux, **{f: put(f"aux.{f}", getattr(env.aux, f))
                                                         for f in _AUX_ARRAY_FIELDS})
    return _EnvHandle(uuid.uuid4().hex, dataclasses.replace(env, **changes), refs), blocks


def _attach(handle: _EnvHandle) -> JobEnv:
    if handle.token in _WORKER_ENVS:
        return _WORKER_ENVS[handle.token][0]
    blocks, arrays = [], {}
    for path, ref in handle.arrays.items():
        shm = shared_memory.SharedMemory(name=ref.name)
        blocks.append(shm)
        arrays[path] = np.ndarray(ref.shape, np.dtype(ref.dtype), buffer=shm.buf)
    env = handle.env
    top = {f: arrays[f] for f in _ARRAY_FIELDS if f in arrays}
    aux = {f: arrays[f"aux.{f}"] for f in _AUX_ARRAY_FIELDS if f"aux.{f}" in arrays}
    env = dataclasses.replace(env, **top, **({"aux": dataclasses.replace(env.aux, **aux)} if aux else {}))
    _WORKER_ENVS[handle.token] = (env, blocks)
    return env


def _worker_init(threads: int) -> None:
    # Ctrl-C goes to the whole process group; only the driver should react (and stop the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def _process_task(task: _Task, handle: _EnvHandle):
    return run_task(task, _attach(handle))


def _shutdown_pool(pool: ProcessPoolExecutor | None, blocks: list, kill: bool) -> None:
    if pool is not None:
        if kill:  # running tasks would otherwise finish first; their models are lost anyway
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=not kill, cancel_futures=True)
    for shm in blocks:
        try:
            shm.close()
            shm.unlink()
        except (FileNotFoundError, BufferError):
            pass


class ProcessBackend(_Backend):
    """A pool of ``workers`` local processes (spawned, so CUDA and torch's thread pools are safe)."""

    name = "process"

    def __init__(self, workers: int = 2, group_size: int = GROUP_SIZE):
        super().__init__(group_size)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._blocks: list[shared_memory.SharedMemory] = []
        self._handles: dict[int, tuple[JobEnv, _EnvHandle]] = {}
        self._finalizer = weakref.finalize(self, _shutdown_pool, None, self._blocks, False)

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_worker_init, initargs=(threads,))
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown_pool, self._pool, self._blocks, False)
        return self._pool

    def _handle(self, env: JobEnv) -> _EnvHandle:
        if id(env) not in self._handles:  # the env is kept alive with its handle, so its id stays unique
            handle, blocks = _share(env)
            self._blocks.extend(blocks)
            self._handles[id(env)] = (env, handle)
        return self._handles[id(env)][1]

    def _execute(self, tasks, env):
        pool, handle = self._get_pool(), self._handle(env)
        futures: dict[Future, _Task] = {pool.submit(_process_task, t, handle): t for t in tasks}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield futures[fut], fut.result()
        except BrokenProcessPool:
            self.close(kill=True)
            raise CyphercatError("workers", "a worker process died while training (out of memory?)",
                                 f"{RESUME_HINT}, with fewer --workers") from None
        except BaseException as err:
            for fut in pending:
                fut.cancel()
            if isinstance(err, KeyboardInterrupt):
                self.close(kill=True)
            raise

    def close(self, kill: bool = False) -> None:
        self._finalizer.detach()
        _shutdown_pool(self._pool, self._blocks, kill)
        self._pool, self._blocks, self._handles = None, [], {}
        self._finalizer = weakref.finalize(self, _shutdown_pool, None, self._blocks, False)


# ---- ray --------------------------------------------------------------------------------------------
_ADDRESS = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9_.\-]+:\d{1,5})$")


def _ray_task(task: _Task, env: JobEnv):
    return run_task(task, env)


class RayBackend(_Backend):
    """Groups as Ray tasks (one CPU each). ``address``: ``auto`` or ``HOST:PORT`` joins a running cluster;
    None starts a local instance with ``workers`` CPUs (or uses the one already started in this process)."""

    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None, group_size: int = GROUP_SIZE):
        super().__init__(group_size)
        try:
            import ray
        except ImportError:
            raise CyphercatError("backend", "ray is not installed",
                                 "pip install 'cyphercat[ray]', or use --backend process") from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address} if address else \
                {"num_cpus": workers if workers > 1 else None, "include_dashboard": False}
            try:
                ray.init(log_to_driver=False, logging_level=logging.WARNING, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise CyphercatError("ray_address", f"cannot start or join Ray at {address or 'local'}: "
                                     f"{str(err).splitlines()[0]}",
                                     "start a cluster with `ray start --head` and pass --ray-address auto "
                                     "(or HOST:PORT), or leave --ray-address out for a local instance") from None
        self._remote = ray.remote(num_cpus=1, max_retries=2)(_ray_task)
        self._refs: dict[int, tuple[JobEnv, Any]] = {}

    def _execute(self, tasks, env):
        ray = self._ray
        if id(env) not in self._refs:
            self._refs[id(env)] = (env, ray.put(env))
        env_ref = self._refs[id(env)][1]
        refs = {self._remote.remote(t, env_ref): t for t in tasks}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield refs[done[0]], ray.get(done[0])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        self._refs = {}


BACKENDS: dict[str, Callable[..., _Backend]] = {
    "serial": lambda workers=1, address=None, **kw: SerialBackend(**kw),
    "process": lambda workers=1, address=None, **kw: ProcessBackend(workers, **kw),
    "ray": lambda workers=1, address=None, **kw: RayBackend(workers, address, **kw),
}


def get_backend(name: str, workers: int = 1, address: str | None = None, **kwargs: Any) -> _Backend:
    """The backend ``name``; bad combinations fail here, before anything is trained."""
    if name not in BACKENDS:
        raise CyphercatError("backend", f"unknown backend {name!r}", f"use one of: {', '.join(sorted(BACKENDS))}")
    if not isinstance(workers, int) or workers < 1:
        raise CyphercatError("workers", f"{workers!r} workers", "use --workers 1 or more")
    if name == "serial" and workers > 1:
        raise CyphercatError("workers", f"{workers} workers asked for, but the serial backend uses one",
                             "add --backend process (or ray), or drop --workers")
    if address is not None:
        if name != "ray":
            raise CyphercatError("ray_address", f"a Ray address is set but the backend is {name!r}",
                                 "add --backend ray, or drop --ray-address")
        if not _ADDRESS.match(address):
            raise CyphercatError("ray_address", f"{address!r} is not a Ray address",
                                 "use auto, HOST:PORT or ray://HOST:PORT")
    return BACKENDS[name](workers=workers, address=address, **kwargs)
