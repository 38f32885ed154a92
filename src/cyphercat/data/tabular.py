"""Tabular benchmarks: Purchase100 and Texas100 (the membership-inference versions), UCI Adult, and any
CSV with a label column. Numeric columns are standardised and categorical ones one-hot encoded.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from cyphercat.data.base import Dataset, dataset
from cyphercat.data.download import bad_file, find_root, locate
from cyphercat.data.text import csv_path, encode_labels, read_csv_columns
from cyphercat.errors import CyphercatError

MISSING = {"", "?", "NA", "N/A", "nan", "NaN"}
ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income")


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``features`` and ``labels`` (integers, or one-hot rows) from an .npz, never unpickling objects."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"features", "labels"} - set(z.files)
            if missing:
                raise bad_file(path, f"has arrays {sorted(z.files)} but not {sorted(missing)}",
                               "save the arrays under the names 'features' and 'labels'")
            x, y = z["features"], z["labels"]
    except CyphercatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise bad_file(path, f"cannot read as a numpy .npz without pickle: {err}") from None
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or not np.issubdtype(y.dtype, np.number):
        raise bad_file(path, f"features {x.shape} and labels {y.shape} {y.dtype} do not pair up",
                       "features must be N×F and labels N (or N×C one-hot)")
    return x.astype(np.float32), y.astype(np.int64)


def read_numeric(path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as err:
        raise bad_file(path, f"cannot read as comma-separated numbers: {err}") from None
    if arr.size == 0:
        raise bad_file(path, "is empty")
    return arr


def _benchmark(name: str, x: np.ndarray, y: np.ndarray, num_classes: int, path: Path) -> Dataset:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise bad_file(path, f"labels span {y.min()}..{y.max()} but {name} has {num_classes} classes",
                       "set num_classes to match the file")
    return Dataset(x=x, y=y, name=name, modality="tabular", num_classes=num_classes,
                   value_range=(float(x.min()), float(x.max())) if x.size else None,
                   class_names=tuple(str(i) for i in range(num_classes)), extra={"source": str(path)})


def _purchase_here(folder: Path) -> Path | None:
    return folder if (folder / "purchase100.npz").is_file() or (folder / "dataset_purchase").is_file() else None


@dataset("purchase100", "tabular", "Purchase100: 600 binary shopping features, 100 customer clusters "
         "(Shokri et al. 2017)", present=lambda d: find_root("purchase100", d, _purchase_here) is not None)
def purchase100(data_dir=None, num_classes: int = 100) -> Dataset:
    folder = locate("purchase100", data_dir, _purchase_here,
                    "purchase100.npz (arrays 'features', 'labels') or dataset_purchase (CSV rows, label first)")
    if (folder / "purchase100.npz").is_file():
        path = folder / "purchase100.npz"
        x, y = read_npz(path)
    else:
        path = folder / "dataset_purchase"
        arr = read_numeric(path)
        if arr.shape[1] < 2 or arr[:, 0].min() < 1 or np.any(arr[:, 0] != np.round(arr[:, 0])):
            raise bad_file(path, "the first column must be the class label, 1..C")
        x, y = arr[:, 1:], arr[:, 0].astype(np.int64) - 1
    return _benchmark("purchase100", x, y, num_classes, path)


def _texas_here(folder: Path) -> Path | None:
    for cand in (folder, folder / "texas" / "100"):
        if (cand / "texas100.npz").is_file() or ((cand / "feats").is_file() and (cand / "labels").is_file()):
            return cand
    return None


@dataset("texas100", "tabular", "Texas100: 6,169 binary hospital-discharge features, 100 procedure classes "
         "(Shokri et al. 2017)", present=lambda d: find_root("texas100", d, _texas_here) is not None)
def texas100(data_dir=None, num_classes: int = 100) -> Dataset:
    folder = locate("texas100", data_dir, _texas_here,
                    "texas100.npz (arrays 'features', 'labels') or texas/100/feats and texas/100/labels")
    if (folder / "texas100.npz").is_file():
        path = folder / "texas100.npz"
        x, y = read_npz(path)
    else:
        path = folder / "labels"
        x, labels = read_numeric(folder / "feats"), read_numeric(path).ravel()
        if len(labels) != len(x):
            raise bad_file(path, f"{len(labels)} labels for {len(x)} rows of feats", "use matching files")
        if labels.min() < 1 or np.any(labels != np.round(labels)):
            raise bad_file(path, "labels must be integers 1..C")
        y = labels.astype(np.int64) - 1
    return _benchmark("texas100", x, y, num_classes, path)


def encode_table(header: list[str], rows: list[list[str]], label_column: str, path: Path,
                 missing: str = "drop", sensitive: str | None = None,
                 drop_columns: tuple[str, ...] = ()) -> Dataset:
    """Rows of strings -> standardised numerics + one-hot categoricals (float32) and integer labels.

    ``sensitive`` names a two-valued column kept as one 0/1 feature (for attribute inference).
    """
    if missing not in ("drop", "category"):
        raise CyphercatError("dataset.params.missing", f"unknown {missing!r}", "use drop or category")
    absent = [c for c in [label_column, *drop_columns, *([sensitive] if sensitive else [])] if c not in header]
    if absent:
        raise bad_file(path, f"has no column(s) {absent}; its columns are {header}",
                       "name columns that appear in the header")
    feats = [c for c in header if c != label_column and c not in drop_columns]
    idx = {c: header.index(c) for c in header}
    rows = [[v.strip() for v in r] for r in rows]
    if missing == "drop":
        rows = [r for r in rows if not any(r[idx[c]] in MISSING for c in feats)]
    if not rows:
        raise bad_file(path, "has no complete records", "set missing: category to keep rows with gaps")
    blocks, names = [], []
    extra: dict = {}
    for c in feats:
        vals = [r[idx[c]] for r in rows]
        present = [v for v in vals if v not in MISSING]
        try:
            nums = np.array([float(v) if v not in MISSING else np.nan for v in vals], dtype=np.float64)
            numeric = len(present) > 0 and c != sensitive
        except ValueError:
            numeric = False
        if numeric:
            mean = np.nanmean(nums)
            nums = np.where(np.isnan(nums), mean, nums)
            std = nums.std()
            blocks.append(((nums - mean) / (std if std > 0 else 1.0))[:, None])
            names.append(c)
            continue
        vals = [v if v not in MISSING else "?" for v in vals]
        levels = sorted(set(vals))
        if c == sensitive:
            if len(levels) != 2:
                raise bad_file(path, f"sensitive column {c!r} has {len(levels)} values {levels[:5]}; need 2",
                               "pick a two-valued column as the sensitive attribute")
            extra.update(sensitive_feature=len(names), sensitive_values=[0.0, 1.0], sensitive_name=c,
                         sensitive_levels=levels)
            blocks.append(np.array([[v == levels[1]] for v in vals], dtype=np.float64))
            names.append(f"{c}={levels[1]}")
            continue
        code = {v: i for i, v in enumerate(levels)}
        onehot = np.zeros((len(vals), len(levels)))
        onehot[np.arange(len(vals)), [code[v] for v in vals]] = 1.0
        blocks.append(onehot)
        names += [f"{c}={v}" for v in levels]
    x = np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((len(rows), 0), np.float32)
    y, classes = encode_labels([r[idx[label_column]] for r in rows], path, label_column)
    return Dataset(x=x, y=np.asarray(y, dtype=np.int64), name="tabular_csv", modality="tabular",
                   num_classes=len(classes), value_range=(float(x.min()), float(x.max())) if x.size else None,
                   class_names=classes, extra={"feature_names": names, **extra})


def _adult_here(folder: Path) -> Path | None:
    return folder if (folder / "adult.data").is_file() or (folder / "adult.test").is_file() else None


@dataset("adult", "tabular", "UCI Adult census income (>50K or not): one-hot categoricals, standardised "
         "numericals", present=lambda d: find_root("adult", d, _adult_here) is not None)
def adult(data_dir=None, split: str = "all", missing: str = "drop", sensitive: str | None = None,
          download: bool = False) -> Dataset:
    folder = locate("adult", data_dir, _adult_here, "adult.data (and optionally adult.test) from UCI", download)
    files = {"train": ["adult.data"], "test": ["adult.test"], "all": ["adult.data", "adult.test"]}.get(split)
    if files is None:
        raise CyphercatError("dataset.params.split", f"unknown split {split!r}", "use train, test or all")
    rows = []
    for fname in files:
        path = folder / fname
        if not path.is_file():
            if split == "all" and fname == "adult.test":
                continue  # the test file is optional when loading everything there is
            raise CyphercatError("dataset.data_dir", f"{path} is missing", f"add {fname} or set split")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise bad_file(path, f"cannot read as text: {err}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("|"):  # adult.test opens with a '|1x3 Cross validator' line
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != 15 or fields[-1].rstrip(".") not in ("<=50K", ">50K"):
                raise bad_file(path, f"line {n} is not a 15-field adult record ending in <=50K or >50K")
            fields[-1] = fields[-1].rstrip(".")
            rows.append(fields)
    ds = encode_table(list(ADULT_COLUMNS), rows, "income", folder / files[0], missing, sensitive)
    return ds.replace(name="adult")


@dataset("tabular_csv", "tabular", "any CSV with a label column: numeric columns standardised, others one-hot")
def tabular_csv(data_dir=None, path: str | None = None, label_column: str = "label", delimiter: str = ",",
                missing: str = "category", sensitive: str | None = None,
                drop_columns: list[str] | None = None) -> Dataset:
    p = csv_path(data_dir, path)
    header, rows = read_csv_columns(p, delimiter)
    ds = encode_table(header, rows, label_column, p, missing, sensitive, tuple(drop_columns or ()))
    return ds.replace(extra={**ds.extra, "path": str(p)})
