"""Finding the audio files of a dataset, their descriptive fields, and reading one file.

A clip's *fields* are strings that describe it: the named groups of the recipe's ``name_pattern``
matched against the file name (FSDD: ``digit``, ``speaker``, ``index``), and the columns of the
recipe's ``labels_csv`` (one row per file, the file name relative to the data folder in column
``file``). The recipe then names which field is the class (``label_key``) and which field decides
the split (``split_by``).

A WAV file cut short reads without an error as a shorter clip; libsndfile notes the mismatch between
its data chunk's announced and present size in its log, and ``read_audio`` refuses such a file. (The
sizes 0 and 0xFFFFFFFF are the placeholders of WAV streams written before their length was known.)
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
_DATA_CHUNK_MISMATCH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF)


class AudioFileError(ValueError):
    """A file that is listed but cannot be used: unreadable, corrupt, empty, or misnamed."""


@dataclass(frozen=True)
class ClipSource:
    path: Path
    fields: dict[str, str]


def _csv_rows(csv_path: Path, root: Path) -> list[tuple[Path, dict[str, str]]]:
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels_csv not found: {csv_path}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "file" not in reader.fieldnames:
            raise ValueError(f"{csv_path} needs a header with a 'file' column, got {reader.fieldnames}")
        return [(root / row["file"], {k: v.strip() for k, v in row.items() if k != "file"}) for row in reader]


def _folder_files(root: Path) -> list[tuple[Path, dict[str, str]]]:
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {root}")
    return [(p, {}) for p in files]


def list_sources(root: Path, name_pattern: str | None, labels_csv: Path | None) -> list[ClipSource | AudioFileError]:
    """Every file of the dataset with its fields, in a fixed order. A file whose name does not
    match ``name_pattern`` comes back as an AudioFileError in its place, for the caller to raise or skip."""
    if not root.is_dir():
        raise FileNotFoundError(f"audio data folder not found: {root}")
    rows = _csv_rows(labels_csv, root) if labels_csv is not None else _folder_files(root)
    pattern = re.compile(name_pattern) if name_pattern else None
    sources: list[ClipSource | AudioFileError] = []
    for path, fields in rows:
        if pattern is not None:
            match = pattern.fullmatch(path.name)
            if match is None:
                sources.append(AudioFileError(f"{path} does not match name_pattern {name_pattern!r}"))
                continue
            fields = {**fields, **{k: v for k, v in match.groupdict().items() if v is not None}}
        sources.append(ClipSource(path, fields))
    return sources


def read_audio(path: Path) -> tuple[torch.Tensor, int]:
    """(channels, samples) float32 in [-1, 1] and the sample rate, read with soundfile."""
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(str(path)) as f:
            data, rate, log = f.read(dtype="float32", always_2d=True), f.samplerate, f.extra_info
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioFileError(f"cannot read audio file {path}: {err}") from err
    _check_not_truncated(path, log)
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise AudioFileError(f"audio file {path} holds non-finite samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _check_not_truncated(path: Path, log: str) -> None:
    match = _DATA_CHUNK_MISMATCH.search(log)
    if match is not None:
        announced, present = (int(v) for v in match.groups())
        if present < announced and announced not in _STREAMING_SIZES:
            raise AudioFileError(f"audio file {path} is truncated: its header announces {announced} bytes of "
                                 f"samples, the file holds {present}")
