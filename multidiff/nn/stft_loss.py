"""Multi-resolution STFT distance between two batches of 1D signals (B, C, T).

At each (n_fft, hop) the spectral convergence ||S - S_hat||_F / ||S||_F plus the mean absolute
difference of log magnitudes, averaged over the resolutions (Yamamoto et al. 2020, Parallel WaveGAN).
Both magnitudes are floored ``FLOOR_DB`` under the target's loudest bin before the logarithm: below
that nothing is heard, and an unfloored log makes the near-silent bins (most of a tone's spectrum)
dominate the loss with huge gradients while the output is still near zero (on synthetic tones
the waveform L1 then never left the silent solution).
Short windows judge onsets, long ones pitch; a waveform L1 alone judges phase, which the ear barely
hears. With ``mask`` (1 = data, 0 = padding) both signals are zeroed over the padding first, so what
lies there never counts.
"""
from __future__ import annotations

import torch

RESOLUTIONS = ((1024, 256), (512, 128), (256, 64), (128, 32), (64, 16))
_EPS = 1e-5
FLOOR_DB = 50.0


def _magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    return torch.stft(x.flatten(0, -2), n_fft, hop, window=window, return_complex=True).abs()


def multi_resolution_stft(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None,
                          resolutions=RESOLUTIONS) -> torch.Tensor:
    """Per-example distance (B,), over the resolutions whose window fits the signal."""
    x_hat, x = x_hat.float(), x.float()
    if mask is not None:
        m = torch.broadcast_to(mask.to(x.dtype), x.shape)
        x_hat, x = x_hat * m, x * m
    batch, total = x.shape[0], 0.0
    used = [(n, h) for n, h in resolutions if n <= x.shape[-1]]
    for n_fft, hop in used:
        s_hat, s = _magnitude(x_hat, n_fft, hop), _magnitude(x, n_fft, hop)
        s_hat, s = s_hat.reshape(batch, -1), s.reshape(batch, -1)
        convergence = (s - s_hat).norm(dim=1) / s.norm(dim=1).clamp_min(_EPS)
        floor = (s.amax(1, keepdim=True) * 10 ** (-FLOOR_DB / 20)).clamp_min(_EPS)
        log_mag = (torch.maximum(s, floor).log() - torch.maximum(s_hat, floor).log()).abs().mean(1)
        total = total + convergence + log_mag
    return total / len(used)
