"""Training jobs and the backends that run them: ``serial``, ``process`` (a local pool) and ``ray``.

See :mod:`cyphercat.backends.jobs` for what a job is and why results never depend on the backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cyphercat.backends.base import SerialBackend, _Backend
from cyphercat.backends.jobs import (
    GROUP_SIZE,
    JobEnv,
    ModelBuilder,
    TrainJob,
    job_key,
    plan_groups,
    run_task,
    train_one,
)
from cyphercat.backends.process import ProcessBackend
from cyphercat.backends.ray_cluster import RayBackend
from cyphercat.errors import CyphercatError

__all__ = ["GROUP_SIZE", "JobEnv", "ModelBuilder", "ProcessBackend", "RayBackend", "SerialBackend", "TrainJob",
           "get_backend", "job_key", "plan_groups", "run_task", "train_one"]

_ADDRESS = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9_.\-]+:\d{1,5})$")

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
