"""Reading clouds and masks for editing (``multidiff edit``), and the cuts and baseline of completion.

For point clouds the mask is over points: a kept point's three coordinates are fixed, the others are
generated. Specs name the points to KEEP: ``keep=plane:z>0`` (axis x, y or z; > or <; a value in the
data's units) and ``keep=view:az,el`` (the points seen from azimuth az and elevation el, in degrees,
z up, found by hidden-point removal: Katz, Tal and Basri 2007). ``--complete FILE`` keeps all points of
a partial cloud and generates the rest of the model's point count (a latent point run: see completion.py).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import ConvexHull

from .data import load_cloud
from .normalize import unit_sphere

PLANE = re.compile(r"keep=plane:([xyz])([<>])(-?[0-9.eE+-]+)")
VIEW = re.compile(r"keep=view:(-?[0-9.]+),(-?[0-9.]+)")


def read_cloud(path: Path, cfg: dict) -> torch.Tensor:
    """(N, 3) with the model's N points (a larger file is subsampled, seeded; a mesh is sampled)."""
    points = load_cloud(Path(path), int(cfg["data"]["n_points"]), int(cfg["data"].get("seed", 0)))
    return _normalised(points, cfg)


def read_partial(path: Path, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A partial cloud of M < N points as (cloud (N, 3) with the M points first, mask (N, 1): 1 for them)."""
    n = int(cfg["data"]["n_points"])
    points = read_points(path, cfg)
    if not 0 < len(points) < n:
        raise ValueError(f"{path}: has {len(points)} points; completion needs between 1 and {n - 1} (the model "
                         f"generates {n})")
    cloud = torch.zeros(n, 3)
    cloud[: len(points)] = points
    mask = torch.zeros(n, 1)
    mask[: len(points)] = 1
    return cloud, mask


def read_points(path: Path, cfg: dict) -> torch.Tensor:
    """All the points (M, 3) of a .npy, .ply or other file trimesh reads, in the model's data space."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point-cloud file not found: {path}")
    if path.suffix.lower() == ".npy":
        points = np.load(path, allow_pickle=False)
    else:
        try:
            points = np.asarray(trimesh.load(path, process=False).vertices)
        except Exception as e:  # trimesh raises many types for a corrupt file
            raise ValueError(f"{path}: not a readable point cloud ({e})") from None
    if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
        raise ValueError(f"{path}: expected finite points of shape (M, 3), got {points.shape}")
    return _normalised(points.astype(np.float32), cfg)


def points_mask(spec: str, cloud: torch.Tensor) -> torch.Tensor:
    if m := PLANE.fullmatch(spec):
        return half_space(cloud, m.group(1), m.group(2), float(m.group(3)))
    if m := VIEW.fullmatch(spec):
        return seen_from(cloud, float(m.group(1)), float(m.group(2)))
    raise ValueError(f"unknown point mask {spec!r}; use keep=plane:z>0 (axis, <, >, value) or keep=view:az,el")


def half_space(cloud: torch.Tensor, axis: str, op: str, value: float) -> torch.Tensor:
    """(N, 1): 1 for the points on the kept side of the plane."""
    coordinate = cloud[:, "xyz".index(axis)]
    return ((coordinate > value) if op == ">" else (coordinate < value)).float()[:, None]


def seen_from(cloud: torch.Tensor, azimuth: float, elevation: float, radius_exponent: float = 1.0) -> torch.Tensor:
    """(N, 1): 1 for the points visible from far away in the direction (azimuth, elevation), z up.

    Hidden-point removal: with the camera at the origin, flip every point p to p + 2 (R - |p|) p / |p|
    (R = 10^radius_exponent times the farthest distance); the visible points are those on the convex hull
    of the flipped points and the camera. A larger R keeps more points; beyond ~10^1.5 the hull degrades
    numerically and back points pass as visible.
    """
    az, el = math.radians(azimuth), math.radians(elevation)
    direction = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    points = cloud.double().numpy()
    centre = points.mean(0)
    extent = np.linalg.norm(points - centre, axis=1).max()
    relative = points - (centre + 3 * extent * direction)
    norms = np.linalg.norm(relative, axis=1, keepdims=True)
    big = norms.max() * 10**radius_exponent
    flipped = relative + 2 * (big - norms) * relative / norms
    hull = ConvexHull(np.vstack([flipped, np.zeros((1, 3))]))
    visible = np.zeros(len(points), dtype=np.float32)
    visible[hull.vertices[hull.vertices < len(points)]] = 1
    return torch.from_numpy(visible)[:, None]


def mirrored(partial: torch.Tensor, n: int) -> torch.Tensor:
    """The copy-and-mirror baseline: the partial cloud and its reflection in the plane x = 0 (ModelNet's
    left-right symmetry plane), n points drawn evenly from both."""
    both = torch.cat([partial, partial * torch.tensor([-1.0, 1.0, 1.0])])
    return both[torch.linspace(0, len(both) - 1, n).round().long()]


def _normalised(points: np.ndarray, cfg: dict) -> torch.Tensor:
    """In the data space: per-cloud unit sphere for that protocol (the partial's own), else as read."""
    if cfg["data"].get("normalize", "unit_sphere") == "unit_sphere":
        points = unit_sphere(points).apply(points)
    return torch.as_tensor(np.asarray(points, dtype=np.float32))
