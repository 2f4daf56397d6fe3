"""A convolutional variational autoencoder, 1D or 2D by ``dims``, built from the UNet's blocks.

Layout for channel_mult=(1, 2, 2): input conv; per level ``num_res_blocks`` residual blocks, then a
2x downsample (not after the last level); a middle residual block; GroupNorm, SiLU and a conv to the
mean and log-variance of a diagonal Gaussian over ``latent_channels`` channels. The decoder mirrors
it (nearest-neighbour upsampling) and ends with a conv to the data's channels. The spatial sizes
shrink by ``2 ** (len(channel_mult) - 1)``, as in the latent-diffusion autoencoders of Rombach et
al. (2022), minus their attention and adversarial loss: the data here are small.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Downsample, ResBlock, Upsample, conv_nd, group_norm

#: Log-variances are clamped here (exp(-30) to exp(20)) so a collapsing posterior cannot overflow.
LOGVAR_RANGE = (-30.0, 20.0)


class GaussianAutoencoder(nn.Module):
    """``self.encoder`` maps a batch to the mean and log-variance of a diagonal Gaussian over the latent,
    stacked along dim 1; ``self.decoder`` maps a latent back. Subclasses build both and check inputs in
    ``check_input``."""

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError for a batch the encoder cannot take."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the posterior over the latent of each example of ``x``."""
        self.check_input(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction from the latent mean + exp(logvar / 2) * noise, mean, logvar)."""
        mean, logvar = self.encode(x)
        return self.decode(mean + torch.exp(0.5 * logvar) * noise.to(mean.dtype)), mean, logvar


class ConvAutoencoder(GaussianAutoencoder):
    def __init__(self, dims: int, in_channels: int, latent_channels: int = 4, channels: int = 64,
                 channel_mult=(1, 2, 2), num_res_blocks: int = 1):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        self.dims, self.in_channels, self.latent_channels = dims, in_channels, latent_channels
        self.num_levels = len(channel_mult)
        widths = [channels * m for m in channel_mult]

        encoder = [conv_nd(dims, in_channels, widths[0], 3, padding=1)]
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                encoder.append(ResBlock(dims, ch, width, 0))
                ch = width
            if level != self.num_levels - 1:
                encoder.append(Downsample(dims, ch))
        encoder += [ResBlock(dims, ch, ch, 0), group_norm(ch), nn.SiLU(),
                    conv_nd(dims, ch, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*encoder)

        decoder = [conv_nd(dims, latent_channels, ch, 3, padding=1), ResBlock(dims, ch, ch, 0)]
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks):
                decoder.append(ResBlock(dims, ch, width, 0))
                ch = width
            if level != 0:
                decoder.append(Upsample(dims, ch))
        decoder += [group_norm(ch), nn.SiLU(), conv_nd(dims, ch, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)

    @property
    def downsample_factor(self) -> int:
        """Every spatial size of the input must be a multiple of this; the latent is this much smaller."""
        return 2 ** (self.num_levels - 1)

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The latent shape (C_z, *sizes / factor) of one example of shape ``shape`` (C, *sizes)."""
        return (self.latent_channels, *(s // self.downsample_factor for s in shape[1:]))

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"the autoencoder expects ({'B, C, T' if self.dims == 1 else 'B, C, H, W'}) with "
                             f"C = {self.in_channels}, got shape {tuple(x.shape)}")
        if any(s % self.downsample_factor for s in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be divisible by {self.downsample_factor} "
                             f"(2 ** (len(channel_mult) - 1))")


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over each example's latent entries: (B,)."""
    return 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float()).flatten(1).sum(1)


def reconstruction_error(x_hat: torch.Tensor, x: torch.Tensor, kind: str,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example mean absolute ("l1") or squared ("l2") error, over the real entries only where
    ``mask`` (broadcastable to x, 1 = data, 0 = padding) is given: (B,)."""
    diff = x_hat.float() - x.float()
    err = (diff.abs() if kind == "l1" else diff ** 2).flatten(1)
    if mask is None:
        return err.mean(1)
    m = torch.broadcast_to(mask.to(err.dtype), x.shape).flatten(1)
    return (err * m).sum(1) / m.sum(1).clamp(min=1.0)

