"""Convolutional building blocks of the UNet, for 1D (B, C, T) or 2D (B, C, H, W) data.

``dims`` picks Conv1d or Conv2d, as in guided-diffusion, so one network class serves audio
(spectrogram frames as a 1D sequence) and images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    if dims == 1:
        return nn.Conv1d(*args, **kwargs)
    if dims == 2:
        return nn.Conv2d(*args, **kwargs)
    raise ValueError(f"dims must be 1 or 2, got {dims}")


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups where the channel count allows, fewer otherwise (e.g. 16 for 48)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias, so the residual branch it ends starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the conditioning vector applied as scale and shift on the
    second normalisation (AdaGN, "use_scale_shift_norm" in guided-diffusion). With ``emb_dim = 0``
    the block takes no conditioning (an autoencoder's blocks)."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = conv_nd(dims, in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch) if emb_dim > 0 else None
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(conv_nd(dims, out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else conv_nd(dims, in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is None:
            h = self.norm2(h)
        else:
            scale, shift = self.emb(emb).unsqueeze(-1).chunk(2, dim=1)
            if h.ndim == 4:
                scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve every spatial size with a strided 3x3 convolution."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double every spatial size: nearest-neighbour repeat, then a 3x3 convolution."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
