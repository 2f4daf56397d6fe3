"""The latest samples of a run, per class, as files inside the report folder.

They come from RUN/samples (where ``multidiff sample RUN --out RUN/samples`` writes) or, when the run
has none there, are drawn for the report from its checkpoint: a few per class with the recipe's
sampling settings and seed 0. Files are grouped by type (pictures, clips, point clouds) and by the
class in their name (``0003_circle.png``, ``0001_rising_chirp.wav``, ``sample_0002_torus.npy``).
"""
from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multidiff.report.media import read_cloud, read_wav, write_spectrogram
from multidiff.report.run_data import RunData

#: At most this many of the newest samples of each class, by type.
PER_CLASS = {"image": 8, "audio": 4, "cloud": 2}
#: Points of a cloud sent to the page's viewer (a random subset of larger clouds).
MAX_VIEWER_POINTS = 2048
_NUMBER = re.compile(r"^(?:sample_)?(\d+)_?(.*)$")


@dataclass
class Sample:
    kind: str                     # "image" | "audio" | "cloud"
    src: str                      # the file, relative to the report folder
    picture: str = ""             # audio: its spectrogram PNG
    points: list[float] | None = None  # cloud: x0, y0, z0, x1, ... rounded for the page


@dataclass
class SampleSet:
    origin: str
    classes: dict[str, list[Sample]] = field(default_factory=dict)  # class name ("" = none) -> samples
    pictures: list[str] = field(default_factory=list)               # the modality's own preview pictures


def collect(run: RunData, report_dir: Path, folder: Path) -> SampleSet | None:
    """The samples shown for ``run``, copied (or drawn) into ``folder`` under ``report_dir``; None
    when the run has neither samples nor a checkpoint."""
    source = run.path / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and any(source.iterdir()):
        origin, copy = f"the newest files of {source}", True
    elif run.has_checkpoint:
        origin, copy, source = _draw(run, folder), False, folder
    else:
        return None
    chosen = _newest_per_class(source, run.cfg.get("dataset", {}).get("class_names", []))
    result = SampleSet(origin)
    for label, files in chosen.items():
        for kind, path in files:
            if copy:
                path = Path(shutil.copy2(path, folder / path.name))
            result.classes.setdefault(label, []).append(_describe(kind, path, report_dir))
    if not result.classes and (source / "preview.png").is_file():
        picture = source / "preview.png" if not copy else Path(shutil.copy2(source / "preview.png", folder / "preview.png"))
        result.pictures.append(picture.relative_to(report_dir).as_posix())
    return result


def _draw(run: RunData, folder: Path) -> str:
    from multidiff.engine.generate import generate

    classes = run.cfg["dataset"]["class_names"]
    s = run.cfg["sample"]
    n = len(classes) * math.ceil(s["n"] / len(classes)) if classes else s["n"]
    generate(run.path, n, seed=0, out_dir=folder)
    return (f"drawn for this report from the checkpoint of step {run.step}: {n} samples, {s['sampler']} "
            f"with {s['steps']} steps, guidance {s['guidance']}, seed 0")


def _kind(path: Path) -> str | None:
    if path.suffix == ".wav":
        return "audio"
    if path.suffix == ".png" and _NUMBER.match(path.stem):
        return "image"
    if path.suffix == ".npy" and read_cloud(path) is not None:
        return "cloud"
    if path.suffix == ".ply" and not path.with_suffix(".npy").exists() and read_cloud(path) is not None:
        return "cloud"
    return None


def _newest_per_class(source: Path, class_names: list[str]) -> dict[str, list[tuple[str, Path]]]:
    """Up to PER_CLASS files of each class and type, the highest numbers; classes in the run's order."""
    numbered = []
    for path in source.iterdir():
        m = _NUMBER.match(path.stem)
        if path.is_file() and m and (kind := _kind(path)):
            label = m.group(2) if m.group(2) not in ("any", "sample") else ""
            numbered.append((int(m.group(1)), label, kind, path))
    chosen: dict[str, list[tuple[str, Path]]] = {}
    for number, label, kind, path in sorted(numbered, key=lambda t: -t[0]):
        same = [p for k, p in chosen.get(label, []) if k == kind]
        if len(same) < PER_CLASS[kind]:
            chosen.setdefault(label, []).append((kind, path))
    order = {name: i for i, name in enumerate(class_names)}
    return {label: sorted(files, key=lambda f: f[1].name)
            for label, files in sorted(chosen.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))}


def _describe(kind: str, path: Path, report_dir: Path) -> Sample:
    sample = Sample(kind, path.relative_to(report_dir).as_posix())
    if kind == "audio":
        wave, rate = read_wav(path)
        sample.picture = write_spectrogram(wave, rate, path.with_suffix(".spectrogram.png")).relative_to(
            report_dir).as_posix()
    elif kind == "cloud":
        points = read_cloud(path)
        if len(points) > MAX_VIEWER_POINTS:
            points = points[np.random.default_rng(0).choice(len(points), MAX_VIEWER_POINTS, replace=False)]
        sample.points = [round(float(v), 4) for v in points.reshape(-1)]
    return sample
