"""``fetch`` against a local HTTP server: success, bad checksum, short transfers, broken and unsafe archives.
Whatever goes wrong, the data directory must be left as it was."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import re
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cyphercat.data import load_dataset  # noqa: E402
from cyphercat.data.download import SOURCES, Entry, Source, fetch  # noqa: E402
from cyphercat.errors import CyphercatError  # noqa: E402
from cyphercat.registry import DATASETS  # noqa: E402
from fixtures import write_fixture  # noqa: E402


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path.startswith("/short/"):  # promise the whole file, send half, hang up
            body = (Path(self.directory) / self.path[len("/short/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture()
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tar_fixture(name: str, src_root: Path, archive: Path, inner: str) -> None:
    write_fixture(name, src_root)
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src_root / name / inner, arcname=inner)


def _untouched(data: Path) -> bool:
    return not data.exists() or list(data.iterdir()) == []


def test_fetch_tar_then_load(server, tmp_path):
    served, base = server
    _tar_fixture("cifar10", tmp_path / "src", served / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    data = tmp_path / "data"
    out = fetch("cifar10", data, url=f"{base}/cifar-10-python.tar.gz", sha256=_sha(served / "cifar-10-python.tar.gz"))
    assert out == data / "cifar10" and (out / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert [p.name for p in data.iterdir()] == ["cifar10"]  # no temp files or archives left
    assert not (out / "cifar-10-python.tar.gz").exists()
    assert len(load_dataset("cifar10", {}, data_dir=data)) == 120


def test_loader_download_flag_uses_the_table(server, tmp_path, monkeypatch):
    served, base = server
    write_fixture("mnist", tmp_path / "src")
    files = sorted((tmp_path / "src" / "mnist").iterdir())
    for f in files:
        (served / f.name).write_bytes(f.read_bytes())
    monkeypatch.setitem(SOURCES, "mnist", Entry(tuple(Source(f"{base}/{f.name}", _sha(f)) for f in files)))
    data = tmp_path / "data"
    with pytest.raises(CyphercatError, match="cyphercat data fetch mnist"):
        load_dataset("mnist", {}, data_dir=data)
    assert not DATASETS.get("mnist").present(data)
    ds = load_dataset("mnist", {"download": True}, data_dir=data)
    assert len(ds) == 50 and DATASETS.get("mnist").present(data)
    assert sorted(p.name for p in (data / "mnist").iterdir()) == [f.name for f in files]  # .gz kept as is


def test_bad_checksum_leaves_nothing(server, tmp_path):
    served, base = server
    _tar_fixture("cifar10", tmp_path / "src", served / "c.tar.gz", "cifar-10-batches-py")
    data = tmp_path / "data"
    with pytest.raises(CyphercatError, match="SHA-256 of .* is [0-9a-f]{64}, expected 0{64}"):
        fetch("cifar10", data, url=f"{base}/c.tar.gz", sha256="0" * 64)
    assert _untouched(data)


def test_short_transfer_leaves_nothing(server, tmp_path):
    served, base = server
    _tar_fixture("cifar10", tmp_path / "src", served / "c.tar.gz", "cifar-10-batches-py")
    data = tmp_path / "data"
    with pytest.raises(CyphercatError, match="truncated|stopped early"):
        fetch("cifar10", data, url=f"{base}/short/c.tar.gz", sha256=_sha(served / "c.tar.gz"))
    assert _untouched(data)


def test_truncated_archive_leaves_nothing(server, tmp_path):
    served, base = server
    _tar_fixture("cifar10", tmp_path / "src", served / "c.tar.gz", "cifar-10-batches-py")
    broken = served / "broken.tar.gz"
    broken.write_bytes((served / "c.tar.gz").read_bytes()[:5000])  # checksum matches, contents do not
    data = tmp_path / "data"
    with pytest.raises(CyphercatError, match="truncated or corrupt"):
        fetch("cifar10", data, url=f"{base}/broken.tar.gz", sha256=_sha(broken))
    assert _untouched(data)


def test_existing_data_survives_a_failed_fetch(server, tmp_path):
    served, base = server
    data = tmp_path / "data"
    params = write_fixture("sst", data)
    (served / "x.tar.gz").write_bytes(b"not a tar at all")
    with pytest.raises(CyphercatError):
        fetch("sst", data, url=f"{base}/x.tar.gz", sha256=_sha(served / "x.tar.gz"))
    assert len(load_dataset("sst", params, data_dir=data)) == 12
    assert [p.name for p in data.iterdir()] == ["sst"]


def test_zip_and_plain_files_merge_into_one_folder(server, tmp_path):
    served, base = server
    write_fixture("sst", tmp_path / "src")
    with zipfile.ZipFile(served / "SST-2.zip", "w") as zf:
        for f in (tmp_path / "src" / "sst" / "SST-2").iterdir():
            zf.write(f, f"SST-2/{f.name}")
    data = tmp_path / "data"
    fetch("sst", data, url=f"{base}/SST-2.zip", sha256=_sha(served / "SST-2.zip"))
    assert len(load_dataset("sst", {}, data_dir=data)) == 12
    write_fixture("ag_news", tmp_path / "src")
    for name in ("train.csv", "test.csv"):  # two downloads into the same dataset folder
        (served / name).write_bytes((tmp_path / "src" / "ag_news" / "ag_news_csv" / name).read_bytes())
        fetch("ag_news", data, url=f"{base}/{name}", sha256=_sha(served / name))
    assert len(load_dataset("ag_news", {}, data_dir=data)) == 20


def test_md5_only_entries_are_checked(server, tmp_path, monkeypatch):
    served, base = server
    (served / "train.csv").write_text('"1","t","d"\n"2","t","d"\n')
    md5 = hashlib.md5((served / "train.csv").read_bytes()).hexdigest()
    monkeypatch.setitem(SOURCES, "ag_news", Entry((Source(f"{base}/train.csv", md5="f" * 32),)))
    with pytest.raises(CyphercatError, match="MD5"):
        fetch("ag_news", tmp_path / "data")
    monkeypatch.setitem(SOURCES, "ag_news", Entry((Source(f"{base}/train.csv", md5=md5),)))
    assert len(load_dataset("ag_news", {"split": "train", "download": True}, data_dir=tmp_path / "data")) == 2


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_escaping_the_folder_is_refused(server, tmp_path, kind):
    served, base = server
    if kind == "zip":
        with zipfile.ZipFile(served / "evil.zip", "w") as zf:
            zf.writestr("../evil.txt", "gotcha")
        name = "evil.zip"
    else:
        with tarfile.open(served / "evil.tar.gz", "w:gz") as tf:
            info = tarfile.TarInfo("../evil.txt")
            info.size = 6
            tf.addfile(info, io.BytesIO(b"gotcha"))
        name = "evil.tar.gz"
    data = tmp_path / "data"
    with pytest.raises(CyphercatError):
        fetch("sst", data, url=f"{base}/{name}", sha256=_sha(served / name))
    assert _untouched(data) and not (tmp_path / "evil.txt").exists()


def test_refusals(tmp_path):
    with pytest.raises(CyphercatError, match="no checksum"):
        fetch("mnist", tmp_path, url="http://127.0.0.1:9/x.gz")
    with pytest.raises(CyphercatError, match="cannot be downloaded automatically"):
        fetch("purchase100", tmp_path)
    with pytest.raises(CyphercatError, match="no download is known"):
        fetch("image_folder", tmp_path)
    with pytest.raises(CyphercatError, match="cannot download"):
        fetch("mnist", tmp_path / "d", url="http://127.0.0.1:9/x.gz", sha256="0" * 64)  # port 9: nothing listens
    assert _untouched(tmp_path / "d")


def test_source_table_is_well_formed():
    for name, entry in SOURCES.items():
        assert name in DATASETS, name
        assert bool(entry.files) != bool(entry.manual), name
        for src in entry.files:
            assert re.fullmatch(r"https?://\S+", src.url), src.url
            assert (src.sha256 and re.fullmatch(r"[0-9a-f]{64}", src.sha256)) or \
                   (src.md5 and re.fullmatch(r"[0-9a-f]{32}", src.md5)), (name, src)
    generic = {"digits", "synthetic", "image_folder", "audio_folder", "text_csv", "tabular_csv"}
    assert set(DATASETS.names()) - generic == set(SOURCES)
