"""Every benchmark loader on a tiny fixture in its real format, and the bad inputs each must reject."""

from __future__ import annotations

import gzip
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cyphercat.data import load_dataset  # noqa: E402
from cyphercat.data.audio import log_mel, mel_filterbank  # noqa: E402
from cyphercat.data.download import default_data_dir, resolve_data_dir  # noqa: E402
from cyphercat.data.text import OOV_ID, PAD_ID, build_vocab, tokenize  # noqa: E402
from cyphercat.errors import CyphercatError  # noqa: E402
from cyphercat.registry import DATASETS  # noqa: E402
from fixtures import WRITERS, tone, write_fixture, write_pgm  # noqa: E402

OURS = sorted(n for n, fn in DATASETS.items() if fn.__module__.rsplit(".", 1)[-1]
              in ("image", "audio", "text", "tabular"))


def _load(name, root, params=None, **kw):
    return load_dataset(name, {**(params or {}), **kw}, data_dir=root)


def test_every_loader_has_a_fixture():
    assert set(OURS) == set(WRITERS)
    assert len(OURS) == 16


@pytest.mark.parametrize("name", OURS)
def test_conformance(name, tmp_path):
    params = write_fixture(name, tmp_path)
    loader = DATASETS.get(name)
    ds = _load(name, tmp_path, params)
    assert ds.modality == loader.modality
    assert ds.y.dtype == np.int64 and ds.y.ndim == 1 and len(ds.y) == len(ds.x) > 0
    assert 0 <= ds.y.min() and ds.y.max() < ds.num_classes
    assert ds.class_names is not None and len(ds.class_names) == ds.num_classes
    assert len(np.unique(ds.y)) >= 2
    if ds.modality == "text":
        assert ds.x.ndim == 1 and ds.x.dtype == object and isinstance(ds.x[0], str)
        ds = ds.prepare(ds, np.arange(len(ds)))
        assert ds.prepare is None and ds.x.dtype == np.int64 and ds.x.ndim == 2
        assert ds.x.min() >= 0 and ds.x.max() < ds.extra["vocab_size"] and ds.extra["pad_id"] == PAD_ID
        assert ds.x.shape[1] == params["max_len"]
    else:
        assert ds.x.dtype == np.float32 and np.isfinite(ds.x).all()
        lo, hi = ds.value_range
        assert lo <= ds.x.min() and ds.x.max() <= hi
    if ds.modality == "image":
        assert ds.x.ndim == 4 and ds.x.shape[1] in (1, 3) and ds.value_range == (0.0, 1.0)
        assert ds.x.min() >= 0 and ds.x.max() <= 1 and ds.x.max() > 0.8  # scaled, not all zero
    if ds.modality == "audio":
        assert ds.x.ndim == 4 and ds.x.shape[1:3] == (1, 40)
    if ds.modality == "tabular":
        assert ds.x.ndim == 2
    assert loader.present(tmp_path)
    if name not in ("image_folder", "audio_folder", "text_csv", "tabular_csv"):  # those take a path, not a layout
        assert not loader.present(tmp_path / "empty")


def test_fixture_shapes_match_the_real_datasets(tmp_path):
    for name, shape in (("mnist", (1, 28, 28)), ("fashion_mnist", (1, 28, 28)), ("cifar10", (3, 32, 32)),
                        ("cifar100", (3, 32, 32)), ("purchase100", (600,))):
        assert _load(name, tmp_path, write_fixture(name, tmp_path)).input_shape == shape
    ds = _load("cifar100", tmp_path, label_type="coarse")
    assert ds.num_classes == 20 and ds.class_names[0] == "coarse0"
    assert len(_load("mnist", tmp_path, split="test")) == 10 and len(_load("mnist", tmp_path, split="train")) == 40


def test_lfw_keeps_only_people_with_min_images(tmp_path):
    params = write_fixture("lfw", tmp_path, per_class=3)
    ds = _load("lfw", tmp_path, params)
    assert "Rare_Person" not in ds.class_names and ds.num_classes == 3
    assert _load("lfw", tmp_path, params, min_images=1).num_classes == 4
    with pytest.raises(CyphercatError, match="min_images"):
        _load("lfw", tmp_path, params, min_images=50)


def test_alternative_on_disk_forms(tmp_path):
    a = _load("purchase100", tmp_path / "a", write_fixture("purchase100", tmp_path / "a", fmt="npz"))
    b = _load("purchase100", tmp_path / "b", write_fixture("purchase100", tmp_path / "b", fmt="text"))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    c = _load("texas100", tmp_path / "c", write_fixture("texas100", tmp_path / "c", fmt="npz"))
    d = _load("texas100", tmp_path / "d", write_fixture("texas100", tmp_path / "d", fmt="text"))
    np.testing.assert_array_equal(c.y, d.y)
    # pointing data_dir straight at the dataset's folder works too
    assert len(_load("mnist", tmp_path / "m" / "mnist", write_fixture("mnist", tmp_path / "m"))) == 50


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("CYPHERCAT_DATA", raising=False)
    assert default_data_dir() == Path.home() / ".cache" / "cyphercat" / "data"
    monkeypatch.setenv("CYPHERCAT_DATA", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path and resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    write_fixture("sst", tmp_path)
    assert len(load_dataset("sst", {})) == 12  # found through the environment variable


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(CyphercatError) as err:
        _load("mnist", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte" in msg and "cyphercat data fetch mnist" in msg
    with pytest.raises(CyphercatError, match="no official download"):
        _load("purchase100", tmp_path)
    with pytest.raises(CyphercatError, match="s1..s40"):
        _load("att_faces", tmp_path)


# ---------------------------------------------------------------- text

def test_vocabulary_is_built_from_training_records_only(tmp_path):
    ds = _load("text_csv", tmp_path, write_fixture("text_csv", tmp_path))
    train = np.flatnonzero(ds.y != 2)  # every 'pos' review is held out of the vocabulary
    out = ds.prepare(ds, train)
    pos_rows = out.x[ds.y == 2]
    assert {"love", "fast"} & set(build_vocab(ds.x[train])) == set()
    assert (pos_rows[pos_rows != PAD_ID] == OOV_ID).sum() > 0
    full = ds.prepare(ds, np.arange(len(ds)))
    assert full.extra["vocab_size"] > out.extra["vocab_size"]


def test_tokenizer_and_vocab_limits():
    assert tokenize("Don't PANIC, it's 42!") == ["don't", "panic", "it's", "42"]
    vocab = build_vocab(["b a a", "c a b", "d"], max_vocab=4, min_freq=1)
    assert vocab == {"a": 2, "b": 3}
    assert build_vocab(["b a a", "c a b", "d"], min_freq=2) == {"a": 2, "b": 3}


def test_ag_news_text_joins_title_and_description(tmp_path):
    ds = _load("ag_news", tmp_path, write_fixture("ag_news", tmp_path))
    assert ds.num_classes == 4 and '"quoted"' in ds.x[0] and "\\n" not in ds.x[0]


# ---------------------------------------------------------------- tabular

def test_adult_encoding(tmp_path):
    write_fixture("adult", tmp_path)
    dropped = _load("adult", tmp_path)
    kept = _load("adult", tmp_path, missing="category")
    assert len(kept) > len(dropped)
    assert "workclass=?" in kept.extra["feature_names"] and "workclass=?" not in dropped.extra["feature_names"]
    names = dropped.extra["feature_names"]
    age = dropped.x[:, names.index("age")]
    assert abs(age.mean()) < 1e-5 and abs(age.std() - 1) < 1e-4  # standardised
    sens = _load("adult", tmp_path, sensitive="sex")
    col = sens.x[:, sens.extra["sensitive_feature"]]
    assert set(np.unique(col)) == {0.0, 1.0} and sens.extra["sensitive_levels"] == ["Female", "Male"]
    assert len(_load("adult", tmp_path, split="test")) == 4  # trailing '.' on labels and the '|1x3' line handled
    with pytest.raises(CyphercatError, match="need 2"):
        _load("adult", tmp_path, sensitive="age")


def test_tabular_csv_types(tmp_path):
    ds = _load("tabular_csv", tmp_path, write_fixture("tabular_csv", tmp_path))
    names = ds.extra["feature_names"]
    assert "patient_id" not in names and "city=?" in names and "smoker=yes" in names and "weight" in names
    assert ds.class_names == ("high", "low", "mid")


# ---------------------------------------------------------------- audio features

def test_log_mel_puts_a_tone_in_the_right_band():
    sr = 16000
    fb = mel_filterbank(40, 400, sr)
    assert fb.shape == (40, 201) and fb.max() <= 1.0 and (fb.sum(axis=1) > 0).all()
    for freq in (300.0, 1000.0, 4000.0):
        feats = log_mel(tone(freq, 0.5, sr, np.random.default_rng(0))[None], sample_rate=sr)
        assert feats.shape == (1, 1, 40, 51) and feats.dtype == np.float32
        peak = int(feats[0, 0].mean(axis=1).argmax())
        assert fb[peak, int(round(freq / (sr / 400)))] > 0.3  # the loudest band is the one holding freq


# ---------------------------------------------------------------- bad inputs: each names the file

def _raises_naming(path, fn, match=None):
    with pytest.raises(CyphercatError) as err:
        fn()
    assert str(path) in str(err.value), str(err.value)
    if match:
        assert match in str(err.value), str(err.value)


def test_idx_truncated_or_corrupt(tmp_path):
    write_fixture("mnist", tmp_path)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:-100]))
    _raises_naming(p, lambda: _load("mnist", tmp_path), "IDX header declares")
    p.write_bytes(gzip.compress(raw)[:-50])  # truncated gzip stream
    _raises_naming(p, lambda: _load("mnist", tmp_path))
    p.write_bytes(b"\x00\x00\x0d\x03" + raw[4:])  # float IDX: not MNIST
    _raises_naming(p, lambda: _load("mnist", tmp_path), "magic")


class Sneaky:
    def __reduce__(self):
        return (os.system, ("echo pwned > sneaky_marker",))


class Custom:
    pass


@pytest.mark.parametrize("payload", [Sneaky(), {b"data": Custom(), b"labels": [0]}], ids=["os.system", "class"])
def test_cifar_pickle_with_anything_but_arrays_is_refused(tmp_path, payload, monkeypatch):
    write_fixture("cifar10", tmp_path)
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    p.write_bytes(pickle.dumps(payload, protocol=2))
    _raises_naming(p, lambda: _load("cifar10", tmp_path), "only unpickles numpy arrays")
    assert not (tmp_path / "sneaky_marker").exists()


def test_cifar_truncated_and_wrong_shapes(tmp_path):
    write_fixture("cifar100", tmp_path)
    p = tmp_path / "cifar100" / "cifar-100-python" / "train"
    good = p.read_bytes()
    p.write_bytes(good[: len(good) // 2])
    _raises_naming(p, lambda: _load("cifar100", tmp_path), "cannot unpickle")
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}))
    _raises_naming(p, lambda: _load("cifar100", tmp_path), "uint8 N×3072")
    p.write_bytes(pickle.dumps([1, 2, 3]))
    _raises_naming(p, lambda: _load("cifar100", tmp_path), "expected a dict")


def test_broken_images(tmp_path):
    params = write_fixture("lfw", tmp_path)
    jpg = sorted((tmp_path / "lfw" / "lfw" / "Alan_Turing").glob("*.jpg"))[0]
    jpg.write_bytes(jpg.read_bytes()[:60])
    _raises_naming(jpg, lambda: _load("lfw", tmp_path, params), "cannot decode")
    write_fixture("att_faces", tmp_path)
    pgm = tmp_path / "att_faces" / "s2" / "3.pgm"
    pgm.write_bytes(pgm.read_bytes()[:200])
    _raises_naming(pgm, lambda: _load("att_faces", tmp_path), "truncated")
    pgm.write_bytes(b"P6\n2 2\n255\n" + bytes(12))
    _raises_naming(pgm, lambda: _load("att_faces", tmp_path), "not a greyscale PGM")


def test_pgm_formats_agree(tmp_path):
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    write_pgm(tmp_path / "a.pgm", img, binary=True)
    write_pgm(tmp_path / "b.pgm", img, binary=False)
    from cyphercat.data.image import read_pgm
    np.testing.assert_array_equal(read_pgm(tmp_path / "a.pgm"), img.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(read_pgm(tmp_path / "b.pgm"), read_pgm(tmp_path / "a.pgm"))


def test_wrong_folder_layouts(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    write_pgm(flat / "a.pgm", np.zeros((4, 4), np.uint8))
    _raises_naming(flat, lambda: _load("image_folder", flat), "no class subfolders")
    (flat / "emptyclass").mkdir()
    _raises_naming(flat / "emptyclass", lambda: _load("image_folder", flat), "holds no")
    write_fixture("image_folder", tmp_path)
    odd = tmp_path / "image_folder" / "dog" / "big.pgm"
    write_pgm(odd, np.zeros((20, 20), np.uint8))
    _raises_naming(odd, lambda: _load("image_folder", tmp_path, path="image_folder"), "set image_size")
    assert _load("image_folder", tmp_path, path="image_folder", image_size=[6, 5]).input_shape == (3, 6, 5)
    write_fixture("att_faces", tmp_path)
    (tmp_path / "att_faces" / "s9").mkdir()
    _raises_naming(tmp_path / "att_faces" / "s9", lambda: _load("att_faces", tmp_path), "no .pgm")
    write_fixture("librispeech", tmp_path, speakers=1)
    _raises_naming(tmp_path / "librispeech", lambda: _load("librispeech", tmp_path), "at least two")


def test_broken_audio(tmp_path):
    params = write_fixture("audio_folder", tmp_path)
    wav = tmp_path / "audio_folder" / "up" / "spk1_nohash_0.wav"
    good = wav.read_bytes()
    wav.write_bytes(b"RIFF" + bytes(30))
    _raises_naming(wav, lambda: _load("audio_folder", tmp_path, params), "cannot decode")
    wav.write_bytes(good)
    _raises_naming(tmp_path / "audio_folder" / "no", lambda: _load("audio_folder", tmp_path, params,
                                                                    sample_rate=8000), "Hz")


def test_broken_text_files(tmp_path):
    write_fixture("ag_news", tmp_path)
    p = tmp_path / "ag_news" / "ag_news_csv" / "test.csv"
    p.write_text('"5","title","body"\n')
    _raises_naming(p, lambda: _load("ag_news", tmp_path), "line 1")
    write_fixture("sst", tmp_path)
    p = tmp_path / "sst" / "SST-2" / "dev.tsv"
    p.write_text("fine movie\t1\nno label here\n")
    _raises_naming(p, lambda: _load("sst", tmp_path), "line 2")
    params = write_fixture("text_csv", tmp_path)
    p = tmp_path / "text_csv" / "reviews.csv"
    _raises_naming(p, lambda: _load("text_csv", tmp_path, params, text_column="body"), "no column")
    p.write_bytes(b"review,sentiment\n\xff\xfe bad,pos\n")
    _raises_naming(p, lambda: _load("text_csv", tmp_path, params), "UTF-8")


def test_broken_tabular_files(tmp_path):
    params = write_fixture("tabular_csv", tmp_path)
    _raises_naming(tmp_path / "tabular_csv" / "patients.csv",
                   lambda: _load("tabular_csv", tmp_path, params, label_column="diagnosis"), "no column")
    write_fixture("purchase100", tmp_path)
    p = tmp_path / "purchase100" / "purchase100.npz"
    np.savez(p, features=np.array([{"a": 1}], dtype=object), labels=np.array([0]))
    _raises_naming(p, lambda: _load("purchase100", tmp_path), "without pickle")
    np.savez(p, features=np.zeros((3, 4)))
    _raises_naming(p, lambda: _load("purchase100", tmp_path), "'labels'")
    p.write_bytes(b"PK\x03\x04 not really a zip")
    _raises_naming(p, lambda: _load("purchase100", tmp_path))
    write_fixture("texas100", tmp_path)
    lab = tmp_path / "texas100" / "texas" / "100" / "labels"
    lab.write_text("1\n2\n")
    _raises_naming(lab, lambda: _load("texas100", tmp_path), "2 labels for 20 rows")
    write_fixture("adult", tmp_path)
    p = tmp_path / "adult" / "adult.data"
    p.write_text(p.read_text() + "39, State-gov, 77516\n")
    _raises_naming(p, lambda: _load("adult", tmp_path), "line")


def test_torchvision_layout_is_reused_without_mixing_datasets(tmp_path):
    write_fixture("mnist", tmp_path / "tv")
    (tmp_path / "root" / "MNIST").mkdir(parents=True)
    (tmp_path / "tv" / "mnist").rename(tmp_path / "root" / "MNIST" / "raw")
    assert len(_load("mnist", tmp_path / "root")) == 50
    with pytest.raises(CyphercatError, match="fashion_mnist files not found"):
        _load("fashion_mnist", tmp_path / "root")
