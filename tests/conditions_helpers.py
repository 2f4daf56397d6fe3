"""A toy2d CSV whose points carry a colour, a caption and a 2-number place, each naming one of four
clusters, and the recipe that conditions on all three (for the named-condition tests)."""
from __future__ import annotations

import csv

import numpy as np

COLOURS = ["red", "green", "blue", "gold"]
CENTRES = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])


def write_points(path, n: int = 1200, seed: int = 0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y", "colour", "caption", "e0", "e1"])
        for _ in range(n):
            c = rng.integers(4)
            x, y = CENTRES[c] + 0.2 * rng.standard_normal(2)
            writer.writerow([f"{x:.4f}", f"{y:.4f}", COLOURS[c], f"a {COLOURS[c]} dot", CENTRES[c][0] / 2,
                             CENTRES[c][1] / 2])
    return path


RECIPE = """
name = "toycond"
modality = "toy2d"
[data]
path = "{path}"
conditional = false
[conditions.colour]
type = "categorical"
drop = 0.2
[conditions.caption]
type = "text"
max_length = 16
layers = 1
heads = 2
drop = 0.3
[conditions.place]
type = "vector"
columns = ["e0", "e1"]
dim = 2
drop = 0.3
[model]
hidden = 32
depth = 2
time_dim = 16
[diffusion]
prediction = "v"
[train]
batch_size = 64
steps = {steps}
lr = 3e-3
ema_decay = 0.98
log_every = 100
ckpt_every = 1000
[sample]
n = 16
steps = 10
"""


def write_recipe(folder, steps: int = 250):
    points = write_points(folder / "points.csv")
    recipe = folder / "toycond.toml"
    recipe.write_text(RECIPE.format(path=points, steps=steps))
    return recipe
