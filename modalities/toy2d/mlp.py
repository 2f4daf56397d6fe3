"""The toy backbone: a residual MLP on 2-D points, conditioned on time and class by addition (or, with
named conditions, on their pooled vector: a point has no positions to cross-attend from)."""
from __future__ import annotations

import torch
from torch import nn

from multidiff.nn.embeddings import LabelEmbedding, TimeEmbedding


class PointMLP(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 128, depth: int = 3, time_dim: int = 32, conditions=None):
        super().__init__()
        self.inp = nn.Linear(2, hidden)
        self.time = TimeEmbedding(time_dim, hidden)
        self.label = LabelEmbedding(num_classes, hidden)
        self.conditioner = conditions(hidden) if conditions is not None else None
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditioner is not None:
            h = self.inp(x) + self.time(t) + self.conditioner(cond).pooled
        else:
            h = self.inp(x) + self.time(t) + self.label(cond, x.shape[0], x.device)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
