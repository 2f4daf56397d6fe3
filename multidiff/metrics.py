"""Modality-agnostic metric helpers: the Frechet distance, and a small feature classifier.

Audio and images are both judged the way FID judges images: embed real and generated examples
with a classifier trained on the real training split, compare the two Gaussians fitted to the
embeddings, and report how often the classifier recognises the class each sample was asked for.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from torch import nn


def frechet_distance(a, b) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` and ``b`` (N, D).

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), computed in float64; the matrix
    square root's tiny imaginary parts (round-off) are dropped.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 examples in each set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        # Singular covariances (dead feature units) are expected; a non-finite root is handled below.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
            eps = 1e-6 * np.eye(len(cov_a))
            covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 500, batch_size: int = 64,
                   lr: float = 2e-3, seed: int = 0) -> nn.Module:
    """Train ``net`` (x -> logits) with Adam and cross-entropy on tensors ``x``, ``y``; returns it in eval mode."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as examples (and at least one), got {len(x)} and {len(y)}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class logits of ``x`` in batches."""
    return torch.cat([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())
