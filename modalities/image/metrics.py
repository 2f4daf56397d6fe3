"""Image metrics: Frechet distance and accuracy in the embedding of a small CNN trained on the data,
and, where the user has the weights, the standard FID.

The CNN (two conv stages and a 128-wide embedding) is trained once per dataset on its whole
training split and cached (``multidiff.eval_cache``). Each figure comes with its ceiling measured
on real images, ``ceiling_<figure>``: the Frechet distance of as many real training images as there
are samples (a perfect generator's score at that sample size, small-sample bias included) and the
classifier's test-split accuracy.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multidiff.eval_cache import cached_classifier, identity
from multidiff.metrics import accuracy, fit_classifier, frechet_distance, predict

from .data import dataset_identity, image_dataset
from .inception import load_fid_inception

CLASSIFIER_VERSION = 2  # bump when the architecture or its training changes, to invalidate caches
CLASSIFIER_STEPS = 2000  # default of eval.classifier_steps
INCEPTION_ENV = "MULTIDIFF_INCEPTION_WEIGHTS"


class FeatureCNN(nn.Module):
    """Three conv-ReLU stages (32, 64, 64 channels; 2x max-pool after the first two), a 4x4 average
    pool, a 128-wide embedding, linear class logits. LeNet-sized: cheap, and ~99% on MNIST."""

    def __init__(self, channels: int, num_classes: int, embed_dim: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, embed_dim), nn.ReLU())
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def embed(net: FeatureCNN, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    return torch.cat([net.embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()


def trained_classifier(cfg: dict, cache_dir: Path) -> FeatureCNN:
    """The dataset's feature classifier, trained on its whole training split or loaded from the cache."""
    train = image_dataset(cfg, "train", full=True, with_labels=True)
    steps = cfg["eval"]["classifier_steps"]

    def fit(net):
        fit_classifier(net, train.images.float() / 127.5 - 1.0, train.labels, steps=steps, batch_size=64, lr=2e-3,
                       seed=0)

    key = identity(CLASSIFIER_VERSION, steps, dataset_identity(cfg))
    return cached_classifier(lambda: FeatureCNN(train.images.shape[1], len(train.class_names)), cache_dir,
                             "image_classifier", key, fit)


def inception_weights(cfg: dict) -> Path | None:
    """``eval.inception_weights`` or the MULTIDIFF_INCEPTION_WEIGHTS variable, if either names a file."""
    given = cfg["eval"]["inception_weights"] or os.environ.get(INCEPTION_ENV)
    if not given:
        return None
    if not Path(given).is_file():
        raise FileNotFoundError(f"Inception weights file not found: {given}")
    return Path(given)


@torch.no_grad()
def inception_features(net, x: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """FID features of images in [-1, 1], quantised to 8 bits first as when FID reads PNG files."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = net.to(device)
    out = []
    for i in range(0, len(x), batch_size):
        batch = ((x[i:i + batch_size].clamp(-1, 1) + 1) * 127.5).round() / 255.0
        if batch.shape[1] == 1:
            batch = batch.repeat(1, 3, 1, 1)
        out.append(net(batch.to(device)).double().cpu())
    return torch.cat(out).numpy()


def evaluate_images(x: torch.Tensor, labels: torch.Tensor | None, cfg: dict, cache_dir: Path) -> dict[str, float]:
    """frechet_cnn / accuracy_cnn for the samples, ceiling_* for real images; fid_inception (samples vs
    test split) and ceiling_fid_inception (real training images vs test split) with Inception weights."""
    weights = inception_weights(cfg)  # a wrong path fails before any work
    x = x.detach().float().cpu().clamp(-1, 1)
    test = image_dataset(cfg, "test", full=True, with_labels=True)
    if tuple(x.shape[1:]) != tuple(test.images.shape[1:]):
        raise ValueError(f"samples have shape {tuple(x.shape[1:])}, the dataset's images {tuple(test.images.shape[1:])}")
    if len(x) < 2:
        raise ValueError("evaluation needs at least 2 samples")
    test_x = test.images.float() / 127.5 - 1.0
    train = image_dataset(cfg, "train", full=True, with_labels=True)
    pick = np.sort(np.random.default_rng(0).choice(len(train.labels), min(len(x), len(train.labels)), replace=False))
    real_x = train.images[pick].float() / 127.5 - 1.0

    net = trained_classifier(cfg, cache_dir)
    test_features = embed(net, test_x)
    result = {"frechet_cnn": frechet_distance(embed(net, x), test_features),
              "ceiling_frechet_cnn": frechet_distance(embed(net, real_x), test_features)}
    if labels is not None:
        result["accuracy_cnn"] = accuracy(predict(net, x), labels.cpu())
    result["ceiling_accuracy_cnn"] = accuracy(predict(net, test_x), test.labels)

    if weights is None:
        warnings.warn(f"FID unavailable: no Inception weights (set eval.inception_weights or {INCEPTION_ENV} to a "
                      "local pt_inception-2015-12-05-6726825d.pth; multidiff does not download it)", stacklevel=2)
        return result
    inception = load_fid_inception(weights)
    test_inception = inception_features(inception, test_x)
    result["fid_inception"] = frechet_distance(inception_features(inception, x), test_inception)
    result["ceiling_fid_inception"] = frechet_distance(inception_features(inception, real_x), test_inception)
    return result
