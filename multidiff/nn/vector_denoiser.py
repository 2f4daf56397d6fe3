"""A denoiser for data that are one vector per example, such as a point autoencoder's shape codes.

A residual MLP: the input projected to ``width``, ``depth`` blocks of LayerNorm, then an MLP, each
modulated by the time and class embedding as in DiT's adaLN-Zero (shift, scale and a residual gate,
initialised to zero), and a zero-initialised output projection, so the untrained network predicts 0.
The same conditioning the point transformer and the UNet use (multidiff.nn.embeddings).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .embeddings import LabelEmbedding, TimeEmbedding, add_label


class _Block(nn.Module):
    def __init__(self, width: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.SiLU(), nn.Linear(mlp_ratio * width, width))
        self.modulation = nn.Linear(width, 3 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class VectorDenoiser(nn.Module):
    """forward(x (B, D), t (B,), cond (B,) or None) -> (B, D); label -1 = no class."""

    def __init__(self, dim: int, num_classes: int = 0, width: int = 512, depth: int = 4):
        super().__init__()
        self.dim = dim
        self.embed = nn.Linear(dim, width)
        self.time = TimeEmbedding(width, width)
        self.label = LabelEmbedding(num_classes, width) if num_classes > 0 else None
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, dim)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (B, {self.dim}), got {tuple(x.shape)}")
        c = F.silu(add_label(self.time(t), self.label, cond))
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)
