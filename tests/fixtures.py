"""Tiny copies of every benchmark dataset, written in the dataset's real on-disk format.

``write_fixture(name, root)`` writes files under ``root`` (used as ``data_dir``) and returns the
loader params to use: ``load_dataset(name, write_fixture(name, root), data_dir=root)``. The records
carry a class signal (a bright block per class, a tone per speaker, words per topic...), so a model
trained on a fixture can learn something, which an end-to-end audit needs.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

WRITERS: dict[str, Callable[..., dict]] = {}


def _writer(name: str):
    def deco(fn):
        WRITERS[name] = fn
        return fn
    return deco


def write_fixture(name: str, root: Path | str, per_class: int = 4, seed: int = 0, **kw) -> dict:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return WRITERS[name](root, per_class, np.random.default_rng(seed), **kw)


def class_images(k: int, n_classes: int, n: int, h: int, w: int, c: int, rng) -> np.ndarray:
    """uint8 N×C×H×W noise with a bright block whose position encodes the class."""
    img = rng.integers(0, 60, size=(n, c, h, w), dtype=np.uint8)
    col = int(k * (w - w // 4) / max(n_classes - 1, 1))
    img[:, :, h // 4: h // 2, col: col + w // 4] = 230
    return img


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def _idx_dataset(root: Path, name: str, per_class: int, rng, gz: bool = True) -> dict:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", per_class), ("t10k", 1)):
        x = np.concatenate([class_images(k, 10, n, 28, 28, 1, rng)[:, 0] for k in range(10)])
        y = np.repeat(np.arange(10, dtype=np.uint8), n)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
    return {}


@_writer("mnist")
def _mnist(root, per_class, rng, gz: bool = True):
    return _idx_dataset(root, "mnist", per_class, rng, gz)


@_writer("fashion_mnist")
def _fashion(root, per_class, rng, gz: bool = False):
    return _idx_dataset(root, "fashion_mnist", per_class, rng, gz)


def _pickle(path: Path, obj) -> None:
    # bytes keys, as in the original python-2 CIFAR pickles read with encoding="bytes"
    path.write_bytes(pickle.dumps(obj, protocol=4))


def _cifar_records(n_classes: int, per_class: int, rng) -> tuple[np.ndarray, list[int]]:
    x = np.concatenate([class_images(k, n_classes, per_class, 32, 32, 3, rng) for k in range(n_classes)])
    return x.reshape(len(x), 3072), [k for k in range(n_classes) for _ in range(per_class)]


@_writer("cifar10")
def _cifar10(root, per_class, rng):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        x, y = _cifar_records(10, max(1, per_class // 2), rng)
        _pickle(folder / name, {b"batch_label": f"batch {i}".encode(), b"labels": y, b"data": x,
                                b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(y))]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(folder / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072})
    return {}


@_writer("cifar100")
def _cifar100(root, per_class, rng, n_classes: int = 5):
    folder = root / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", per_class), ("test", 1)):
        x, fine = _cifar_records(n_classes, n, rng)
        _pickle(folder / name, {b"filenames": [b"f.png"] * len(fine), b"batch_label": name.encode(),
                                b"fine_labels": fine, b"coarse_labels": [k // 5 for k in fine], b"data": x})
    _pickle(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return {}


def _save_image(path: Path, img_chw: np.ndarray) -> None:
    from PIL import Image

    arr = img_chw[0] if img_chw.shape[0] == 1 else img_chw.transpose(1, 2, 0)
    Image.fromarray(arr).save(path)


@_writer("lfw")
def _lfw(root, per_class, rng, people: int = 3):
    base = root / "lfw" / "lfw"
    names = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper", "Kurt_Godel"][:people] + ["Rare_Person"]
    for k, person in enumerate(names):
        n = per_class if person != "Rare_Person" else 1  # below min_images: must be left out
        (base / person).mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(class_images(k, people, n, 40, 40, 3, rng)):
            _save_image(base / person / f"{person}_{j + 1:04d}.jpg", img)
    return {"min_images": per_class, "image_size": 16}


def write_pgm(path: Path, img: np.ndarray, binary: bool = True) -> None:
    h, w = img.shape
    if binary:
        path.write_bytes(f"P5\n# written by cyphercat tests\n{w} {h}\n255\n".encode() + img.astype(np.uint8).tobytes())
    else:
        rows = "\n".join(" ".join(str(int(v)) for v in row) for row in img)
        path.write_text(f"P2\n{w} {h}\n255\n{rows}\n")


@_writer("att_faces")
def _att(root, per_class, rng, people: int = 3):
    base = root / "att_faces"
    for k in range(people):
        (base / f"s{k + 1}").mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(class_images(k, people, per_class, 28, 23, 1, rng)):
            write_pgm(base / f"s{k + 1}" / f"{j + 1}.pgm", img[0], binary=j % 2 == 0)
    return {}


@_writer("image_folder")
def _image_folder(root, per_class, rng):
    base = root / "image_folder"
    for k, cls in enumerate(["bird", "cat", "dog"]):
        (base / cls).mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(class_images(k, 3, per_class, 12, 12, 3, rng)):
            ext = (".png", ".jpg", ".pgm")[j % 3]
            if ext == ".pgm":
                write_pgm(base / cls / f"{j}.pgm", img.mean(axis=0).astype(np.uint8))
            else:
                _save_image(base / cls / f"{j}{ext}", img)
    return {"path": "image_folder", "image_size": 8}


def tone(freq: float, seconds: float, sr: int, rng) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@_writer("librispeech")
def _librispeech(root, per_class, rng, speakers: int = 3, sr: int = 16000):
    import soundfile as sf

    base = root / "librispeech" / "LibriSpeech" / "dev-clean"
    for k, spk in enumerate([84, 174, 251, 422][:speakers]):
        chap = base / str(spk) / str(1000 + k)
        chap.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            sf.write(chap / f"{spk}-{1000 + k}-{j:04d}.flac", tone(300 + 400 * k, 0.3 + 0.1 * j, sr, rng), sr)
        (chap / f"{spk}-{1000 + k}.trans.txt").write_text("0000 HELLO\n")
    return {"seconds": 0.5}


@_writer("audio_folder")
def _audio_folder(root, per_class, rng, sr: int = 16000):
    import soundfile as sf

    base = root / "audio_folder"
    for k, word in enumerate(["no", "up", "yes"]):
        (base / word).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            sf.write(base / word / f"spk{j}_nohash_0.wav", tone(500 + 700 * k, 0.25, sr, rng), sr)
    (base / "_background_noise_").mkdir(exist_ok=True)
    sf.write(base / "_background_noise_" / "white.wav", rng.standard_normal(sr // 4).astype(np.float32) * 0.1, sr)
    return {"path": "audio_folder", "seconds": 0.25}


TOPIC_WORDS = [["election", "minister", "war"], ["match", "goal", "season"], ["stocks", "profit", "market"],
               ["software", "space", "chip"]]


def _sentence(words: list[str], rng) -> str:
    filler = ["the", "a", "report", "says", "today", "new"]
    return " ".join(rng.choice(words + filler, size=8))


@_writer("ag_news")
def _ag_news(root, per_class, rng):
    folder = root / "ag_news" / "ag_news_csv"
    folder.mkdir(parents=True, exist_ok=True)
    for fname, n in (("train.csv", per_class), ("test.csv", 1)):
        with open(folder / fname, "w", newline="") as fh:
            w = csv.writer(fh, quoting=csv.QUOTE_ALL)
            for k, words in enumerate(TOPIC_WORDS):
                for _ in range(n):
                    w.writerow([k + 1, _sentence(words, rng).title(), _sentence(words, rng) + ", \"quoted\"\\n"])
    return {"max_len": 16}


@_writer("sst")
def _sst(root, per_class, rng):
    folder = root / "sst" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    words = [["awful", "boring", "dull"], ["great", "moving", "superb"]]
    for fname, n, header in (("train.tsv", per_class, True), ("dev.tsv", 2, False)):
        lines = ["sentence\tlabel"] if header else []
        lines += [f"{_sentence(words[k], rng)} \t{k}" for k in (0, 1) for _ in range(n)]
        (folder / fname).write_text("\n".join(lines) + "\n")
    return {"max_len": 12}


@_writer("text_csv")
def _text_csv(root, per_class, rng):
    folder = root / "text_csv"
    folder.mkdir(parents=True, exist_ok=True)
    words = {"neg": ["bad", "slow"], "neutral": ["okay", "fine"], "pos": ["love", "fast"]}
    with open(folder / "reviews.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "review", "sentiment"])
        for i, (lab, ws) in enumerate((lab, ws) for lab, ws in words.items() for _ in range(per_class)):
            w.writerow([i, _sentence(ws, rng), lab])
    return {"path": "text_csv/reviews.csv", "text_column": "review", "label_column": "sentiment", "max_len": 10}


def _binary_table(n_classes: int, per_class: int, n_features: int, rng) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(n_classes), per_class)
    protos = rng.random((n_classes, n_features)) < 0.3
    flips = rng.random((len(y), n_features)) < 0.05
    return (protos[y] ^ flips).astype(np.float32), y


@_writer("purchase100")
def _purchase(root, per_class, rng, fmt: str = "npz", n_classes: int = 5):
    folder = root / "purchase100"
    folder.mkdir(parents=True, exist_ok=True)
    x, y = _binary_table(n_classes, per_class, 600, rng)
    if fmt == "npz":
        np.savez(folder / "purchase100.npz", features=x, labels=np.eye(100, dtype=np.float32)[y])
    else:  # the original release: label (1-based) first, then the 600 features
        rows = [",".join([str(lab + 1)] + [str(int(v)) for v in r]) for r, lab in zip(x, y, strict=True)]
        (folder / "dataset_purchase").write_text("\n".join(rows) + "\n")
    return {}


@_writer("texas100")
def _texas(root, per_class, rng, fmt: str = "text", n_classes: int = 5):
    folder = root / "texas100"
    x, y = _binary_table(n_classes, per_class, 200, rng)
    if fmt == "npz":
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "texas100.npz", features=x, labels=y)
    else:
        folder = folder / "texas" / "100"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "feats").write_text("\n".join(",".join(str(int(v)) for v in r) for r in x) + "\n")
        (folder / "labels").write_text("\n".join(str(lab + 1) for lab in y) + "\n")
    return {}


def _adult_row(k: int, i: int, rng, test: bool) -> str:
    work = ["Private", "Self-emp-inc", "?"][i % 3]
    sex = ["Female", "Male"][(i + k) % 2]
    age = 25 + 20 * k + int(rng.integers(0, 8))
    label = (">50K" if k else "<=50K") + ("." if test else "")
    fields = [age, work, 100000 + 1000 * i, "Bachelors", 13, "Never-married", "Sales", "Husband", "White",
              sex, 5000 * k, 0, 40 + 5 * k, "United-States", label]
    return ", ".join(str(f) for f in fields)


@_writer("adult")
def _adult(root, per_class, rng):
    folder = root / "adult"
    folder.mkdir(parents=True, exist_ok=True)
    n = per_class + per_class // 2 + 1  # a third of the rows carry '?' and are dropped by default
    train = [_adult_row(k, i, rng, False) for k in (0, 1) for i in range(n)]
    test = [_adult_row(k, i, rng, True) for k in (0, 1) for i in range(2)]
    (folder / "adult.data").write_text("\n".join(train) + "\n\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test) + "\n")
    return {}


@_writer("tabular_csv")
def _tabular_csv(root, per_class, rng):
    folder = root / "tabular_csv"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "patients.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "age", "smoker", "city", "weight", "outcome"])
        for i in range(3 * per_class):
            k = i % 3
            w.writerow([i, 30 + 10 * k + int(rng.integers(0, 5)), ["yes", "no"][i % 2], ["Oslo", "Lima", ""][k],
                        "" if i == 0 else round(60 + 5 * k + float(rng.random()), 2), ["low", "mid", "high"][k]])
    return {"path": "tabular_csv/patients.csv", "label_column": "outcome", "drop_columns": ["patient_id"]}
