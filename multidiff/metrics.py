"""Modality-agnostic metric helpers: the Frechet distance, and a small feature classifier.

Audio and images are both judged the way FID judges images: embed real and generated examples
with a classifier trained on the real training split, compare the two Gaussians fitted to the
embeddings, and report how often the classifier recognises the class each sample was asked for.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def frechet_distance(a, b) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` and ``b`` (N, D), in float64:

        ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 examples in each set")
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_product(cov_a, cov_b))


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((S_a S_b)^(1/2)) of two symmetric positive semi-definite matrices, by eigenvalues.

    S_a S_b = R (R S_b) and R S_b R (R = S_a^(1/2)) share their eigenvalues (XY and YX always do),
    and R S_b R is symmetric PSD, so the trace of the root is the sum of the square roots of the
    eigenvalues of R S_b R, round-off negatives clipped at 0. Two symmetric eigendecompositions
    cost a fraction of the general matrix square root (scipy.linalg.sqrtm, a complex Schur form:
    3.7x at 2,048 features, benchmarks/bench_frechet.py) and need no regularising of singular
    covariances. Forming R S_b R squares the tiny eigenvalues of dead feature units, so a set
    against itself scores ~1e-7 of its covariance's trace rather than exactly 0 (an SVD of
    S_b^(1/2) S_a^(1/2) would avoid that, at 2.2x the cost).
    """
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    product = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 500, batch_size: int = 64,
                   lr: float = 2e-3, seed: int = 0, augment=None) -> nn.Module:
    """Train ``net`` (x -> logits) with Adam and cross-entropy on tensors ``x``, ``y``; returns it in eval mode.

    ``augment(batch, generator)``, when given, alters each batch before the step (drawing from the
    seeded generator, so training stays a function of ``seed``)."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as examples (and at least one), got {len(x)} and {len(y)}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        batch = x[idx] if augment is None else augment(x[idx], gen)
        loss = nn.functional.cross_entropy(net(batch), y[idx])
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
