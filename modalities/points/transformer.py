"""The point-cloud denoiser: a transformer over the points of a cloud, with no order among them.

Every point is embedded on its own by an MLP of its coordinates; self-attention blocks (no
positional encoding) mix information between points, so the network is permutation-equivariant:
permuting the input points permutes the output the same way, and it accepts any number of points.
Time and class condition every block through adaptive LayerNorm (DiT's adaLN-Zero: a shift, a
scale and a residual gate per sub-layer, from the conditioning vector, initialised to zero); the
output projection is zero-initialised too, so the untrained network predicts 0. With named conditions
(``conditions``: a function width -> multidiff.conditioning.encoders.ConditionEncoder), ``cond`` is
their dict: the pooled condition joins the time vector and blocks cross-attend to the condition tokens
after their self-attention: every block, or with ``cross_every = k`` every k-th (blocks k//2, k//2 + k,
...: the middle one of three for k = 2), which is cheaper where a cross-attention costs about as much as
the self-attention it follows (short clouds, narrow networks).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from multidiff.nn.attention import CrossAttention
from multidiff.nn.embeddings import LabelEmbedding, TimeEmbedding, add_label


class Block(nn.Module):
    """Pre-norm self-attention and MLP sub-layers, each modulated by the conditioning vector."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4, cross: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"model.width ({width}) must be a multiple of model.heads ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))
        self.cross = CrossAttention(width, width, heads, channels_last=True) if cross else None
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor, context=None) -> torch.Tensor:
        b, n, w = h.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)
        a = self.norm1(h) * (1 + scale1) + shift1
        q, k, v = self.qkv(a).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, w)
        h = h + gate1 * self.proj(a)
        if self.cross is not None:
            h = self.cross(h, context)
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class PointTransformer(nn.Module):
    """forward(x (B, N, 3), t (B,), cond (B,) or None) -> (B, N, 3); label -1 = no class."""

    def __init__(self, num_classes: int = 0, width: int = 128, depth: int = 4, heads: int = 4, in_features: int = 3,
                 conditions=None, cross_every: int = 1):
        super().__init__()
        self.in_features = in_features            # 3, or more for a mask-conditioned model's extra inputs
        self.embed = nn.Sequential(nn.Linear(in_features, width), nn.SiLU(), nn.Linear(width, width))
        self.time = TimeEmbedding(width, width)
        self.label = LabelEmbedding(num_classes, width) if num_classes > 0 else None
        self.conditioner = conditions(width) if conditions is not None else None
        if not 1 <= cross_every <= depth:
            raise ValueError(f"model.cross_every ({cross_every}) must be between 1 and model.depth ({depth})")
        crossed = [self.conditioner is not None and i % cross_every == cross_every // 2 for i in range(depth)]
        self.blocks = nn.ModuleList(Block(width, heads, cross=cross) for cross in crossed)
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, 3)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected point clouds of shape (B, N, {self.in_features}), got {tuple(x.shape)}")
        c = self.time(t)
        context = None
        if self.conditioner is not None:
            if not isinstance(cond, dict):
                raise ValueError("this network takes named conditions: a dict of tensors, not class labels")
            context = self.conditioner(cond)
            c = c + context.pooled
        else:
            c = add_label(c, self.label, cond)
        c = F.silu(c)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, c, context)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)
