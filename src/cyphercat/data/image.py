"""Image benchmarks read from their original on-disk formats: IDX (MNIST), python pickle batches
(CIFAR, through an unpickler that only rebuilds numpy arrays), PGM (AT&T faces) and JPEG/PNG folders.

Every loader returns float32 N×C×H×W scaled to [0, 1].
"""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from cyphercat.data.base import Dataset, dataset
from cyphercat.data.download import bad_file, find_root, locate, resolve_data_dir
from cyphercat.errors import CyphercatError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".pgm")
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")


# ---------------------------------------------------------------- file formats

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array of the shape its header declares."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise bad_file(path, f"cannot read IDX file: {err}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise bad_file(path, "not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise bad_file(path, "IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise bad_file(path, f"IDX header declares {dims} = {int(np.prod(dims))} bytes but the file holds {len(body)}")
    return np.frombuffer(body, np.uint8).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; a pickle can run any code, so only numpy's array rebuilders are allowed."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def __init__(self, fh, path: Path):
        super().__init__(fh, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise bad_file(self._path, f"the pickle refers to {module}.{name}, which a CIFAR batch never holds",
                           "use the official CIFAR python batches; cyphercat only unpickles numpy arrays")
        return _reconstruct if name == "_reconstruct" else getattr(np, name)


def read_cifar_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, path).load()
    except CyphercatError:
        raise
    except Exception as err:  # truncated or garbled pickles raise many different types
        raise bad_file(path, f"cannot unpickle: {type(err).__name__}: {err}") from None
    if not isinstance(obj, dict):
        raise bad_file(path, f"expected a dict of arrays, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_pgm(path: Path) -> np.ndarray:
    """A binary (P5) or ASCII (P2) PGM as a float32 H×W array in [0, 1]."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise bad_file(path, f"cannot read: {err}") from None
    header, pos = [], 0
    while len(header) < 4:  # magic, width, height, maxval, with '#' comments anywhere in between
        m = re.compile(rb"\s*(#[^\n]*\n\s*)*([^\s#]+)").match(raw, pos)
        if not m:
            raise bad_file(path, "PGM header is truncated")
        header.append(m.group(2))
        pos = m.end()
    magic = header[0]
    try:
        w, h, maxval = (int(v) for v in header[1:])
    except ValueError:
        raise bad_file(path, f"PGM header has non-numeric fields {header[1:]}") from None
    if magic not in (b"P5", b"P2") or not (0 < maxval < 65536) or w <= 0 or h <= 0:
        raise bad_file(path, f"not a greyscale PGM (magic {magic!r}, maxval {maxval})")
    if magic == b"P5":
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        body = raw[pos + 1:]  # exactly one whitespace byte separates header and pixels
        if len(body) < w * h * dtype.itemsize:
            raise bad_file(path, f"PGM is truncated: {len(body)} bytes of pixels, {w * h * dtype.itemsize} expected")
        pixels = np.frombuffer(body, dtype, count=w * h)
    else:
        try:
            pixels = np.array(raw[pos:].split(), dtype=np.int64)
        except ValueError:
            raise bad_file(path, "ASCII PGM holds a non-numeric pixel") from None
        if pixels.size < w * h:
            raise bad_file(path, f"PGM is truncated: {pixels.size} pixels, {w * h} expected")
        pixels = pixels[:w * h]
    return (pixels.astype(np.float32) / maxval).reshape(h, w)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise CyphercatError("dataset", "reading JPEG/PNG needs Pillow", "pip install Pillow") from None
    return Image


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h <= 0 or w <= 0:
        raise CyphercatError("dataset.params.image_size", f"{image_size} is not a positive size",
                             "give an int or [height, width]")
    return int(h), int(w)


def read_image(path: Path, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """Any supported image file as float32 C×H×W in [0, 1], resized when ``size`` is given."""
    Image = _pil()
    if path.suffix.lower() == ".pgm":
        arr = read_pgm(path)
        img = Image.fromarray((arr * 255).round().astype(np.uint8))
    else:
        try:
            with Image.open(path) as im:
                img = im.convert("L" if grayscale else "RGB")
                img.load()
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            raise bad_file(path, f"cannot decode image: {err}") from None
    if path.suffix.lower() == ".pgm" and not grayscale:
        img = img.convert("RGB")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _stack(images: list[np.ndarray], paths: list[Path]) -> np.ndarray:
    first = images[0].shape
    for img, p in zip(images, paths, strict=True):
        if img.shape != first:
            raise bad_file(p, f"image is {img.shape} but the first one is {first}",
                           "set image_size so every image is resized to one size")
    return np.stack(images).astype(np.float32)


def _image_ds(x, y, name, class_names, **extra) -> Dataset:
    return Dataset(x=np.ascontiguousarray(x, dtype=np.float32), y=np.asarray(y, dtype=np.int64), name=name,
                   modality="image", num_classes=len(class_names), value_range=(0.0, 1.0),
                   class_names=tuple(class_names), extra=extra)


def _split_parts(split: str, train: list, test: list) -> list:
    parts = {"train": train, "test": test, "all": train + test}
    if split not in parts:
        raise CyphercatError("dataset.params.split", f"unknown split {split!r}", "use train, test or all")
    return parts[split]


# ---------------------------------------------------------------- MNIST family

def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_here(torchvision_name: str):
    """Our layout, or torchvision's (``MNIST/raw``), so an existing download can be reused."""
    def is_here(folder: Path) -> Path | None:
        for cand in (folder, folder / "raw", folder / torchvision_name / "raw"):
            if _idx_file(cand, "train-images-idx3-ubyte") or _idx_file(cand, "t10k-images-idx3-ubyte"):
                return cand
        return None
    return is_here


_mnist_here, _fashion_here = _idx_here("MNIST"), _idx_here("FashionMNIST")


def _load_idx_pair(name: str, data_dir, split: str, download: bool, class_names) -> Dataset:
    is_here = _mnist_here if name == "mnist" else _fashion_here
    folder = locate(name, data_dir, is_here, "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not)", download)
    xs, ys = [], []
    for prefix in _split_parts(split, ["train"], ["t10k"]):
        img_p = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
        lab_p = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
        if img_p is None or lab_p is None:
            raise CyphercatError("dataset.data_dir", f"{prefix}-images/labels IDX files missing in {folder}",
                                 f"add both {prefix} files or set split to the part you have")
        images, labels = read_idx(img_p), read_idx(lab_p)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise bad_file(lab_p, f"{len(labels)} labels for images of shape {images.shape}")
        if labels.max(initial=0) >= len(class_names):
            raise bad_file(lab_p, f"label {int(labels.max())} is outside 0..{len(class_names) - 1}")
        xs.append(images[:, None].astype(np.float32) / 255.0)
        ys.append(labels)
    return _image_ds(np.concatenate(xs), np.concatenate(ys), name, class_names)


@dataset("mnist", "image", "MNIST handwritten digits, 70,000 28x28 greyscale (IDX files)",
         present=lambda d: find_root("mnist", d, _mnist_here) is not None)
def mnist(data_dir=None, split: str = "all", download: bool = False) -> Dataset:
    return _load_idx_pair("mnist", data_dir, split, download, tuple(str(i) for i in range(10)))


@dataset("fashion_mnist", "image", "Fashion-MNIST, 70,000 28x28 greyscale clothing images (IDX files)",
         present=lambda d: find_root("fashion_mnist", d, _fashion_here) is not None)
def fashion_mnist(data_dir=None, split: str = "all", download: bool = False) -> Dataset:
    return _load_idx_pair("fashion_mnist", data_dir, split, download, FASHION_NAMES)


# ---------------------------------------------------------------- CIFAR

def _here(*names: str, subdirs: tuple[str, ...] = ()):
    def is_here(folder: Path) -> Path | None:
        for cand in (folder, *(folder / s for s in subdirs)):
            if all((cand / n).exists() for n in names):
                return cand
        return None
    return is_here


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise bad_file(path, f"expected 'data' (array) and '{label_key}' entries, found {sorted(batch)}")
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise bad_file(path, f"'data' is {data.dtype} {data.shape} with {len(labels)} labels; "
                             "expected uint8 N×3072 with N labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _names(path: Path, key: str) -> tuple[str, ...]:
    meta = read_cifar_pickle(path)
    if key not in meta:
        raise bad_file(path, f"no '{key}' entry")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[key])


@dataset("cifar10", "image", "CIFAR-10, 60,000 32x32 colour images in 10 classes (python pickle batches)",
         present=lambda d: find_root("cifar10", d, _here("data_batch_1", subdirs=("cifar-10-batches-py",)))
         is not None)
def cifar10(data_dir=None, split: str = "all", download: bool = False) -> Dataset:
    files = [f"data_batch_{i}" for i in range(1, 6)]
    folder = locate("cifar10", data_dir, _here(*files, "test_batch", "batches.meta",
                                               subdirs=("cifar-10-batches-py",)),
                    "the cifar-10-batches-py folder (data_batch_1..5, test_batch, batches.meta)", download)
    parts = [_cifar_batch(folder / f, "labels") for f in _split_parts(split, files, ["test_batch"])]
    names = _names(folder / "batches.meta", "label_names")
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _image_ds(x.astype(np.float32) / 255.0, y, "cifar10", names)


@dataset("cifar100", "image", "CIFAR-100, 60,000 32x32 colour images in 100 (or 20 coarse) classes",
         present=lambda d: find_root("cifar100", d, _here("train", subdirs=("cifar-100-python",))) is not None)
def cifar100(data_dir=None, split: str = "all", label_type: str = "fine", download: bool = False) -> Dataset:
    if label_type not in ("fine", "coarse"):
        raise CyphercatError("dataset.params.label_type", f"unknown {label_type!r}", "use fine or coarse")
    folder = locate("cifar100", data_dir, _here("train", "test", "meta", subdirs=("cifar-100-python",)),
                    "the cifar-100-python folder (train, test, meta)", download)
    parts = [_cifar_batch(folder / f, f"{label_type}_labels") for f in _split_parts(split, ["train"], ["test"])]
    names = _names(folder / "meta", f"{label_type}_label_names")
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if y.max(initial=0) >= len(names):
        raise bad_file(folder / "meta", f"{len(names)} class names but label {int(y.max())} appears")
    return _image_ds(x.astype(np.float32) / 255.0, y, "cifar100", names)


# ---------------------------------------------------------------- folders of faces and images

def class_folders(root: Path, exts: tuple[str, ...]) -> list[tuple[str, list[Path]]]:
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        out.append((sub.name, files))
    return out


def _lfw_here(folder: Path) -> Path | None:
    for cand in (folder / "lfw", folder / "lfw_funneled", folder / "lfw-deepfunneled", folder):
        if cand.is_dir() and any(cand.glob("*/*.jpg")):
            return cand
    return None


@dataset("lfw", "image", "Labeled Faces in the Wild: people with at least min_images photos, greyscale, resized",
         present=lambda d: find_root("lfw", d, _lfw_here) is not None)
def lfw(data_dir=None, min_images: int = 20, image_size: int | list[int] = 32, max_per_person: int | None = None,
        download: bool = False) -> Dataset:
    root = locate("lfw", data_dir, _lfw_here, "the lfw folder (one folder of .jpg files per person)", download)
    people = [(n, f[:max_per_person]) for n, f in class_folders(root, (".jpg", ".jpeg"))
              if len(f) >= min_images]
    if not people:
        raise CyphercatError("dataset.params.min_images", f"no person in {root} has {min_images} or more images",
                             "lower min_images")
    size = _size(image_size)
    paths = [p for _, files in people for p in files]
    y = [k for k, (_, files) in enumerate(people) for _ in files]
    x = _stack([read_image(p, size, grayscale=True) for p in paths], paths)
    return _image_ds(x, y, "lfw", [n for n, _ in people])


def _att_here(folder: Path) -> Path | None:
    for cand in (folder, folder / "att_faces", folder / "orl_faces"):
        if (cand / "s1").is_dir():
            return cand
    return None


@dataset("att_faces", "image", "AT&T (ORL) faces: 40 people x 10 greyscale 112x92 PGM images",
         present=lambda d: find_root("att_faces", d, _att_here) is not None)
def att_faces(data_dir=None, image_size: int | list[int] | None = None) -> Dataset:
    root = locate("att_faces", data_dir, _att_here, "folders s1..s40, each holding 1.pgm..10.pgm")
    subjects = sorted((p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"s\d+", p.name)),
                      key=lambda p: int(p.name[1:]))
    size = _size(image_size)
    paths, y, names = [], [], []
    for k, sub in enumerate(subjects):
        files = sorted(sub.glob("*.pgm"), key=lambda p: (len(p.stem), p.stem))
        if not files:
            raise bad_file(sub, "holds no .pgm images", "every sN folder must hold that person's PGM files")
        paths += files
        y += [k] * len(files)
        names.append(sub.name)
    if size is None:
        x = _stack([read_pgm(p)[None] for p in paths], paths)
    else:
        x = _stack([read_image(p, size, grayscale=True) for p in paths], paths)
    return _image_ds(x, y, "att_faces", names)


@dataset("image_folder", "image", "any folder with one subfolder of PNG/JPEG/PGM images per class")
def image_folder(data_dir=None, path: str | None = None, image_size: int | list[int] | None = None,
                 grayscale: bool = False, max_per_class: int | None = None) -> Dataset:
    base = resolve_data_dir(data_dir)
    root = base / path if path is not None else base
    if not root.is_dir():
        raise CyphercatError("dataset.params.path", f"{root} is not a folder",
                             "point path (or data_dir) at a folder with one subfolder per class")
    classes = [(n, f[:max_per_class]) for n, f in class_folders(root, IMAGE_EXTS)]
    if not classes:
        raise bad_file(root, "has no class subfolders", "put each class's images in its own subfolder")
    for n, files in classes:
        if not files:
            raise bad_file(root / n, "holds no PNG/JPEG/PGM images", "remove the folder or add images")
    size = _size(image_size)
    paths = [p for _, files in classes for p in files]
    y = [k for k, (_, files) in enumerate(classes) for _ in files]
    x = _stack([read_image(p, size, grayscale) for p in paths], paths)
    return _image_ds(x, y, "image_folder", [n for n, _ in classes], root=str(root))
