"""The points modality: 3-D point clouds from meshes or point files, a point transformer, PLY/NPY
output, scatter previews, and MMD / COV / 1-NNA with Chamfer and earth mover's distances.

Recipe keys it reads (``PointsModality.sections`` holds their defaults):
    [data]   path ("" = the synthetic primitives), n_points, normalize (unit_sphere | global | none),
             conditional, categories ([] = all), train_per_class / test_per_class (synthetic: how many
             shapes; a folder: at most that many files per category, 0 = all), skip_bad_files, seed
    [model]  width, depth, heads (a latent recipe's denoiser of shape codes, multidiff.nn.vector_denoiser,
             reads width and depth); of an autoencoder recipe: latent_dim, width, depth, train_points
             (.autoencoder)
    [eval]   n (the engine's), seed (which reference clouds are drawn), emd (false = CD metrics only)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from multidiff.conditioning import encoders
from multidiff.eval_cache import identity
from multidiff.modality import Encoder, Modality

from multidiff.nn.vector_denoiser import VectorDenoiser

from . import io, set_losses
from .autoencoder import AUTOENCODER_DEFAULTS, point_autoencoder
from .data import PointCloudSet, cache_root, load_folder
from .edit import points_mask, read_cloud
from .metrics import set_metrics
from .normalize import check_protocol, global_standardisation
from .synthetic import primitives
from .transformer import PointTransformer


class PointsEncoder(Encoder):
    """Identity, or with ``normalize = "global"`` the PVD/LION standardisation (x - mean) / std with
    the per-axis mean and the single pooled std of the training set, kept as buffers so that a
    checkpoint maps its samples back to the data's units."""

    def __init__(self, normalize: str):
        super().__init__()
        self.normalize = check_protocol(normalize)
        self.register_buffer("centre", torch.zeros(3))
        self.register_buffer("scale", torch.ones(()))

    def fit(self, dataset: PointCloudSet) -> None:
        if self.normalize == "global":
            transform = global_standardisation(dataset.clouds.numpy())
            self.centre.copy_(torch.as_tensor(transform.centre))
            self.scale.fill_(transform.scale)

    def encode(self, x, mask=None):
        return (x - self.centre) / self.scale, mask

    def decode(self, z):
        return z * self.scale + self.centre


def _class_names(cfg: dict) -> list[str]:
    return list(cfg.get("dataset", {}).get("class_names", []))


class PointsModality(Modality):
    name = "points"
    cond_key = "category"
    feature_axis = 1
    sections = {
        "data": {"path": "", "n_points": 1024, "normalize": "unit_sphere", "conditional": True, "categories": [],
                 "train_per_class": 0, "test_per_class": 0, "skip_bad_files": False, "seed": 0},
        "encoder": {},               # its one setting is data.normalize
        "model": {"width": 128, "depth": 4, "heads": 4, "cross_every": 1},
        "eval": {"seed": 0, "emd": True},
    }
    autoencoder_model = AUTOENCODER_DEFAULTS
    reconstructions = set_losses.RECONSTRUCTIONS

    def dataset(self, cfg: dict, split: str) -> PointCloudSet:
        d = cfg["data"]
        common = dict(n_points=d["n_points"], seed=d["seed"], categories=d["categories"],
                      conditional=d["conditional"], normalize=d["normalize"])
        per_class = d[f"{split}_per_class"]
        if not d["path"]:
            return primitives(split, per_class=per_class, **common)
        return load_folder(Path(d["path"]), split, skip_bad_files=d["skip_bad_files"],
                           max_per_class=per_class, cache=cache_root() / "meshes", **common)

    def encoder(self, cfg: dict) -> Encoder:
        return PointsEncoder(cfg["data"]["normalize"])

    def autoencoder(self, cfg: dict, shape) -> torch.nn.Module:
        return point_autoencoder(cfg, shape)

    def reconstruction_error(self, x_hat, x, kind: str, mask=None) -> torch.Tensor:
        if mask is not None:
            raise ValueError("the point autoencoder does not take padded clouds (masks)")
        return set_losses.reconstruction_error(x_hat, x, kind)

    def backbone(self, cfg: dict, shape, num_classes: int) -> torch.nn.Module:
        m = cfg["model"]
        if len(shape) == 1:  # the shape codes of a point autoencoder (a latent recipe)
            if encoders.factory(cfg) is not None:
                raise ValueError("named [conditions] need the point transformer; the shape-code denoiser of a "
                                 "latent point recipe takes one class label")
            return VectorDenoiser(shape[0], num_classes, width=m["width"], depth=m["depth"])
        if len(shape) != 2 or shape[1] < 3:
            raise ValueError(f"the points modality works on clouds of shape (N, 3), got examples of shape {tuple(shape)}")
        return PointTransformer(num_classes, width=m["width"], depth=m["depth"], heads=m["heads"], in_features=shape[1],
                                conditions=encoders.factory(cfg), cross_every=m["cross_every"])

    def write(self, x, labels, out_dir: Path, cfg: dict) -> list[Path]:
        return io.write_clouds(x, labels, out_dir, _class_names(cfg))

    def preview(self, x, labels, path: Path, cfg: dict) -> Path:
        return io.preview(x, labels, path, _class_names(cfg))

    def read_for_edit(self, path: Path, cfg: dict) -> torch.Tensor:
        return read_cloud(Path(path), cfg)

    def edit_mask(self, spec: str, x, cfg: dict) -> torch.Tensor:
        return points_mask(spec, x)

    def evaluate(self, x, labels, cfg: dict, cache_dir: Path) -> dict[str, float]:
        """MMD/COV/1-NNA (CD and EMD) of the samples against as many held-out test clouds, drawn
        with the samples' class counts; ``ceiling_*``: the same for as many training clouds against
        the same test clouds (cached in ``cache_dir``), the figure a perfect model would reach."""
        seed, emd = cfg["eval"]["seed"], cfg["eval"]["emd"]
        test, train = self.dataset(cfg, "test"), self.dataset(cfg, "train")
        counts = _class_counts(x, labels)
        reference = test.clouds[_draw(test, counts, seed, "test")]
        if x.shape[1:] != reference.shape[1:]:
            raise ValueError(f"samples have shape {tuple(x.shape[1:])}, the test clouds {tuple(reference.shape[1:])}")
        started = time.perf_counter()
        result = set_metrics(x.detach().float().cpu(), reference, emd=emd)
        result["eval_seconds"] = time.perf_counter() - started
        cached = Path(cache_dir) / "reference" / f"{identity(cfg['data'], sorted(counts.items()), seed, emd)}.json"
        if cached.is_file():
            baseline = json.loads(cached.read_text())
        else:
            baseline = set_metrics(train.clouds[_draw(train, counts, seed, "train")], reference, emd=emd)
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(baseline, indent=2) + "\n")
        return {**result, **{f"ceiling_{k}": v for k, v in baseline.items()}}


def _class_counts(x, labels) -> dict[int, int]:
    if labels is None:
        return {-1: len(x)}
    values, counts = np.unique(np.asarray(labels.cpu()), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _draw(dataset: PointCloudSet, counts: dict[int, int], seed: int, split: str) -> torch.Tensor:
    """Indices of ``counts[c]`` clouds of each class c (-1: of any class), drawn without replacement."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    labels = dataset.labels.numpy()
    chosen = []
    for label, count in sorted(counts.items()):
        pool = np.arange(len(labels)) if label < 0 else np.flatnonzero(labels == label)
        if count > len(pool):
            name = dataset.class_names[label] if 0 <= label < len(dataset.class_names) else "any class"
            raise ValueError(f"evaluation needs {count} {split} clouds of {name}, the {split} split has {len(pool)}")
        chosen.append(rng.choice(pool, count, replace=False))
    return torch.as_tensor(np.concatenate(chosen))
