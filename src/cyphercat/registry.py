"""Name -> factory registries for datasets, models, attacks and defenses.

Adding an entry is one file and one decorator. Each subpackage imports its modules on first lookup,
so a new file in ``cyphercat/attacks/`` is found without touching a central list.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from cyphercat.errors import CyphercatError


class Registry:
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self._package = package
        self._entries: dict[str, Any] = {}
        self._runtime: dict[str, Any] = {}
        self._loaded = package is None

    def add_runtime(self, name: str, obj: Any) -> Any:
        """Make ``obj`` findable by ``get(name)`` in this process without listing it among the built-in
        entries (objects handed to the Python API: an in-memory dataset, a model factory)."""
        self._runtime[name] = obj
        return obj

    def register(self, name: str, force: bool = False) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self._entries and not force and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass force=True to replace it")
            self._entries[name] = obj
            obj.registry_name = name
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self._package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self._package}.{mod.name}")

    def get(self, name: str, field: str | None = None) -> Any:
        self._load()
        if name in self._runtime:
            return self._runtime[name]
        if ":" in name and name not in self._entries:
            return _import_callable(name, field or self.kind, self.kind)
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CyphercatError(
                field or self.kind,
                f"unknown {self.kind} {name!r}",
                f"{hint}choose one of: {', '.join(sorted(self._entries))} (see `cyphercat list`)",
            )
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, Any]]:
        self._load()
        return iter(sorted(self._entries.items()))


DATASETS = Registry("dataset", "cyphercat.data")
MODELS = Registry("model", "cyphercat.models")
ATTACKS = Registry("attack", "cyphercat.attacks")
DEFENSES = Registry("defense", "cyphercat.defenses")


def _import_callable(path: str, field: str, kind: str) -> Any:
    """``package.module:callable`` -> the callable (bring-your-own datasets and models from a spec)."""
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise CyphercatError(field, f"cannot import module {module_name!r} for {kind} {path!r}: {err}",
                             "make the module importable (installed, or on PYTHONPATH)") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise CyphercatError(field, f"module {module_name!r} has no attribute {attr!r}",
                                 "write the spec name as package.module:callable")
    if not callable(obj):
        raise CyphercatError(field, f"{path!r} is not callable", "point at a factory function or class")
    return obj
