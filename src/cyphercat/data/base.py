"""The in-memory dataset every loader returns, and the decorator that registers a loader."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cyphercat.errors import CyphercatError
from cyphercat.registry import DATASETS

MODALITIES = ("image", "audio", "text", "tabular")


@dataclass(frozen=True)
class Dataset:
    """Arrays plus what attacks and models need to know about them.

    ``x`` is float32 features (images as N×C×H×W, tabular as N×F, audio as log-mels N×1×M×T) or int64
    token ids for text. ``prepare`` fits preprocessing that must only see training records (a text
    vocabulary) and returns the transformed dataset; loaders without such a step leave it None.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    modality: str
    num_classes: int
    value_range: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[Dataset, np.ndarray], Dataset] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)

    def replace(self, **changes: Any) -> Dataset:
        return dataclasses.replace(self, **changes)

    def subset(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[idx], self.y[idx]


def check_dataset(ds: Dataset, field_name: str = "dataset") -> Dataset:
    """Reject what would silently poison training: NaNs, label/shape mismatches, empty classes."""
    if ds.modality not in MODALITIES:
        raise CyphercatError(field_name, f"modality {ds.modality!r} is not one of {MODALITIES}",
                             "set the loader's modality")
    raw_text = ds.modality == "text" and ds.prepare is not None and ds.x.ndim == 1
    if (ds.x.ndim < 2 and not raw_text) or len(ds.x) != len(ds.y):
        raise CyphercatError(field_name, f"features have shape {ds.x.shape} but labels have {ds.y.shape}",
                             "give one label per record and at least one feature")
    if ds.y.ndim != 1 or not np.issubdtype(ds.y.dtype, np.integer):
        raise CyphercatError(field_name, f"labels must be a 1-D integer array, got {ds.y.dtype} {ds.y.shape}",
                             "encode labels as integers 0..C-1")
    if np.issubdtype(ds.x.dtype, np.floating):
        bad = int(np.size(ds.x) - np.isfinite(ds.x).sum())
        if bad:
            raise CyphercatError(field_name, f"{bad} NaN or infinite values in the features of {ds.name!r}",
                                 "drop or impute those records before auditing")
    if len(ds.y) and (ds.y.min() < 0 or ds.y.max() >= ds.num_classes):
        raise CyphercatError(field_name, f"labels must lie in 0..{ds.num_classes - 1}, found {ds.y.min()}..{ds.y.max()}",
                             "re-encode the labels or set num_classes")
    return ds


def dataset(name: str, modality: str, description: str,
            present: Callable[[Path | None], bool] | None = None) -> Callable:
    """Register ``fn(data_dir, **params) -> Dataset`` under ``name``."""

    def deco(fn: Callable) -> Callable:
        fn.modality = modality
        fn.description = description
        fn.present = present or (lambda data_dir: True)
        return DATASETS.register(name)(fn)

    return deco


def load_dataset(name: str, params: dict[str, Any] | None = None, data_dir: Path | None = None,
                 field_name: str = "dataset") -> Dataset:
    loader = DATASETS.get(name, f"{field_name}.name")
    try:
        ds = loader(data_dir, **(params or {}))
    except TypeError as err:
        if "unexpected keyword" in str(err) or "got an unexpected" in str(err):
            raise CyphercatError(f"{field_name}.params", f"{name}: {err}",
                                 "remove the parameter or check its spelling") from None
        raise
    return check_dataset(ds, field_name)


def from_arrays(x: Any, y: Any, name: str = "custom", modality: str = "tabular",
                num_classes: int | None = None, value_range: tuple[float, float] | None = None) -> Dataset:
    """Bring your own arrays (or a torch ``Dataset``): the Python API's way in."""
    if hasattr(x, "__getitem__") and hasattr(x, "__len__") and y is None:
        xs, ys = zip(*(x[i] for i in range(len(x))), strict=True)
        x = np.stack([np.asarray(v) for v in xs])
        y = np.asarray([int(v) for v in ys])
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    y = np.asarray(y).astype(np.int64)
    k = int(num_classes if num_classes is not None else (y.max() + 1 if len(y) else 0))
    return check_dataset(Dataset(x=x, y=y, name=name, modality=modality, num_classes=k, value_range=value_range))
