"""Turning one decoded audio file into a fixed-length training clip.

The steps run in this order: mono mix-down, resampling, silence trimming, crop or pad to the
clip length (remembering how many samples are real), loudness normalisation of the real part.
Every function takes and returns float32 tensors of shape (channels, samples) or (samples,).
"""
from __future__ import annotations

import math

import torch
import torchaudio.functional as AF


def to_mono(wave: torch.Tensor) -> torch.Tensor:
    """(channels, samples) -> (samples,), the mean of the channels."""
    return wave.mean(dim=0)


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio's windowed sinc); a no-op when the rates agree."""
    if orig_rate == new_rate:
        return wave
    return AF.resample(wave, orig_rate, new_rate)


def trim_silence(wave: torch.Tensor, top_db: float, frame: int) -> torch.Tensor:
    """Drop leading and trailing frames whose RMS lies more than ``top_db`` below the loudest frame.

    The clip is cut on frame boundaries of ``frame`` samples; an all-zero clip is returned unchanged.
    """
    n_frames = math.ceil(len(wave) / frame)
    padded = torch.nn.functional.pad(wave, (0, n_frames * frame - len(wave)))
    rms = padded.view(n_frames, frame).pow(2).mean(dim=1).sqrt()
    peak = rms.max()
    if peak <= 0:
        return wave
    loud = torch.nonzero(rms >= peak * 10 ** (-top_db / 20)).flatten()
    return wave[loud[0] * frame:min((loud[-1] + 1) * frame, len(wave))]


def fit_length(wave: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
    """Crop the end off or zero-pad at the end to ``length`` samples; also return the real sample count."""
    real = min(len(wave), length)
    out = torch.zeros(length, dtype=wave.dtype)
    out[:real] = wave[:real]
    return out, real


def normalise_loudness(wave: torch.Tensor, real: int, mode: str, target_db: float) -> torch.Tensor:
    """Scale the clip so that the RMS (mode "rms") or the peak (mode "peak") of its first ``real``
    samples sits at ``target_db`` dB full scale; mode "none" leaves it alone, as does silence."""
    if mode == "none":
        return wave
    part = wave[:real]
    if mode == "rms":
        level = part.pow(2).mean().sqrt() if real else wave.new_zeros(())
    elif mode == "peak":
        level = part.abs().max() if real else wave.new_zeros(())
    else:
        raise ValueError(f"unknown loudness mode {mode!r}; expected 'rms', 'peak' or 'none'")
    if level <= 0:
        return wave
    return wave * (10 ** (target_db / 20) / level)
