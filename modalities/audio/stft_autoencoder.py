"""The spectral waveform autoencoder: an STFT in, convolutions over frames, an inverse STFT out.

The strided-convolution codec (autoencoder.py) must learn to synthesise every sample, with upsampling
layers that alias; on a CPU budget its spectra stay smeared. Here the frame rate of the latent is the
STFT's hop, so every layer works on ``T / hop`` frames, and the decoder only predicts each frame's
log magnitude and phase, which one inverse STFT turns into samples, as in the Vocos vocoder (Siuzdenko
et al. 2023). The encoder sees the compressed complex spectrum (magnitude ** 0.3 with its phase, and
the log magnitude), so the latent can keep the phase too. No normalisation layers: a clip's level must
pass through (it lives in the log magnitudes as an offset, which a per-frame norm would remove).

Framing is "same": the clip is padded by (n_fft - hop) / 2 on each side, giving exactly T / hop
frames, and the inverse divides the overlap-added frames by the summed squared window, which is
positive over the whole clip; ``istft(stft(x)) == x`` up to rounding.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from multidiff.nn.autoencoder import GaussianAutoencoder

from .autoencoder import ResidualUnit

#: Predicted log magnitudes are capped here (e^6 ~ 400, far above any bin of a clip in [-1, 1]).
LOG_MAGNITUDE_MAX = 6.0
_COMPRESSION = 0.3
_EPS = 1e-5


class Frames(nn.Module):
    """A "same"-padded STFT and its inverse with a Hann window, as a module so the window moves with it."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % hop or (n_fft - hop) % 2:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop}) with n_fft - hop even")
        self.n_fft, self.hop, self.pad = n_fft, hop, (n_fft - hop) // 2
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) real -> (B, n_fft // 2 + 1, T // hop) complex."""
        frames = F.pad(x, (self.pad, self.pad)).unfold(-1, self.n_fft, self.hop)
        return torch.fft.rfft(frames * self.window.to(x.dtype), dim=-1).transpose(1, 2)

    def istft(self, spectrum: torch.Tensor) -> torch.Tensor:
        """(B, n_fft // 2 + 1, N) complex -> (B, N * hop) real: windowed overlap-add over the squared window."""
        n = spectrum.shape[-1]
        frames = torch.fft.irfft(spectrum.transpose(1, 2), n=self.n_fft, dim=-1) * self.window
        length = (n - 1) * self.hop + self.n_fft

        def overlap_add(columns: torch.Tensor) -> torch.Tensor:      # (B, n_fft, N) -> (B, length)
            return F.fold(columns, (1, length), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]

        signal = overlap_add(frames.transpose(1, 2))
        envelope = overlap_add((self.window ** 2)[None, :, None].expand(1, self.n_fft, n))
        return (signal / envelope.clamp_min(1e-8))[:, self.pad:self.pad + n * self.hop]


class SpectrumFeatures(nn.Module):
    """(B, 1, T) clip -> (B, 3 * bins, T // hop): the compressed complex spectrum and the log magnitude."""

    def __init__(self, frames: Frames):
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = self.frames.stft(x[:, 0].float())
        magnitude = spectrum.abs()
        compressed = spectrum * (magnitude + _EPS) ** (_COMPRESSION - 1.0)
        return torch.cat([compressed.real, compressed.imag, (magnitude + _EPS).log()], dim=1).to(x.dtype)


class SpectrumToClip(nn.Module):
    """(B, 3 * bins, N) -> (B, 1, N * hop): a log magnitude and a phase direction per bin, inverted."""

    def __init__(self, frames: Frames):
        super().__init__()
        self.frames = frames

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        log_magnitude, re, im = h.float().chunk(3, dim=1)
        magnitude = log_magnitude.clamp(max=LOG_MAGNITUDE_MAX).exp()
        norm = torch.sqrt(re ** 2 + im ** 2 + 1e-8)
        spectrum = torch.complex(magnitude * re / norm, magnitude * im / norm)
        return self.frames.istft(spectrum)[:, None].to(h.dtype)


class SpectralAutoencoder(GaussianAutoencoder):
    def __init__(self, in_channels: int = 1, latent_channels: int = 32, channels: int = 128,
                 n_fft: int = 256, hop: int = 64, dilations=(1, 3, 9), blocks: int = 2):
        super().__init__()
        if in_channels != 1:
            raise ValueError(f"the spectral autoencoder works on mono clips (1 channel), got {in_channels}")
        self.in_channels, self.latent_channels = in_channels, latent_channels
        frames = Frames(n_fft, hop)
        self.hop, bins = hop, n_fft // 2 + 1
        units = lambda: [ResidualUnit(channels, d) for _ in range(blocks) for d in dilations]  # noqa: E731
        self.encoder = nn.Sequential(SpectrumFeatures(frames), nn.Conv1d(3 * bins, channels, 7, padding=3),
                                     *units(), nn.SiLU(), nn.Conv1d(channels, 2 * latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(nn.Conv1d(latent_channels, channels, 7, padding=3), *units(),
                                     nn.SiLU(), nn.Conv1d(channels, 3 * bins, 7, padding=3), SpectrumToClip(frames))

    @property
    def downsample_factor(self) -> int:
        """Clip lengths must be a multiple of this (the hop); the latent has one frame per hop."""
        return self.hop

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.latent_channels, shape[-1] // self.downsample_factor)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"the spectral autoencoder expects (B, 1, T), got shape {tuple(x.shape)}")
        if x.shape[-1] % self.downsample_factor:
            raise ValueError(f"clip length {x.shape[-1]} must be a multiple of {self.downsample_factor} "
                             f"(model.hop)")
