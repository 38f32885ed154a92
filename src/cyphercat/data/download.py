"""Where dataset files live, and how to fetch the ones with a stable official address.

Every download is streamed to a temporary file inside the data directory, its checksum is checked,
archives are unpacked into a temporary folder, and only then is the result renamed into place: a
bad checksum, a short read or a broken archive leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cyphercat.errors import CyphercatError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One file of a dataset: where it is, and its published checksum (SHA-256 where one is known;
    some datasets publish only MD5, which still catches a truncated or swapped file)."""

    url: str
    sha256: str | None = None
    md5: str | None = None
    filename: str | None = None

    @property
    def name(self) -> str:
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Entry:
    files: tuple[Source, ...] = ()
    manual: str | None = None  # why there is no download, and where to get the files


_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_AG = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"

# Checksums as published by the dataset authors or pinned by torchvision / TFDS / scikit-learn / torchtext.
SOURCES: dict[str, Entry] = {
    "mnist": Entry((
        Source(_MNIST + "train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        Source(_MNIST + "train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        Source(_MNIST + "t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        Source(_MNIST + "t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    )),
    "fashion_mnist": Entry((
        Source(_FASHION + "train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        Source(_FASHION + "train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        Source(_FASHION + "t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        Source(_FASHION + "t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    )),
    "cifar10": Entry((Source("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                             "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),)),
    "cifar100": Entry((Source("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                              "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),)),
    # scikit-learn's figshare copy; the original vis-www.cs.umass.edu host is often down.
    "lfw": Entry((Source("https://ndownloader.figshare.com/files/5976018",
                         "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0", filename="lfw.tgz"),)),
    "att_faces": Entry(manual="the AT&T (ORL) face database has no stable official address any more; place "
                              "the s1..s40 folders of .pgm files there"),
    "librispeech": Entry((Source("https://www.openslr.org/resources/12/dev-clean.tar.gz",
                                 "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3"),)),
    "ag_news": Entry((Source(_AG + "train.csv", md5="b1a00f826fdfbd249f79597b59e1dc12"),
                      Source(_AG + "test.csv", md5="d52ea96a97a2d943681189a97654912d"))),
    "sst": Entry((Source("https://dl.fbaipublicfiles.com/glue/data/SST-2.zip", md5="9f81648d4199384278b86e315dac217c"),)),
    "adult": Entry((Source(_UCI + "adult.data", "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"),
                    Source(_UCI + "adult.test", "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"))),
    "purchase100": Entry(manual="Purchase100 (Shokri et al. 2017) has no official download; the membership-"
                                "inference benchmark copies circulate as purchase100.npz or dataset_purchase"),
    "texas100": Entry(manual="Texas100 (Shokri et al. 2017) has no official download; the membership-"
                             "inference benchmark copies circulate as texas100.npz or texas/100/{feats,labels}"),
}


def default_data_dir() -> Path:
    """``$CYPHERCAT_DATA`` if set, else ``~/.cache/cyphercat/data``."""
    env = os.environ.get("CYPHERCAT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cyphercat" / "data"


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def find_root(name: str, data_dir: Path | str | None, is_here: Callable[[Path], Path | None]) -> Path | None:
    """The folder holding ``name``'s files: ``<data_dir>/<name>`` first, then ``data_dir`` itself, so a
    user may point ``data_dir`` straight at the dataset. ``is_here(folder)`` returns the exact folder
    (it may look one level down, e.g. into an unpacked archive) or None."""
    base = resolve_data_dir(data_dir)
    for cand in (base / name, base):
        if cand.is_dir():
            found = is_here(cand)
            if found is not None:
                return found
    return None


def locate(name: str, data_dir: Path | str | None, is_here: Callable[[Path], Path | None],
           expected: str, download: bool = False) -> Path:
    """Find the dataset's folder, fetching it first when allowed; otherwise say exactly what to put where."""
    found = find_root(name, data_dir, is_here)
    if found is None and download:
        fetch(name, data_dir)
        found = find_root(name, data_dir, is_here)
    if found is not None:
        return found
    target = resolve_data_dir(data_dir) / name
    entry = SOURCES.get(name)
    if entry is not None and entry.files:
        how = f"or run `cyphercat data fetch {name}` (or pass download: true)"
    elif entry is not None and entry.manual:
        how = f"({entry.manual})"
    else:
        how = ""
    raise CyphercatError("dataset.data_dir", f"{name} files not found in {target}",
                         f"put {expected} in {target} {how}".rstrip())


def fetch(name: str, data_dir: Path | str | None = None, url: str | None = None,
          sha256: str | None = None) -> Path:
    """Download ``name`` into ``<data_dir>/<name>`` and return that folder.

    ``url`` (with ``sha256``) replaces the table's address, for mirrors and tests; a download without
    a checksum to check is refused.
    """
    if url is not None:
        if not sha256:
            raise CyphercatError("fetch.sha256", f"no checksum given for {url}",
                                 "pass the file's SHA-256 along with its url")
        sources: Sequence[Source] = (Source(url, sha256=sha256.lower()),)
    else:
        entry = SOURCES.get(name)
        if entry is None:
            raise CyphercatError("fetch.name", f"no download is known for dataset {name!r}",
                                 f"choose one of: {', '.join(sorted(k for k, e in SOURCES.items() if e.files))}")
        if not entry.files:
            raise CyphercatError("fetch.name", f"{name} cannot be downloaded automatically: {entry.manual}",
                                 f"place the files in {resolve_data_dir(data_dir) / name}")
        sources = entry.files
    base = resolve_data_dir(data_dir)
    base.mkdir(parents=True, exist_ok=True)
    target = base / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=base))
    try:
        for src in sources:
            archive = _download(src, staging)
            _unpack(archive, staging)
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(src: Source, staging: Path) -> Path:
    out = staging / ("_" + src.name)
    digest = hashlib.sha256() if src.sha256 else hashlib.md5(usedforsecurity=False)
    want = (src.sha256 or src.md5 or "").lower()
    if not want:
        raise CyphercatError("fetch", f"no checksum recorded for {src.url}", "pass url and sha256 explicitly")
    got = 0
    try:
        with urllib.request.urlopen(src.url, timeout=60) as resp, open(out, "wb") as fh:
            length = resp.headers.get("Content-Length")
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                got += len(chunk)
    except http.client.IncompleteRead as err:
        raise CyphercatError("fetch", f"download of {src.url} stopped early ({got + len(err.partial)} bytes)",
                             "check the connection and retry") from None
    except (urllib.error.URLError, OSError) as err:
        raise CyphercatError("fetch", f"cannot download {src.url}: {err}",
                             "check the address and your connection, or place the files by hand") from None
    if length is not None and length.isdigit() and got != int(length):
        raise CyphercatError("fetch", f"download of {src.url} is truncated: {got} of {length} bytes",
                             "retry the download")
    if digest.hexdigest() != want:
        kind = "SHA-256" if src.sha256 else "MD5"
        raise CyphercatError("fetch", f"{kind} of {src.url} is {digest.hexdigest()}, expected {want}",
                             "the file is corrupt or was changed upstream; retry, or check the mirror")
    return out


def _unpack(archive: Path, staging: Path) -> None:
    """Unpack tar/zip archives into ``staging``; plain files (including .gz IDX files, which the
    loaders read directly) are kept as they are."""
    final = staging / archive.name[1:]
    named_tar = final.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))
    try:
        # trust the name first: a truncated .tar.gz may no longer sniff as a tar and must not be kept
        if named_tar or (not final.name.endswith(".zip") and tarfile.is_tarfile(archive)):
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(staging, filter="data")  # refuses absolute paths, '..', links out, devices
                else:  # Python < 3.11.4 has no extraction filters
                    _check_members(tf, staging, archive.name[1:])
                    tf.extractall(staging)
        elif final.name.endswith(".zip") or zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    dest = (staging / member).resolve()
                    if not dest.is_relative_to(staging.resolve()):
                        raise CyphercatError("fetch", f"{archive.name[1:]} holds an unsafe path {member!r}",
                                             "use the official archive")
                zf.extractall(staging)
        else:
            archive.rename(final)
            return
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise CyphercatError("fetch", f"archive {archive.name[1:]} is truncated or corrupt: {err}",
                             "delete it and download again") from None
    archive.unlink()


def _check_members(tf: tarfile.TarFile, staging: Path, name: str) -> None:
    root = staging.resolve()
    for m in tf.getmembers():
        if not (m.isfile() or m.isdir()) or not (staging / m.name).resolve().is_relative_to(root):
            raise CyphercatError("fetch", f"{name} holds an unsafe member {m.name!r}", "use the official archive")


def _move_into(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)  # one rename: the folder appears complete or not at all
        return
    for item in staging.iterdir():
        dest = target / item.name
        if dest.is_dir() and item.is_dir():
            with contextlib.suppress(OSError):
                shutil.rmtree(dest)
        os.replace(item, dest)


def bad_file(path: Path | str, problem: str, fix: str = "replace it with an intact copy of the original file"
             ) -> CyphercatError:
    """The error every loader raises for a malformed file: the file is the field at fault."""
    return CyphercatError(str(path), problem, fix)
