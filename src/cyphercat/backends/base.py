"""The driver side every backend shares (cache look-ups, grouping, yielding one model at a time) and the
``serial`` backend, which trains in this process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from cyphercat.backends.jobs import GROUP_SIZE, JobEnv, TrainJob, _Task, job_key, plan_groups, run_task
from cyphercat.cache import ModelCache
from cyphercat.errors import CyphercatError


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


