"""Toy 2-D point sets: a Gaussian mixture on a circle, or points read from a .npy/.csv file.

Mixture: ``components`` isotropic Gaussians of standard deviation ``std`` centred at equal angles
on a circle of radius ``radius``, equal weights; the label is the component. Its mean is 0 and,
for 3 or more components, its covariance is (radius^2 / 2 + std^2) I, which tests use as a
closed-form reference.

A file holds one point per row: x, y and optionally an integer label (a .csv may have a header
line). A .csv whose header names columns ``x`` and ``y`` may hold more columns, in any order: a
``label`` column is the class, and every column other than x and y is a field of its point, which
named conditions read (multidiff.conditioning). Every fifth row (index 4, 9, ...) is the test split;
the others are the training split. A row with a value that is not finite is refused, naming the file
and the row.
"""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "test")


class PointSet(torch.utils.data.Dataset):
    """Map-style dataset of 2-D points with labels; items are dicts with "x" (2,) and "label"."""

    def __init__(self, points: np.ndarray, labels: np.ndarray, class_names: list[str],
                 fields: list[dict[str, str]] | None = None):
        self.points = torch.as_tensor(points, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.class_names = class_names
        self.fields = fields    # per point: the columns of a named-column CSV; None otherwise

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.points[i], "label": self.labels[i]}

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch at once (torch's DataLoader calls this instead of one item at a time)."""
        index = torch.as_tensor(indices)
        return {"x": self.points[index], "label": self.labels[index]}


def mixture_centres(components: int, radius: float) -> np.ndarray:
    angles = 2.0 * math.pi * np.arange(components) / components
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample_mixture(n: int, components: int, radius: float, std: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(components, size=n)
    points = mixture_centres(components, radius)[labels] + std * rng.standard_normal((n, 2))
    return points, labels


def read_named_columns(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, str]]] | None:
    """(points, labels or None, fields per row) from a .csv whose header names x and y, else None."""
    if path.suffix != ".csv":
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"x", "y"} <= set(reader.fieldnames):
            return None
        rows = list(reader)
    if not rows:
        raise ValueError(f"no points in {path}")
    table = []
    for line, row in enumerate(rows, start=2):
        try:
            table.append([float(row["x"]), float(row["y"])] + ([float(row["label"])] if "label" in row else []))
        except (TypeError, ValueError):
            raise ValueError(f"{path}: line {line}: x, y (and label) must be numbers") from None
    points, labels = _checked_table(np.asarray(table, dtype=np.float64).reshape(len(rows), -1), path,
                                    lambda row: f"line {row + 2}")
    return points, labels, [{k: v.strip() for k, v in r.items() if k not in ("x", "y")} for r in rows]


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(points (N, 2), labels (N,) or None) from a .npy or .csv file."""
    return read_points_and_fields(path)[:2]


def read_points_and_fields(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, str]] | None]:
    """(points (N, 2), labels (N,) or None, fields per point or None) from a .npy or .csv file."""
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: {path}")
    named = read_named_columns(path)
    if named is not None:
        return named
    header = 0 if path.suffix == ".npy" else _header_lines(path)
    try:
        if path.suffix == ".npy":
            table = np.load(path, allow_pickle=False)
        else:
            with warnings.catch_warnings():  # an empty file is reported below, as an error
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=header)
    except ValueError as e:
        raise ValueError(f"cannot read points from {path}: {e}") from None
    table = np.asarray(table, dtype=np.float64)
    if table.size == 0:
        raise ValueError(f"no points in {path}")
    if table.ndim != 2 or table.shape[1] not in (2, 3):
        raise ValueError(f"{path}: expected rows of x, y[, label], got an array of shape {table.shape}")
    points, labels = _checked_table(table, path, lambda row: f"row {row}" if path.suffix == ".npy" else
                                    f"line {row + header + 1}")
    return points, labels, None


def _checked_table(table: np.ndarray, path: Path, where) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows x, y[, label] checked: finite, labels whole numbers naming classes that all have rows."""
    bad = ~np.isfinite(table).all(axis=1)
    if bad.any():
        row = int(bad.argmax())
        raise ValueError(f"{path}: {where(row)} is {table[row].tolist()} ({int(bad.sum())} of {len(table)} rows "
                         f"hold a value that is not finite)")
    if table.shape[1] == 2:
        return table, None
    labels = table[:, 2]
    if (labels != np.round(labels)).any() or labels.min() < 0:
        raise ValueError(f"{path}: labels (third column) must be non-negative integers")
    top = int(labels.argmax())
    # a label as large as the row count must leave some class below it without a row
    unused = np.setdiff1d(np.arange(min(labels[top], len(labels)) + 1), labels)
    if len(unused):
        raise ValueError(f"{path}: label {labels[top]:.0f} ({where(top)}) makes classes 0..{labels[top]:.0f}, but no "
                         f"row has label {unused[0]} (a class without examples)")
    return table[:, :2], labels.astype(np.int64)


def check_mixture(data_cfg: dict) -> None:
    """ValueError naming the ``[data]`` key of the mixture that cannot describe one."""
    for key in ("components", "n_train", "n_test"):
        value = data_cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"data.{key} must be a positive integer, got {value!r}")
    if not math.isfinite(data_cfg["radius"]) or data_cfg["radius"] < 0:
        raise ValueError(f"data.radius must be a finite number >= 0, got {data_cfg['radius']!r}")
    if not math.isfinite(data_cfg["std"]) or data_cfg["std"] <= 0:
        raise ValueError(f"data.std must be a finite number > 0, got {data_cfg['std']!r}")


def load_split(data_cfg: dict, split: str) -> PointSet:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    conditional = data_cfg.get("conditional", True)
    if data_cfg.get("path"):
        points, labels, fields = read_points_and_fields(Path(data_cfg["path"]))
        num_classes = int(labels.max()) + 1 if labels is not None else 0
        keep = (np.arange(len(points)) % 5 == 4) == (split == "test")
        points = points[keep]
        labels = labels[keep] if labels is not None else None
        fields = [f for f, k in zip(fields, keep) if k] if fields is not None else None
    else:
        fields = None
        check_mixture(data_cfg)
        n = data_cfg["n_train"] if split == "train" else data_cfg["n_test"]
        seed = int(np.random.SeedSequence([data_cfg["seed"], SPLITS.index(split)]).generate_state(1)[0])
        points, labels = sample_mixture(n, data_cfg["components"], data_cfg["radius"], data_cfg["std"], seed)
        num_classes = data_cfg["components"]
    if len(points) == 0:
        raise ValueError(f"the {split} split of {data_cfg.get('path') or 'the mixture'} is empty")
    if not conditional or labels is None:
        return PointSet(points, np.full(len(points), -1), [], fields)
    return PointSet(points, labels, [str(c) for c in range(num_classes)], fields)


def _header_lines(path: Path) -> int:
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",")]
        return 0
    except ValueError:
        return 1
