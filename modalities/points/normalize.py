"""Normalising point clouds, with the transform kept so clouds can be mapped back.

Two protocols:
    unit_sphere   per cloud: subtract the centroid, divide by the largest distance from it, so the
                  cloud fits the unit sphere and touches it (PointNet's ``pc_normalize``).
    global        per dataset (PointFlow / PVD / LION): one mean per axis over every point of the
                  training set, and ONE scalar std over all coordinates of the training set, pooled
                  (PVD: ``all_points.reshape(-1).std()``), applied to every cloud of every split.
Either way ``normalised = (points - centre) / scale`` and ``points = normalised * scale + centre``.

Both divide by a spread, so one absurd point (1e30 in a file) collapses its cloud (unit_sphere) or
every cloud of the dataset (global) to about a point. ``check_cloud`` and ``outlier_clouds`` find
such data before it is normalised, measuring against medians, which one outlier cannot move.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("unit_sphere", "global", "none")
#: A point, or a whole cloud, is an outlier when it lies this many times farther out than the typical
#: spread (ModelNet10: a cloud's farthest point is at most ~3 times its median distance from its median;
#: raw CAD meshes differ in size by ~40 times).
OUTLIER_FACTOR = 1000.0


@dataclass(frozen=True)
class Transform:
    centre: np.ndarray   # (3,)
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        return ((points - self.centre) / self.scale).astype(points.dtype, copy=False)

    def invert(self, points: np.ndarray) -> np.ndarray:
        return (points * self.scale + self.centre).astype(points.dtype, copy=False)


IDENTITY = Transform(np.zeros(3), 1.0)


def unit_sphere(points: np.ndarray) -> Transform:
    """The transform that centres ``points`` (N, 3) on their centroid and scales them into the unit sphere."""
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(0)
    radius = float(np.linalg.norm(points - centre, axis=1).max())
    if radius == 0.0:
        raise ValueError("cannot scale a cloud whose points all coincide to the unit sphere")
    return Transform(centre, radius)


def global_standardisation(clouds: np.ndarray) -> Transform:
    """PVD/LION's dataset transform from the training clouds (M, N, 3): per-axis mean, one pooled std."""
    points = np.asarray(clouds, dtype=np.float64).reshape(-1, 3)
    std = float(points.reshape(-1).std())
    if std == 0.0:
        raise ValueError("cannot standardise a training set whose coordinates are all equal")
    return Transform(points.mean(0), std)


def format_point(point) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in point) + ")"


def _spread(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-axis median of a cloud (N, 3) and every point's distance from it."""
    centre = np.median(points, axis=0)
    return centre, np.linalg.norm(points - centre, axis=1)


def check_cloud(points: np.ndarray) -> None:
    """ValueError when the finite points of one cloud all coincide or one lies absurdly far from the rest."""
    points = np.asarray(points, dtype=np.float64)
    _, distance = _spread(points)
    farthest, typical = float(distance.max()), float(np.median(distance))
    if farthest == 0.0:
        raise ValueError(f"all {len(points)} points coincide at {format_point(points[0])}")
    if typical > 0.0 and farthest > OUTLIER_FACTOR * typical:
        i = int(distance.argmax())
        raise ValueError(f"point {i} at {format_point(points[i])} lies {farthest / typical:.3g} times farther out than "
                         f"the cloud's median point (an outlier)")


def outlier_clouds(clouds: np.ndarray) -> list[tuple[int, str]]:
    """(index, reason) of each cloud of (M, N, 3) that is far larger than, or far away from, the typical one:
    pooled into one dataset transform (``global``), it would squash every other cloud to about a point."""
    clouds = np.asarray(clouds, dtype=np.float64)
    if len(clouds) < 3:
        return []
    spreads = [_spread(c) for c in clouds]
    centres = np.stack([c for c, _ in spreads])
    sizes = np.array([float(np.median(d)) for _, d in spreads])
    typical_size, typical_centre = float(np.median(sizes)), np.median(centres, axis=0)
    if typical_size == 0.0:
        return []
    found = []
    for i, (centre, distance) in enumerate(spreads):
        reach = max(float(distance.max()), float(np.linalg.norm(centre - typical_centre)))
        if reach > OUTLIER_FACTOR * typical_size:
            found.append((i, f"reaches {reach:.3g} from the clouds' median centre, {reach / typical_size:.3g} "
                             f"times the typical cloud's size {typical_size:.3g} (an outlier cloud)"))
    return found


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown data.normalize {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return name
