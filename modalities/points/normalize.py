"""Normalising point clouds, with the transform kept so clouds can be mapped back.

Two protocols:
    unit_sphere   per cloud: subtract the centroid, divide by the largest distance from it, so the
                  cloud fits the unit sphere and touches it (PointNet's ``pc_normalize``).
    global        per dataset (PointFlow / PVD / LION): one mean per axis over every point of the
                  training set, and ONE scalar std over all coordinates of the training set, pooled
                  (PVD: ``all_points.reshape(-1).std()``), applied to every cloud of every split.
Either way ``normalised = (points - centre) / scale`` and ``points = normalised * scale + centre``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("unit_sphere", "global", "none")


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


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown data.normalize {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return name
