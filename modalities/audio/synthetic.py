"""A seeded synthetic dataset of tones and chirps, for the quickstart and the tests.

Four classes, told apart by pitch and its motion: a steady low tone (250-450 Hz), a steady high
tone (1000-1600 Hz), a chirp rising from a low to a high pitch, and one falling. Each clip lasts
0.15-0.45 s with 10 ms fades, a random phase and level, and a little white noise, so clips of one
class differ while the classes stay easy to tell apart by ear and by a classifier.
"""
from __future__ import annotations

import numpy as np
import torch

CLASS_NAMES = ["low_tone", "high_tone", "rising_chirp", "falling_chirp"]
LOW_HZ = (250.0, 450.0)      # the range of the low pitches (a low tone; where a chirp starts or ends)
HIGH_HZ = (1000.0, 1600.0)   # the range of the high pitches
_SPLIT_STREAM = {"train": 0, "test": 1}


def _chirp(f_start: float, f_end: float, n: int, rate: int, phase0: float) -> np.ndarray:
    """A linear chirp: instantaneous frequency goes from f_start to f_end over n samples."""
    t = np.arange(n) / rate
    duration = n / rate
    return np.sin(2 * np.pi * (f_start * t + (f_end - f_start) * t ** 2 / (2 * duration)) + phase0)


def synthetic_clips(n: int, sample_rate: int, seed: int, split: str) -> tuple[list[torch.Tensor], list[int]]:
    """``n`` mono clips (variable length, float32) and their class indices, balanced over the
    classes. The two splits draw from independent streams of the same seed."""
    if sample_rate < 2 * HIGH_HZ[1] + 400:
        raise ValueError(f"synthetic tones reach 1600 Hz; sample_rate {sample_rate} is too low (use >= 4000)")
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
    fade = int(0.01 * sample_rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    clips, labels = [], []
    for i in range(n):
        label = i % len(CLASS_NAMES)
        length = int(rng.uniform(0.15, 0.45) * sample_rate)
        low, high = rng.uniform(*LOW_HZ), rng.uniform(*HIGH_HZ)
        f_start, f_end = [(low, low), (high, high), (low, high), (high, low)][label]
        wave = _chirp(f_start, f_end, length, sample_rate, rng.uniform(0, 2 * np.pi)) * rng.uniform(0.3, 0.9)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
        wave += rng.normal(0.0, 0.003, length)
        clips.append(torch.from_numpy(wave.astype(np.float32)))
        labels.append(label)
    return clips, labels
