"""Speech benchmarks as log-mel spectrograms: LibriSpeech speaker identification and class-per-folder
audio (Speech Commands, VOiCES-style layouts).

:func:`log_mel` is the one feature extractor (``torch.stft`` plus a mel filterbank built here), so
attacks and defenses that need to featurise new audio get exactly what the loaders produce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cyphercat.data.base import Dataset, dataset
from cyphercat.data.download import bad_file, find_root, locate, resolve_data_dir
from cyphercat.data.image import class_folders
from cyphercat.errors import CyphercatError

AUDIO_EXTS = (".wav", ".flac")


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters on the HTK mel scale, shape (n_mels, n_fft // 2 + 1), each peaking at 1."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise CyphercatError("dataset.params.fmax", f"need 0 <= fmin < fmax <= {sample_rate / 2}, got {fmin}, {fmax}",
                             "pick a band inside the Nyquist frequency")
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None).astype(np.float32)


def log_mel(waves: np.ndarray, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160,
            n_mels: int = 40, fmin: float = 0.0, fmax: float | None = None, eps: float = 1e-6,
            batch_size: int = 256) -> np.ndarray:
    """Waveforms N×L (float) -> log-mel power spectrograms float32 N×1×n_mels×T.

    A Hann window of ``n_fft`` samples every ``hop_length`` samples (25 ms / 10 ms at 16 kHz by
    default); T = 1 + L // hop_length (centred frames).
    """
    waves = np.asarray(waves, dtype=np.float32)
    if waves.ndim != 2:
        raise CyphercatError("waves", f"expected N×L waveforms, got shape {waves.shape}", "stack equal-length clips")
    fb = torch.from_numpy(mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax))
    window = torch.hann_window(n_fft)
    out = []
    for start in range(0, len(waves), batch_size):
        chunk = torch.from_numpy(waves[start:start + batch_size])
        spec = torch.stft(chunk, n_fft=n_fft, hop_length=hop_length, window=window, center=True,
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (B, F, T)
        out.append(torch.log(torch.matmul(fb, power) + eps)[:, None].numpy())
    if not out:
        frames = 1 + waves.shape[1] // hop_length
        return np.zeros((0, 1, n_mels, frames), np.float32)
    return np.concatenate(out).astype(np.float32)


def read_clip(path: Path, sample_rate: int, n_samples: int) -> np.ndarray:
    """The first ``n_samples`` of a mono (or down-mixed) file, zero-padded if shorter."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True, frames=n_samples)
    except Exception as err:  # libsndfile reports every format problem as a RuntimeError subclass
        raise bad_file(path, f"cannot decode audio: {err}") from None
    if sr != sample_rate:
        raise bad_file(path, f"sampled at {sr} Hz but sample_rate is {sample_rate}",
                       "set sample_rate to the files' rate (all files must share one)")
    clip = data.mean(axis=1)
    if len(clip) == 0:
        raise bad_file(path, "holds no audio samples")
    return np.pad(clip, (0, n_samples - len(clip)))


def _audio_ds(paths, y, names, name, sample_rate, seconds, n_mels, n_fft, hop_length, **extra) -> Dataset:
    if seconds <= 0:
        raise CyphercatError("dataset.params.seconds", f"{seconds} is not positive", "crop at least a few ms")
    n = int(round(seconds * sample_rate))
    waves = np.stack([read_clip(p, sample_rate, n) for p in paths])
    x = log_mel(waves, sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    feats = dict(sample_rate=sample_rate, seconds=seconds, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    return Dataset(x=x, y=np.asarray(y, dtype=np.int64), name=name, modality="audio", num_classes=len(names),
                   value_range=(float(x.min()), float(x.max())), class_names=tuple(names),
                   extra={"features": feats, **extra})


def _libri_here(subset: str):
    def is_here(folder: Path) -> Path | None:
        for cand in (folder / "LibriSpeech" / subset, folder / subset, folder):
            if cand.is_dir() and any(cand.glob("*/*/*.flac")):
                return cand
        return None
    return is_here


@dataset("librispeech", "audio", "LibriSpeech speaker identification: fixed-length crops of each utterance "
         "as log-mels, one class per speaker", present=lambda d: find_root("librispeech", d,
                                                                            _libri_here("dev-clean")) is not None)
def librispeech(data_dir=None, subset: str = "dev-clean", num_speakers: int | None = None,
                utterances_per_speaker: int | None = None, seconds: float = 2.0, sample_rate: int = 16000,
                n_mels: int = 40, n_fft: int = 400, hop_length: int = 160, download: bool = False) -> Dataset:
    root = locate("librispeech", data_dir, _libri_here(subset),
                  f"LibriSpeech/{subset}/SPEAKER/CHAPTER/*.flac (the unpacked OpenSLR archive)", download)
    speakers = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    speakers = speakers[:num_speakers] if num_speakers else speakers
    paths, y, names = [], [], []
    for sp in speakers:
        files = sorted(sp.glob("*/*.flac"))[:utterances_per_speaker]
        if not files:
            continue
        names.append(sp.name)
        paths += files
        y += [len(names) - 1] * len(files)
    if len(names) < 2:
        raise bad_file(root, f"found {len(names)} speaker folder(s) with FLAC files",
                       "speaker identification needs at least two SPEAKER/CHAPTER/*.flac folders")
    return _audio_ds(paths, y, names, "librispeech", sample_rate, seconds, n_mels, n_fft, hop_length,
                     subset=subset)


@dataset("audio_folder", "audio", "any folder with one subfolder of WAV/FLAC clips per class "
         "(Speech Commands, VOiCES-style layouts)")
def audio_folder(data_dir=None, path: str | None = None, seconds: float = 1.0, sample_rate: int = 16000,
                 max_per_class: int | None = None, n_mels: int = 40, n_fft: int = 400,
                 hop_length: int = 160) -> Dataset:
    base = resolve_data_dir(data_dir)
    root = base / path if path is not None else base
    if not root.is_dir():
        raise CyphercatError("dataset.params.path", f"{root} is not a folder",
                             "point path (or data_dir) at a folder with one subfolder per class")
    classes = [(n, f[:max_per_class]) for n, f in class_folders(root, AUDIO_EXTS) if f]
    if len(classes) < 2:
        raise bad_file(root, f"has {len(classes)} subfolder(s) holding WAV/FLAC files",
                       "put each class's clips in its own subfolder (at least two classes)")
    paths = [p for _, files in classes for p in files]
    y = [k for k, (_, files) in enumerate(classes) for _ in files]
    return _audio_ds(paths, y, [n for n, _ in classes], "audio_folder", sample_rate, seconds, n_mels, n_fft,
                     hop_length, root=str(root))

