"""Embeddings of the diffusion time and of class labels, shared by every backbone."""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of ``t`` (shape (B,)), returning (B, dim).

    ``t`` lives in [0, 1]; it is multiplied by ``scale`` so the fastest frequencies resolve
    steps of 1/1000, as in DDPM's integer-timestep embeddings.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """t -> sinusoidal features -> MLP, the conditioning vector of every block."""

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        out_dim = out_dim or 4 * dim
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(t, self.dim).to(self.mlp[0].weight.dtype))


class LabelEmbedding(nn.Module):
    """Class labels -> vectors, with one extra learned row for "no class" (label -1).

    The extra row is what classifier-free guidance uses as its unconditional branch.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if labels is None:
            labels = torch.full((batch,), -1, dtype=torch.long, device=device)
        labels = labels.long()
        # Checked on the CPU only: on a GPU the check would sync every forward, and an index out of
        # range fails inside the embedding anyway.
        if labels.device.type == "cpu" and labels.numel() and (labels.max() >= self.num_classes or labels.min() < -1):
            raise ValueError(f"class label out of range: expected -1..{self.num_classes - 1}, "
                             f"got {labels.min().item()}..{labels.max().item()}")
        return self.table(torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels))


def add_label(emb: torch.Tensor, label: LabelEmbedding | None, cond: torch.Tensor | None) -> torch.Tensor:
    """``emb`` (B, dim) plus the embedding of the class labels ``cond``; a network built without classes
    (``label`` None) refuses real labels (>= 0) instead of ignoring them."""
    if label is not None:
        return emb + label(cond, emb.shape[0], emb.device)
    if cond is not None and bool((cond >= 0).any()):
        raise ValueError("this network has no classes (num_classes=0) but was given class labels")
    return emb
