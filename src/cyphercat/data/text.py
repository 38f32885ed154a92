"""Text benchmarks (AG News, SST, any labelled CSV) and the tokenizer they share.

A text loader returns the raw strings with a ``prepare`` step: the vocabulary is built from the
training records only (the indices the pipeline passes in), because a vocabulary built on every
record would tell the model which words the non-members use -- a leak that inflates attacks.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cyphercat.data.base import Dataset, dataset
from cyphercat.data.download import bad_file, find_root, locate, resolve_data_dir
from cyphercat.errors import CyphercatError

PAD_ID, OOV_ID = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
AG_NEWS_NAMES = ("World", "Sports", "Business", "Sci/Tech")


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens; punctuation is dropped, contractions stay one token ("don't")."""
    return _TOKEN.findall(text.lower())


def build_vocab(texts: Iterable[str], max_vocab: int = 20000, min_freq: int = 1) -> dict[str, int]:
    """Most frequent tokens first (ties alphabetical, so the result is deterministic); ids 0 and 1
    are padding and out-of-vocabulary, so ``len(vocab) + 2`` is the embedding size."""
    counts = Counter(tok for t in texts for tok in tokenize(t))
    ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return {w: i + 2 for i, w in enumerate(ranked[:max(max_vocab - 2, 0)])}


def encode(texts: Sequence[str], vocab: dict[str, int], max_len: int) -> np.ndarray:
    """Token ids N×max_len (int64), truncated at the end and right-padded with PAD_ID."""
    out = np.full((len(texts), max_len), PAD_ID, dtype=np.int64)
    for i, t in enumerate(texts):
        ids = [vocab.get(tok, OOV_ID) for tok in tokenize(t)][:max_len]
        out[i, :len(ids)] = ids
    return out


def _prepare(ds: Dataset, train_idx: np.ndarray, max_len: int, max_vocab: int, min_freq: int) -> Dataset:
    vocab = build_vocab(ds.x[np.asarray(train_idx)], max_vocab, min_freq)
    extra = {**ds.extra, "vocab_size": len(vocab) + 2, "pad_id": PAD_ID, "oov_id": OOV_ID, "max_len": max_len}
    return ds.replace(x=encode(ds.x, vocab, max_len), extra=extra, prepare=None)


def text_dataset(texts: Sequence[str], labels: Sequence[int], name: str, class_names: Sequence[str],
                 max_len: int = 64, max_vocab: int = 20000, min_freq: int = 1, **extra) -> Dataset:
    """Raw strings plus the ``prepare`` step that tokenizes them with a training-only vocabulary."""
    for field, value, low in (("max_len", max_len, 1), ("max_vocab", max_vocab, 3), ("min_freq", min_freq, 1)):
        if value < low:
            raise CyphercatError(f"dataset.params.{field}", f"{value} is below {low}", f"set {field} >= {low}")
    x = np.empty(len(texts), dtype=object)
    x[:] = list(texts)
    return Dataset(x=x, y=np.asarray(labels, dtype=np.int64), name=name, modality="text",
                   num_classes=len(class_names), class_names=tuple(class_names), extra=dict(extra),
                   prepare=functools.partial(_prepare, max_len=max_len, max_vocab=max_vocab, min_freq=min_freq))


def _read_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.reader(fh, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise bad_file(path, f"cannot read as UTF-8 CSV: {err}") from None


def _ag_here(folder: Path) -> Path | None:
    for cand in (folder, folder / "ag_news_csv"):
        if (cand / "train.csv").is_file() or (cand / "test.csv").is_file():
            return cand
    return None


@dataset("ag_news", "text", "AG News topic classification, 4 classes (CSV: class index, title, description)",
         present=lambda d: find_root("ag_news", d, _ag_here) is not None)
def ag_news(data_dir=None, split: str = "all", max_len: int = 64, max_vocab: int = 20000, min_freq: int = 1,
            max_records: int | None = None, download: bool = False) -> Dataset:
    folder = locate("ag_news", data_dir, _ag_here, "train.csv and test.csv from ag_news_csv", download)
    files = {"train": ["train.csv"], "test": ["test.csv"], "all": ["train.csv", "test.csv"]}.get(split)
    if files is None:
        raise CyphercatError("dataset.params.split", f"unknown split {split!r}", "use train, test or all")
    texts, labels = [], []
    for fname in files:
        path = folder / fname
        if not path.is_file():
            raise CyphercatError("dataset.data_dir", f"{path} is missing", f"add {fname} or set split")
        for line, row in enumerate(_read_rows(path), 1):
            if len(row) != 3 or not row[0].strip().isdigit() or not 1 <= int(row[0]) <= 4:
                raise bad_file(path, f"line {line} is not 'class index (1-4),title,description': {row[:3]}")
            texts.append(f"{row[1]} {row[2]}".replace("\\n", " ").replace("\\", " "))
            labels.append(int(row[0]) - 1)
    return text_dataset(texts[:max_records], labels[:max_records], "ag_news", AG_NEWS_NAMES, max_len,
                        max_vocab, min_freq)


def _sst_here(folder: Path) -> Path | None:
    for cand in (folder, folder / "SST-2"):
        if (cand / "train.tsv").is_file() or (cand / "dev.tsv").is_file():
            return cand
    return None


def read_sst(path: Path) -> tuple[list[str], list[int]]:
    """``sentence<TAB>label`` lines; a first line whose label is not an integer is a header."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise bad_file(path, f"cannot read as UTF-8 text: {err}") from None
    texts, labels = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        sentence, tab, label = line.rpartition("\t")
        if not tab or not label.strip().lstrip("-").isdigit():
            if n == 1 and tab:
                continue  # header, e.g. "sentence\tlabel"
            raise bad_file(path, f"line {n} is not 'sentence<TAB>integer label': {line[:60]!r}")
        texts.append(sentence)
        labels.append(int(label))
    if not texts:
        raise bad_file(path, "holds no labelled sentences")
    if min(labels) < 0:
        raise bad_file(path, f"negative label {min(labels)}", "labels must be 0..C-1")
    return texts, labels


@dataset("sst", "text", "Stanford Sentiment Treebank (GLUE SST-2 layout: sentence<TAB>label)",
         present=lambda d: find_root("sst", d, _sst_here) is not None)
def sst(data_dir=None, split: str = "all", max_len: int = 48, max_vocab: int = 20000, min_freq: int = 1,
        download: bool = False) -> Dataset:
    folder = locate("sst", data_dir, _sst_here, "train.tsv and dev.tsv (sentence<TAB>label)", download)
    files = {"train": ["train.tsv"], "test": ["dev.tsv"], "all": ["train.tsv", "dev.tsv"]}.get(split)
    if files is None:
        raise CyphercatError("dataset.params.split", f"unknown split {split!r}", "use train, test or all")
    texts, labels = [], []
    for fname in files:
        if not (folder / fname).is_file():
            raise CyphercatError("dataset.data_dir", f"{folder / fname} is missing", f"add {fname} or set split")
        t, y = read_sst(folder / fname)
        texts += t
        labels += y
    k = max(2, max(labels) + 1)
    names = ("negative", "positive") if k == 2 else tuple(str(i) for i in range(k))
    return text_dataset(texts, labels, "sst", names, max_len, max_vocab, min_freq)


def encode_labels(values: Sequence[str], path: Path, column: str) -> tuple[list[int], tuple[str, ...]]:
    """String labels -> 0..C-1; integer-looking labels keep their numeric order."""
    values = [v.strip() for v in values]
    if any(v == "" for v in values):
        raise bad_file(path, f"column {column!r} has empty labels", "fill or drop those rows")
    uniq = set(values)
    numeric = all(re.fullmatch(r"-?\d+", v) for v in uniq)
    names = tuple(sorted(uniq, key=(lambda v: int(v)) if numeric else str))
    index = {v: i for i, v in enumerate(names)}
    return [index[v] for v in values], names


def read_csv_columns(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    rows = _read_rows(path, delimiter)
    if len(rows) < 2:
        raise bad_file(path, "needs a header row and at least one record")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    for n, r in enumerate(body, 2):
        if len(r) != len(header):
            raise bad_file(path, f"row {n} has {len(r)} fields but the header has {len(header)}")
    return header, body


def csv_path(data_dir, path: str | None, field: str = "dataset.params.path") -> Path:
    if not path:
        raise CyphercatError(field, "no CSV file given", "set path to the CSV file (relative to data_dir)")
    p = resolve_data_dir(data_dir) / path
    if not p.is_file():
        raise CyphercatError(field, f"{p} does not exist", "check the file name and data_dir")
    return p


@dataset("text_csv", "text", "any CSV with a text column and a label column (string labels mapped to ints)")
def text_csv(data_dir=None, path: str | None = None, text_column: str | list[str] = "text",
             label_column: str = "label", delimiter: str = ",", max_len: int = 64, max_vocab: int = 20000,
             min_freq: int = 1) -> Dataset:
    p = csv_path(data_dir, path)
    header, rows = read_csv_columns(p, delimiter)
    text_cols = [text_column] if isinstance(text_column, str) else list(text_column)
    missing = [c for c in [*text_cols, label_column] if c not in header]
    if missing:
        raise bad_file(p, f"has no column(s) {missing}; its columns are {header}",
                       "set text_column/label_column to names in the header")
    cols = [header.index(c) for c in text_cols]
    texts = [" ".join(r[i] for i in cols) for r in rows]
    labels, names = encode_labels([r[header.index(label_column)] for r in rows], p, label_column)
    return text_dataset(texts, labels, "text_csv", names, max_len, max_vocab, min_freq, path=str(p))
