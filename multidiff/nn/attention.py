"""Multi-head self-attention over the positions of a 1D or 2D feature map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import group_norm, zero_init


class SelfAttention(nn.Module):
    """Pre-norm residual self-attention: every position (time frame or pixel) attends to all others.

    Uses ``scaled_dot_product_attention``, which picks a fused kernel where one is available.
    """

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        tokens = self.norm(x).reshape(b, c, -1).transpose(1, 2)  # (B, L, C)
        q, k, v = self.qkv(tokens).reshape(b, -1, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, C / heads)
        h = self.proj(h.transpose(1, 2).reshape(b, -1, c))
        return x + h.transpose(1, 2).reshape(x.shape)
