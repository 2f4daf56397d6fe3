"""A synthetic image dataset: one coloured shape on a black background, the shape is the class.

Each image draws its class, centre, size and a saturated colour from a seeded generator; edges are
anti-aliased by averaging a 4x4 grid of sub-pixel samples. Small (16x16 or 32x32) and made in well
under a second, it needs no download and serves the quickstart and the tests.
"""
from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
_SUPERSAMPLE = 4


def inside_shape(shape: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Whether offsets (dx, dy) from the centre fall inside a shape of radius r (all broadcast)."""
    ax, ay = np.abs(dx), np.abs(dy)
    circle = dx**2 + dy**2 <= r**2
    square = np.maximum(ax, ay) <= 0.8 * r
    # Upward equilateral triangle inscribed in the circle of radius r (y grows downwards).
    triangle = (dy <= 0.5 * r) & (np.sqrt(3.0) * ax - dy <= r)
    arm = 0.3 * r
    cross = ((ax <= r) & (ay <= arm)) | ((ax <= arm) & (ay <= r))
    return np.select([shape == 0, shape == 1, shape == 2, shape == 3], [circle, square, triangle, cross])


def _saturated_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """n RGB colours in [0, 1] from hue uniform, saturation 0.7-1, value 0.8-1 (HSV -> RGB)."""
    h, s, v = rng.random(n), rng.uniform(0.7, 1.0, n), rng.uniform(0.8, 1.0, n)
    k = (np.array([5.0, 3.0, 1.0])[None] + 6.0 * h[:, None]) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def make_shapes(n: int, resolution: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (n, resolution, resolution, 3) uint8 and their labels (n,) int64 (index into SHAPES)."""
    if resolution < 8:
        raise ValueError(f"shapes need a resolution of at least 8 pixels, got {resolution}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(SHAPES), size=n)
    radius = rng.uniform(0.22, 0.4, n) * resolution
    cx = rng.uniform(radius, resolution - radius)
    cy = rng.uniform(radius, resolution - radius)
    colours = _saturated_colours(rng, n)
    sub = (np.arange(resolution * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    images = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    for start in range(0, n, 256):  # chunks bound the memory of the sub-pixel grids
        i = slice(start, start + 256)
        dx = sub[None, None, :] - cx[i, None, None]
        dy = sub[None, :, None] - cy[i, None, None]
        inside = inside_shape(labels[i, None, None], dx, dy, radius[i, None, None])
        m = len(inside)
        coverage = inside.reshape(m, resolution, _SUPERSAMPLE, resolution, _SUPERSAMPLE).mean(axis=(2, 4))
        images[i] = np.round(255.0 * coverage[..., None] * colours[i, None, None, :]).astype(np.uint8)
    return images, labels.astype(np.int64)
