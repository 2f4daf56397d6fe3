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


class CrossAttention(nn.Module):
    """Pre-norm residual cross-attention from the positions of a feature map (B, C, *spatial) or a token
    sequence (B, N, C) to condition tokens (B, L, context_dim) under their mask (B, L), True = real.
    Zero-initialised output, so a network starts as if it had no such layer."""

    def __init__(self, channels: int, context_dim: int, num_heads: int = 4, channels_last: bool = False):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.channels_last = num_heads, channels_last
        self.norm = nn.LayerNorm(channels) if channels_last else group_norm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context) -> torch.Tensor:
        if self.channels_last:
            b, _, c = x.shape
            queries = self.norm(x)
        else:
            b, c = x.shape[:2]
            queries = self.norm(x).reshape(b, c, -1).transpose(1, 2)
        heads, d = self.num_heads, c // self.num_heads
        q = self.q(queries).reshape(b, -1, heads, d).transpose(1, 2)
        k, v = self.kv(context.tokens).reshape(b, -1, 2, heads, d).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=context.mask[:, None, None, :])
        h = self.proj(h.transpose(1, 2).reshape(b, -1, c))
        return x + (h if self.channels_last else h.transpose(1, 2).reshape(x.shape))
