"""One root seed, fanned out by role through ``numpy.random.SeedSequence``.

A consumer asks for the generator of its role, e.g. ``seeds.numpy("reference", 7)``; the same root
and role always give the same stream, and different roles never share one. Library code never draws
from numpy's or torch's global generators. Where torch offers no generator argument (parameter
initialisation inside ``nn.Module`` constructors, dropout), :func:`torch_rng` runs the code on a
private copy of torch's global state and restores it afterwards, so nothing outside can tell.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import torch


def _role_key(role: tuple) -> tuple[int, ...]:
    key = []
    for part in role:
        if isinstance(part, int | np.integer):
            key.append(int(part))
        else:
            digest = hashlib.sha256(str(part).encode()).digest()
            key.append(int.from_bytes(digest[:4], "little"))
    return tuple(key)


class Seeds:
    """Deterministic seed tree: ``Seeds(0).sequence("split")`` is stable across runs and machines."""

    def __init__(self, root: int):
        self.root = int(root)

    def sequence(self, *role: object) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.root, spawn_key=_role_key(role))

    def numpy(self, *role: object) -> np.random.Generator:
        return np.random.default_rng(self.sequence(*role))

    def int(self, *role: object) -> int:
        return int(self.sequence(*role).generate_state(1, dtype=np.uint64)[0] >> 1)

    def torch(self, *role: object) -> torch.Generator:
        return torch.Generator().manual_seed(self.int(*role))


def as_generator(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """scikit-learn style ``random_state`` -> Generator, without touching global state."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


@contextlib.contextmanager
def torch_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed torch's global RNG inside the block only; the caller's state is restored on exit."""
    devices = []
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        devices = [dev.index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
