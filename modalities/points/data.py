"""Point-cloud datasets: a folder of meshes or point files, one sub-folder per category.

Layout: ``root/<category>/{train,test}/<file>``; a category without train/test sub-folders keeps its
files directly and every fifth of them in name order (index 4, 9, ...) is its test split.
Meshes (.off, .obj, .stl, and .ply with faces) are read by trimesh and sampled to ``n_points``
surface points (area-weighted, seeded); the modality caches the samples on disk under
``$MULTIDIFF_CACHE/points/meshes`` (else ``~/.cache/multidiff/points/meshes``), keyed by the file's
path, mtime, ``n_points`` and the seed. trimesh also reads ModelNet's malformed "OFF<counts>" headers. Point files (.ply without faces, .npy of shape (M, 3)) with more than
``n_points`` points are subsampled without replacement, seeded per file.

A file is bad, and refused naming it (or with ``skip_bad_files`` skipped, one line each and a count), when
it cannot be read, an OFF file holds fewer or more lines than its header announces, a coordinate is
not finite, its points all coincide or one lies absurdly far out (``normalize.check_cloud``), or, under
"global" or "none" normalisation, the whole cloud is far larger or farther out than the others
(``normalize.outlier_clouds``). Only clouds that pass are cached, and every category of the training
split must keep at least one cloud.
"""
from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import trimesh

from multidiff.cache import cache_dir

from ..bad_files import report_count, report_skip
from .normalize import (IDENTITY, Transform, check_cloud, check_protocol, format_point, outlier_clouds,
                        unit_sphere)
from .off import check_off_counts

MESH_SUFFIXES = (".off", ".obj", ".stl")
SUFFIXES = MESH_SUFFIXES + (".ply", ".npy")
SPLITS = ("train", "test")


def cache_root() -> Path:
    return cache_dir("points")


def _read_geometry(path: Path):
    """A trimesh.Trimesh or an (M, 3) float array of points; ValueError naming the file if unreadable."""
    if path.suffix.lower() == ".npy":
        try:
            points = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: cannot read points: {e}") from None
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"{path}: expected an array of shape (M, 3), got {points.shape}")
        return points
    if path.suffix.lower() == ".off":
        check_off_counts(path)
    try:
        geometry = trimesh.load(path, process=False)
    except Exception as e:  # trimesh raises many types for a corrupt file
        raise ValueError(f"{path}: trimesh cannot read it: {e}") from None
    if isinstance(geometry, trimesh.Scene):
        geometry = geometry.to_mesh() if geometry.geometry else trimesh.PointCloud(np.zeros((0, 3)))
    if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
        return geometry
    if path.suffix.lower() in MESH_SUFFIXES:
        raise ValueError(f"{path}: mesh has no faces")
    points = np.asarray(getattr(geometry, "vertices", np.zeros((0, 3))))
    if len(points) == 0:
        raise ValueError(f"{path}: no points")
    return points


def _cache_file(path: Path, n_points: int, seed: int, cache: Path) -> Path:
    key = hashlib.sha1(f"{path.resolve()}|{path.stat().st_mtime_ns}|{n_points}|{seed}".encode()).hexdigest()
    return cache / f"{key}.npy"


def _check_finite(path: Path, points: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        i = int(bad.argmax())
        raise ValueError(f"{path}: {what} {i} is {format_point(points[i])} ({int(bad.sum())} of {len(points)} "
                         f"not finite)")


def _sample_mesh(path: Path, mesh: trimesh.Trimesh, n_points: int, seed: int) -> np.ndarray:
    _check_finite(path, np.asarray(mesh.vertices), "vertex")
    if not mesh.area > 0:
        raise ValueError(f"{path}: mesh has zero surface area")
    points, _ = trimesh.sample.sample_surface(mesh, n_points, seed=seed)
    return np.asarray(points, dtype=np.float32)


def _checked(path: Path, points: np.ndarray) -> np.ndarray:
    """``points`` when every coordinate is finite and the cloud is usable; ValueError naming ``path`` if not."""
    _check_finite(path, points, "point")
    try:
        check_cloud(points)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return points


def _save_atomically(points: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, points)
    os.replace(tmp, target)


def load_cloud(path: Path, n_points: int, seed: int = 0, cache: Path | None = None) -> np.ndarray:
    """``n_points`` points (float32, (n_points, 3)) from a mesh or point file, in the file's units.

    Mesh samples are checked (see the module's docstring) before they are cached under ``cache`` (no caching
    when None); a cached sample that is not finite (written before that check) is drawn again."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point-cloud file not found: {path}")
    cached = _cache_file(path, n_points, seed, cache) if cache is not None else None
    if cached is not None and cached.is_file():
        points = np.load(cached)
        if np.isfinite(points).all():
            return _checked(path, points)
    geometry = _read_geometry(path)
    if isinstance(geometry, trimesh.Trimesh):
        points = _checked(path, _sample_mesh(path, geometry, n_points, seed))
        if cached is not None:
            _save_atomically(points, cached)
        return points
    points = _checked(path, np.asarray(geometry, dtype=np.float32))  # every row, also those not drawn below
    if len(points) < n_points:
        raise ValueError(f"{path}: has {len(points)} points, fewer than the {n_points} asked for")
    if len(points) > n_points:
        rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
        points = points[np.sort(rng.choice(len(points), n_points, replace=False))]
    return points


class PointCloudSet(torch.utils.data.Dataset):
    """Clouds (M, N, 3) with labels; items are {"x": (N, 3) float32, "label": int64}.

    With ``normalize="unit_sphere"`` every cloud is normalised on its own and ``transforms[i]``
    maps item i back to its source units; with "global" or "none" the clouds stay in their units
    (the "global" standardisation is the encoder's, fitted on the training split).
    """

    def __init__(self, clouds: np.ndarray, labels: np.ndarray, class_names: list[str], normalize: str,
                 files: list[Path] | None = None, skipped: list[tuple[Path, str]] | None = None):
        check_protocol(normalize)
        if normalize == "unit_sphere":
            self.transforms: list[Transform] = [unit_sphere(c) for c in clouds]
            clouds = np.stack([t.apply(c) for t, c in zip(self.transforms, clouds)])
        else:
            self.transforms = [IDENTITY] * len(clouds)
        self.clouds = torch.as_tensor(np.asarray(clouds, dtype=np.float32))
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.class_names = class_names
        self.files = files or []
        self.skipped = skipped or []

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.clouds[i], "label": self.labels[i]}


def list_files(root: Path, split: str, categories=()) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, category index) pairs of ``split`` and the category names (sorted, or as given)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"point-cloud dataset folder not found: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = list(categories) or found
    unknown = [c for c in names if c not in found]
    if unknown:
        raise ValueError(f"unknown categories {unknown} in {root}; it has: {', '.join(found) or 'none'}")
    files = []
    for index, name in enumerate(names):
        folder = root / name
        if (folder / "train").is_dir() or (folder / "test").is_dir():
            files += [(p, index) for p in _clouds_in(folder / split)]
        else:
            every = _clouds_in(folder)
            files += [(p, index) for i, p in enumerate(every) if (i % 5 == 4) == (split == "test")]
    if not files:
        raise FileNotFoundError(f"no {split} mesh or point files ({', '.join(SUFFIXES)}) under {root}")
    return files, names


def _first_per_class(files: list[tuple[Path, int]], k: int) -> list[tuple[Path, int]]:
    taken: dict[int, int] = {}
    kept = []
    for path, label in files:
        if taken.get(label, 0) < k:
            taken[label] = taken.get(label, 0) + 1
            kept.append((path, label))
    return kept


def _clouds_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def load_folder(root: Path, split: str, *, n_points: int, seed: int = 0, categories=(), conditional: bool = True,
                normalize: str = "unit_sphere", skip_bad_files: bool = False, max_per_class: int = 0,
                cache: Path | None = None) -> PointCloudSet:
    """The dataset of ``split`` under ``root``; ``max_per_class`` > 0 keeps that many files per category
    (the first in name order). Bad files raise, or with ``skip_bad_files`` are listed in ``.skipped`` as
    (path, reason), each reported in one line."""
    check_protocol(normalize)
    files, names = list_files(root, split, categories)
    if max_per_class > 0:
        files = _first_per_class(files, max_per_class)
    loaded, skipped = [], []

    def reject(path: Path, reason: str) -> None:
        if not skip_bad_files:
            raise ValueError(reason)
        report_skip(reason)
        skipped.append((path, reason))

    for path, label in files:
        try:
            loaded.append((path, label, load_cloud(path, n_points, seed, cache)))
        except ValueError as e:
            reject(path, str(e))
    if normalize != "unit_sphere":
        outliers = dict(outlier_clouds(np.stack([c for _, _, c in loaded]))) if loaded else {}
        for i, (path, _, _) in enumerate(loaded):
            if i in outliers:
                reject(path, f"{path}: {outliers[i]}")
        loaded = [item for i, item in enumerate(loaded) if i not in outliers]
    report_count(len(skipped), len(files), f"{split} files", root)
    if not loaded:
        raise ValueError(f"every {split} file under {root} failed to load ({len(skipped)} skipped)")
    if split == "train":
        _check_every_category_kept(root, names, [label for _, label, _ in loaded], skipped)
    labels = np.array([label if conditional else -1 for _, label, _ in loaded])
    return PointCloudSet(np.stack([c for _, _, c in loaded]), labels, names if conditional else [], normalize,
                         [path for path, _, _ in loaded], skipped)


def _check_every_category_kept(root: Path, names: list[str], labels: list[int], skipped) -> None:
    """A category without a training cloud would be a class the model is asked for but never shown."""
    for index, name in enumerate(names):
        if index not in labels:
            lost = sum(Path(root, name) in p.parents for p, _ in skipped)
            why = f"all its {lost} files were skipped" if lost else "it holds no mesh or point files"
            raise ValueError(f"{Path(root) / name}: category {name!r} has no training cloud ({why})")
