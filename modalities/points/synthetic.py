"""A synthetic dataset of trimesh primitives with random proportions, for the quickstart and the tests.

Categories, axis-aligned with z up, all proportions drawn uniformly:
    sphere    radius in [0.5, 1]
    box       edge lengths in [0.3, 1] each
    torus     major radius 1, minor radius in [0.15, 0.5]
    cylinder  radius in [0.2, 0.6], height in [0.5, 2]
    cone      base radius in [0.3, 0.8], height in [0.5, 2]
Shape i of a category and split draws its proportions and its surface samples from the seed
sequence (seed, split, category, i), so a dataset does not depend on how many shapes are asked for.
"""
from __future__ import annotations

import numpy as np
import trimesh

from .data import SPLITS, PointCloudSet

PRIMITIVES = ("sphere", "box", "torus", "cylinder", "cone")


def primitive_mesh(kind: str, rng: np.random.Generator) -> trimesh.Trimesh:
    u = rng.uniform
    if kind == "sphere":
        return trimesh.creation.icosphere(3, radius=u(0.5, 1.0))
    if kind == "box":
        return trimesh.creation.box(extents=u(0.3, 1.0, size=3))
    if kind == "torus":
        return trimesh.creation.torus(1.0, u(0.15, 0.5))
    if kind == "cylinder":
        return trimesh.creation.cylinder(u(0.2, 0.6), u(0.5, 2.0))
    if kind == "cone":
        return trimesh.creation.cone(u(0.3, 0.8), u(0.5, 2.0))
    raise ValueError(f"unknown primitive {kind!r}; choose one of: {', '.join(PRIMITIVES)}")


def primitives(split: str, *, per_class: int, n_points: int, seed: int = 0, categories=(), conditional: bool = True,
               normalize: str = "unit_sphere") -> PointCloudSet:
    """``per_class`` clouds of ``n_points`` surface points for each primitive category."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    names = list(categories) or list(PRIMITIVES)
    unknown = [c for c in names if c not in PRIMITIVES]
    if unknown:
        raise ValueError(f"unknown primitives {unknown}; choose from: {', '.join(PRIMITIVES)}")
    clouds, labels = [], []
    for label, kind in enumerate(names):
        for i in range(per_class):
            rng = np.random.default_rng([seed, SPLITS.index(split), PRIMITIVES.index(kind), i])
            mesh = primitive_mesh(kind, rng)
            points, _ = trimesh.sample.sample_surface(mesh, n_points, seed=rng)
            clouds.append(points.astype(np.float32))
            labels.append(label if conditional else -1)
    if not clouds:
        raise ValueError("data.per_class must be at least 1")
    return PointCloudSet(np.stack(clouds), np.array(labels), names if conditional else [], normalize)
