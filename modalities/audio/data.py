"""The audio dataset: fixed-length mono clips held in memory, with labels and padding masks.

Recipe keys read from ``[data]``:
    source        "folder" (default) or "synthetic"
    path          the audio folder (WAV, FLAC, OGG)                            (folder)
    name_pattern  a regex matched against each file name; its named groups are fields   (folder)
    labels_csv    a CSV (column ``file`` + fields), relative to the folder     (folder, optional)
    label_key     the field holding the class                                  (folder, conditional)
    split_by      the field holding an integer that decides the split          (folder)
    test_range    [lo, hi]: clips whose split_by value lies in it (inclusive) are held out (folder)
    num_train, num_test, seed                                                  (synthetic)
    sample_rate   the rate every clip is resampled to (Hz)
    length        clip length in samples; longer clips are cropped, shorter ones zero-padded
    trim_db       optional: trim leading/trailing silence this many dB below the loudest 10 ms
    loudness      "rms" | "peak" | "none", with target_db (dB full scale)
    skip_bad_files  skip unreadable, empty or misnamed files (one line each, then a count) instead of failing
    conditional   whether clips carry class labels (default true)
    mask_padding  whether items carry their padding mask, so the diffusion loss skips the padding
                  (default true); false trains the model to generate the silence after a clip too

Loaded clips are kept in a process-wide cache, so training, evaluation and sampling read the
files once.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..bad_files import report_count, report_skip

from . import preprocess
from .files import AudioFileError, ClipSource, list_sources, read_audio
from .synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from .synthetic import synthetic_clips

SPLITS = ("train", "test")
_CACHE: dict[str, "AudioClips"] = {}


class AudioClips(torch.utils.data.Dataset):
    """Clips ``x`` (N, 1, T), real lengths (N,), labels (N,) (-1 when unconditional)."""

    def __init__(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                 sample_rate: int, skipped: list[str], mask_padding: bool = True,
                 fields: list[dict[str, str]] | None = None, files: list[Path] | None = None):
        self.x = x
        self.lengths = lengths
        self.labels = labels
        self.class_names = class_names
        self.sample_rate = sample_rate
        #: messages naming each file skipped with ``skip_bad_files``
        self.skipped = skipped
        self.mask_padding = mask_padding
        #: per clip of a folder: its fields (name_pattern groups, labels_csv columns) and its file, which
        #: named conditions read (multidiff.conditioning); None for synthetic clips
        self.fields, self.files = fields, files

    def __len__(self) -> int:
        return len(self.x)

    def masks(self) -> torch.Tensor:
        """(N, 1, T): 1 over each clip's real samples, 0 over its padding."""
        return (torch.arange(self.x.shape[-1]) < self.lengths[:, None]).float()[:, None]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"x": self.x[i], "label": self.labels[i]}
        if self.mask_padding:
            item["mask"] = (torch.arange(self.x.shape[-1]) < self.lengths[i]).float()[None]
        return item


def data_path(data: dict) -> Path:
    if not data.get("path"):
        raise KeyError("recipe [data] needs 'path' (the audio folder) or source = \"synthetic\"")
    return Path(data["path"]).expanduser().resolve()


def load(cfg: dict, split: str) -> AudioClips:
    """The clips of ``split`` ("train" or "test") described by ``cfg["data"]``, loaded once per process."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    data = cfg["data"]
    for key in ("sample_rate", "length"):
        if key not in data:
            raise KeyError(f"recipe [data] needs {key!r}")
    source = data.get("source", "folder")
    if source not in ("folder", "synthetic"):
        raise ValueError(f"unknown [data] source {source!r}; expected 'folder' or 'synthetic'")
    where = str(data_path(data)) if source == "folder" else ""
    key = json.dumps([data, split, where], sort_keys=True, default=str)
    if key not in _CACHE:
        _CACHE[key] = _load_synthetic(data, split) if source == "synthetic" else _load_folder(data, split)
    return _CACHE[key]


def _prepare(wave: torch.Tensor, data: dict) -> tuple[torch.Tensor, int]:
    """A mono clip at the dataset rate -> (fixed-length clip, real sample count)."""
    rate = int(data["sample_rate"])
    if data.get("trim_db"):
        wave = preprocess.trim_silence(wave, float(data["trim_db"]), rate // 100)
    wave, real = preprocess.fit_length(wave, int(data["length"]))
    wave = preprocess.normalise_loudness(wave, real, data.get("loudness", "none"), float(data.get("target_db", -20.0)))
    return wave, real


def _assemble(waves: list[torch.Tensor], labels: list[int], class_names: list[str], data: dict,
              skipped: list[str], sources: list[ClipSource] | None = None) -> AudioClips:
    prepared = [_prepare(w, data) for w in waves]
    x = torch.stack([w for w, _ in prepared])[:, None] if prepared else torch.zeros(0, 1, int(data["length"]))
    lengths = torch.tensor([n for _, n in prepared], dtype=torch.long)
    conditional = data.get("conditional", True)
    label_tensor = torch.tensor(labels, dtype=torch.long) if conditional else torch.full((len(waves),), -1)
    return AudioClips(x, lengths, label_tensor, class_names if conditional else [], int(data["sample_rate"]), skipped,
                      bool(data.get("mask_padding", True)), None if sources is None else [s.fields for s in sources],
                      None if sources is None else [s.path for s in sources])


def _load_synthetic(data: dict, split: str) -> AudioClips:
    n = int(data["num_train"] if split == "train" else data["num_test"])
    waves, labels = synthetic_clips(n, int(data["sample_rate"]), int(data.get("seed", 0)), split)
    return _assemble(waves, labels, SYNTHETIC_CLASS_NAMES, data, [])


def _field(src: ClipSource, key: str) -> str:
    if key not in src.fields:
        raise AudioFileError(f"{src.path} has no field {key!r} (fields: {sorted(src.fields)})")
    return src.fields[key]


def _split_of(src: ClipSource, data: dict) -> str:
    if not data.get("split_by") or not data.get("test_range"):
        raise KeyError("recipe [data] needs 'split_by' (a field) and 'test_range' ([lo, hi]) to split the clips")
    value = _field(src, data["split_by"])
    try:
        number = int(value)
    except ValueError:
        raise AudioFileError(f"{src.path}: split field {data['split_by']!r} = {value!r} is not an integer") from None
    lo, hi = data["test_range"]
    return "test" if lo <= number <= hi else "train"


def _class_names(values: set[str]) -> list[str]:
    """Sorted numerically when every class name is an integer ("2" before "10"), else alphabetically."""
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _load_folder(data: dict, split: str) -> AudioClips:
    root = data_path(data)
    csv_path = root / data["labels_csv"] if data.get("labels_csv") else None
    sources = list_sources(root, data.get("name_pattern"), csv_path)
    conditional = data.get("conditional", True)
    if conditional and not data.get("label_key"):
        raise KeyError("recipe [data] needs 'label_key' (the field holding the class) when conditional = true")
    skip = bool(data.get("skip_bad_files", False))
    skipped: list[str] = []

    def reject(err: Exception) -> None:
        if not skip:
            raise err
        report_skip(str(err))
        skipped.append(str(err))

    good: list[ClipSource] = []
    for src in sources:
        if isinstance(src, AudioFileError):
            reject(src)
            continue
        try:
            if conditional:
                _field(src, data["label_key"])
            _split_of(src, data)
        except AudioFileError as err:
            reject(err)
            continue
        good.append(src)
    class_names = _class_names({s.fields[data["label_key"]] for s in good}) if conditional else []

    rate = int(data["sample_rate"])
    waves, labels, kept = [], [], []
    for src in good:
        if _split_of(src, data) != split:
            continue
        try:
            wave, file_rate = read_audio(src.path)
        except (AudioFileError, FileNotFoundError) as err:
            reject(err)
            continue
        waves.append(preprocess.resample(preprocess.to_mono(wave), file_rate, rate))
        labels.append(class_names.index(src.fields[data["label_key"]]) if conditional else -1)
        kept.append(src)
    report_count(len(skipped), len(sources), "audio files", root)
    if not waves:
        raise ValueError(f"no usable {split} clips in {root}")
    return _assemble(waves, labels, class_names, data, skipped, kept)
