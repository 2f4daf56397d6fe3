"""The shared UNet denoiser (ADM / guided-diffusion style), 1D or 2D by ``dims``.

Layout for channel_mult=(1, 2, 2): input conv; per level ``num_res_blocks`` residual blocks (plus
self-attention at the levels in ``attn_levels``) then a 2x downsample (not after the last level);
a middle of residual block, attention, residual block; the mirror-image up path, whose blocks also
take the skip connection of every down-path block; GroupNorm, SiLU and a zero-initialised output conv,
so an untrained network predicts zeros.
The time embedding (plus the class embedding when ``num_classes`` > 0) drives every residual block
through scale and shift of its second GroupNorm. With named conditions (``conditions``: a function
width -> multidiff.conditioning.encoders.ConditionEncoder, called with ``channels``), ``cond`` is their
dict: the pooled condition joins the time embedding, and cross-attention to the condition tokens
follows every self-attention layer (the middle's, and those of ``attn_levels``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, SelfAttention
from .blocks import Downsample, ResBlock, Upsample, conv_nd, group_norm, zero_init
from .embeddings import LabelEmbedding, TimeEmbedding


class UNet(nn.Module):
    def __init__(self, dims: int, in_channels: int, out_channels: int | None = None, channels: int = 64,
                 channel_mult=(1, 2, 2), num_res_blocks: int = 2, attn_levels=(), num_heads: int = 4,
                 num_classes: int = 0, dropout: float = 0.0, conditions=None):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        bad_levels = [lv for lv in attn_levels if not 0 <= lv < len(channel_mult)]
        if bad_levels:
            raise ValueError(f"attn_levels {bad_levels} outside 0..{len(channel_mult) - 1} (one per channel_mult entry)")
        self.dims = dims
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.num_classes = num_classes
        self.num_levels = len(channel_mult)
        emb_dim = 4 * channels
        self.time_embed = TimeEmbedding(channels, emb_dim)
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.conditioner = conditions(channels) if conditions is not None else None
        if self.conditioner is not None:
            self.cond_proj = nn.Linear(channels, emb_dim)

        def attention(ch: int) -> list[nn.Module]:
            cross = [CrossAttention(ch, channels, num_heads)] if self.conditioner is not None else []
            return [SelfAttention(ch, num_heads), *cross]

        self.input_conv = conv_nd(dims, in_channels, channels * channel_mult[0], 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [channels * channel_mult[0]]
        ch = skip_channels[0]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(dims, ch, channels * mult, emb_dim, dropout)]
                ch = channels * mult
                if level in attn_levels:
                    layers += attention(ch)
                self.down.append(nn.ModuleList(layers))
                skip_channels.append(ch)
            if level != self.num_levels - 1:
                self.down.append(nn.ModuleList([Downsample(dims, ch)]))
                skip_channels.append(ch)

        self.middle = nn.ModuleList([ResBlock(dims, ch, ch, emb_dim, dropout), *attention(ch),
                                     ResBlock(dims, ch, ch, emb_dim, dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(dims, ch + skip_channels.pop(), channels * mult, emb_dim, dropout)]
                ch = channels * mult
                if level in attn_levels:
                    layers += attention(ch)
                if level != 0 and i == num_res_blocks:
                    layers.append(Upsample(dims, ch))
                self.up.append(nn.ModuleList(layers))

        self.out_norm = group_norm(ch)
        self.out_conv = zero_init(conv_nd(dims, ch, self.out_channels, 3, padding=1))

    @property
    def downsample_factor(self) -> int:
        """Every spatial size of the input must be a multiple of this."""
        return 2 ** (self.num_levels - 1)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> None:
        layout = "(B, C, T)" if self.dims == 1 else "(B, C, H, W)"
        if x.ndim != self.dims + 2:
            raise ValueError(f"UNet(dims={self.dims}) expects input {layout}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        sizes = tuple(x.shape[2:])
        if any(s % self.downsample_factor for s in sizes):
            raise ValueError(f"spatial size {sizes} must be divisible by {self.downsample_factor} "
                             f"(2 ** (len(channel_mult) - 1)); pad or crop the input")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
        if self.conditioner is not None:
            if not isinstance(cond, dict):
                raise ValueError("this UNet takes named conditions: a dict of tensors, not class labels")
        elif cond is not None and self.label_embed is None and bool((cond >= 0).any()):
            raise ValueError("class labels given to a UNet built with num_classes=0")

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, t, cond)
        emb = self.time_embed(t)
        if self.label_embed is not None:
            emb = emb + self.label_embed(cond, x.shape[0], x.device)
        context = None
        if self.conditioner is not None:
            context = self.conditioner(cond)
            emb = emb + self.cond_proj(context.pooled)
        emb = F.silu(emb)  # every block's projection starts from SiLU(emb), so apply it once here

        if self.dims == 2 and x.device.type == "cpu":
            # oneDNN convolutions run 15-20% faster (fwd+bwd) in NHWC than in NCHW on a 2-core CPU
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.input_conv(x)
        skips = [h]
        for layers in self.down:
            h = self._run(layers, h, emb, context)
            skips.append(h)
        h = self._run(self.middle, h, emb, context)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out_conv(F.silu(self.out_norm(h))).contiguous()

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor, context) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            else:
                h = layer(h, context) if isinstance(layer, CrossAttention) else layer(h)
        return h
