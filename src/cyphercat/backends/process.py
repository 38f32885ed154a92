"""The ``process`` backend: groups trained by a local pool of spawned workers, with the data shared once."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import uuid
import weakref
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import torch

from cyphercat.backends.base import _Backend
from cyphercat.backends.jobs import GROUP_SIZE, JobEnv, _Task, run_task
from cyphercat.errors import CyphercatError

# Arrays smaller than this travel to process workers by pickling; larger ones through shared memory.
INLINE_BYTES = 1 << 20
RESUME_HINT = "finished models are cached; run the same command again to resume"

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
    for name in ("aux", "attacker_aux"):
        held = getattr(env, name)
        if held is None:
            continue
        changes[name] = dataclasses.replace(held, **{f: put(f"{name}.{f}", getattr(held, f))
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
    changes: dict[str, Any] = {f: arrays[f] for f in _ARRAY_FIELDS if f in arrays}
    for name in ("aux", "attacker_aux"):
        held = {f: arrays[f"{name}.{f}"] for f in _AUX_ARRAY_FIELDS if f"{name}.{f}" in arrays}
        if held:
            changes[name] = dataclasses.replace(getattr(env, name), **held)
    env = dataclasses.replace(env, **changes)
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


