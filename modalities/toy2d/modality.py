"""The toy2d modality: a Gaussian mixture in the plane (or points from a file), a standardising
encoder, a residual MLP, .npy/.csv output, scatter previews and a Frechet distance metric."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from multidiff.conditioning import encoders
from multidiff.metrics import frechet_distance
from multidiff.modality import Encoder, Modality

from .data import load_split
from .mlp import PointMLP


class StandardiseEncoder(Encoder):
    """Per-coordinate standardisation; mean and std are buffers fitted on the training set."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(2))
        self.register_buffer("std", torch.ones(2))

    def fit(self, dataset) -> None:
        points = dataset.points.double()
        self.mean.copy_(points.mean(0))
        self.std.copy_(points.std(0).clamp(min=1e-6))

    def encode(self, x, mask=None):
        return (x - self.mean) / self.std, mask

    def decode(self, z):
        return z * self.std + self.mean


class Toy2DModality(Modality):
    name = "toy2d"
    cond_key = "component"
    sections = {
        # path: "" = draw from the mixture (components on a circle of radius, each of std), else a
        # .npy/.csv file of x, y[, label] rows (every fifth row held out for the test split)
        "data": {"path": "", "conditional": True, "components": 8, "radius": 2.0, "std": 0.15, "n_train": 8192,
                 "n_test": 2048, "seed": 0},
        "encoder": {},
        "model": {"hidden": 128, "depth": 3, "time_dim": 32},
        "eval": {},
    }

    def dataset(self, cfg: dict, split: str):
        return load_split(cfg["data"], split)

    def encoder(self, cfg: dict) -> Encoder:
        return StandardiseEncoder()

    def backbone(self, cfg: dict, shape, num_classes: int):
        if tuple(shape) != (2,):
            raise ValueError(f"toy2d works on 2-D points, got examples of shape {tuple(shape)}")
        m = cfg["model"]
        return PointMLP(num_classes, hidden=m["hidden"], depth=m["depth"], time_dim=m["time_dim"],
                        conditions=encoders.factory(cfg))

    def write(self, x, labels, out_dir: Path, cfg: dict) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        points = x.detach().cpu().numpy()
        labels = np.full(len(points), -1) if labels is None else labels.cpu().numpy()
        npy, csv = out_dir / "samples.npy", out_dir / "samples.csv"
        np.save(npy, points)
        np.savetxt(csv, np.column_stack([points, labels]), delimiter=",", header="x,y,label", comments="",
                   fmt=["%.6g", "%.6g", "%d"])
        return [npy, csv]

    def preview(self, x, labels, path: Path, cfg: dict) -> Path:
        from matplotlib.figure import Figure

        points = x.detach().cpu().numpy()
        fig = Figure(figsize=(4, 4), dpi=100)
        ax = fig.add_subplot()
        colours = None if labels is None else labels.cpu().numpy()
        ax.scatter(points[:, 0], points[:, 1], c=colours, s=6, cmap=None if colours is None else "tab10")
        ax.set_aspect("equal")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
        return path

    def evaluate(self, x, labels, cfg: dict, cache_dir: Path) -> dict[str, float]:
        """frechet: Frechet distance between Gaussians fitted to the samples and to the test split;
        ceiling_frechet: the same for as many training points (what a perfect model scores at this
        sample size). class_mean_error (conditional data): mean over classes of the distance between
        the class's sample mean and its test-split mean."""
        test, train = self.dataset(cfg, "test"), self.dataset(cfg, "train")
        x = x.detach().cpu().double()
        reference = test.points.double().numpy()
        real = train.points[np.random.default_rng(0).permutation(len(train.points))[:len(x)]]
        result = {"frechet": frechet_distance(x.numpy(), reference),
                  "ceiling_frechet": frechet_distance(real.double().numpy(), reference)}
        if labels is not None and test.class_names:
            errors = [(x[labels == c].mean(0) - test.points[test.labels == c].double().mean(0)).norm()
                      for c in labels.unique().tolist() if (test.labels == c).any()]
            result["class_mean_error"] = float(torch.stack(errors).mean())
        return result
