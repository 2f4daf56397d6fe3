"""Classifier-free guidance (Ho & Salimans 2022): one network trained with and without its condition.

Labels are class indices; -1 is the null class the network learned while its condition was dropped.
"""
from __future__ import annotations

import torch

NULL_LABEL = -1


def drop_labels(labels: torch.Tensor | None, p: float, generator=None) -> torch.Tensor | None:
    """Replace a fraction ``p`` of the labels by the null class (training-time condition dropout)."""
    if labels is None or p <= 0:
        return labels
    if not 0 <= p <= 1:
        raise ValueError(f"condition dropout must be in [0, 1], got {p}")
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


def guided(denoiser, scale: float):
    """A denoiser returning D_uncond + scale (D_cond - D_uncond), both branches in one batch.

    scale = 1 (or no condition) is the plain conditional denoiser; scale = 0 the unconditional one.
    """
    if scale == 1.0:
        return denoiser

    def guided_denoiser(x, t, cond=None):
        if cond is None:
            return denoiser(x, t, None)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        both = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, torch.full_like(cond, NULL_LABEL)]))
        d_cond, d_uncond = both.chunk(2)
        return d_uncond + scale * (d_cond - d_uncond)

    return guided_denoiser
