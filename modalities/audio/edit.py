"""Reading clips and masks for editing (``multidiff edit``), and continuing a clip.

A clip must have the model's sample rate (no silent resampling); it is prepared as the training clips
were (mono, trimmed, fitted to the model's length, loudness-normalised). Mask spec: ``time=a-b``, the
span in seconds to REGENERATE (``keep=time=a-b`` keeps it instead).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from . import preprocess
from .data import _prepare
from .files import read_audio

SPAN = re.compile(r"time=([0-9.]+)-([0-9.]+)")


def read_clip(path: Path, cfg: dict) -> torch.Tensor:
    """(1, T) at the model's rate and length."""
    return _prepare(_read_mono(Path(path), cfg), cfg["data"])[0][None]


def time_mask(spec: str, clip: torch.Tensor, cfg: dict) -> torch.Tensor:
    """(1, T) float mask, 1 = keep."""
    keep = spec.startswith("keep=")
    m = SPAN.fullmatch(spec.removeprefix("keep="))
    if m is None:
        raise ValueError(f"unknown audio mask {spec!r}; use time=a-b (seconds to regenerate) or keep=time=a-b")
    rate, length = int(cfg["data"]["sample_rate"]), clip.shape[-1]
    start, end = round(float(m.group(1)) * rate), round(float(m.group(2)) * rate)
    if not 0 <= start < end <= length:
        raise ValueError(f"mask {spec!r}: the span must lie within the clip's {length / rate:.3f} s, start before end")
    inside = torch.zeros(1, length, dtype=torch.bool)
    inside[:, start:end] = True
    return (inside if keep else ~inside).float()


def continuation(path: Path, seconds: float, cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(window (1, T), mask (1, T), head): the window holds the end of the clip then room for ``seconds``
    more; the continued clip is head followed by the edited window."""
    data = cfg["data"]
    rate, length = int(data["sample_rate"]), int(data["length"])
    new = round(seconds * rate)
    if not 0 < new < length:
        raise ValueError(f"--seconds must be above 0 and below the model's clip length, {length / rate:.3f} s")
    wave = _read_mono(Path(path), cfg)
    wave = preprocess.normalise_loudness(wave, len(wave), data.get("loudness", "none"),
                                         float(data.get("target_db", -20.0)))
    context = min(len(wave), length - new)
    window, mask = torch.zeros(1, length), torch.zeros(1, length)
    window[0, :context], mask[0, :context] = wave[len(wave) - context:], 1
    return window, mask, wave[None, : len(wave) - context]


def _read_mono(path: Path, cfg: dict) -> torch.Tensor:
    wave, rate = read_audio(path)
    expected = int(cfg["data"]["sample_rate"])
    if rate != expected:
        raise ValueError(f"{path}: sample rate {rate} Hz, the model's is {expected} Hz (resample the file first)")
    return preprocess.to_mono(wave)
