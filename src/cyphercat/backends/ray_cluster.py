"""The ``ray`` backend: groups as Ray tasks on a local instance or a cluster."""

from __future__ import annotations

import logging
from typing import Any

from cyphercat.backends.base import _Backend
from cyphercat.backends.jobs import GROUP_SIZE, JobEnv, _Task, run_task
from cyphercat.errors import CyphercatError


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


