"""The tones recipe's own measure: is a clip's pitch contour, tracked by pYIN, the one of its class?

The synthetic classes (``synthetic.py``) differ only in pitch and its motion, so a pitch tracker
names them without any training: librosa's pYIN (Mauch & Dixon 2014) gives the pitch of each
voiced frame; the clip's pitch moves if the median over the last third of its voiced frames lies
more than ``MOTION_OCTAVES`` from the median over the first third (up: a rising chirp, down: a
falling one), and a steady clip is a low or a high tone by its median pitch against the geometric
middle of the two ranges. A rising chirp's pitch moves at least 0.74 octave between the middles of
its first and last thirds (450 Hz to 1000 Hz over the clip); a steady tone's, not at all.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .synthetic import CLASS_NAMES, HIGH_HZ, LOW_HZ

MOTION_OCTAVES = 0.35
FRAME_S = 0.064            # pYIN analysis window (512 samples at 8 kHz): two periods of 31 Hz, short for a chirp
MIN_VOICED_FRAMES = 3      # fewer voiced frames: no pitch heard, the clip is unrecognised (-1)
SEMITONES_PER_BIN = 0.5    # pYIN's pitch grid; librosa's default 0.1 costs 15x the time for no class changed


def pitch_tracks(x: torch.Tensor, sample_rate: int) -> np.ndarray:
    """(N, 1, T) clips -> (N, frames) pitch in Hz, NaN where pYIN hears no voiced pitch."""
    import librosa  # here, not at the top: importing it takes seconds that training and sampling need not pay

    frame = 2 ** round(math.log2(FRAME_S * sample_rate))
    f0, voiced, _ = librosa.pyin(x[:, 0].double().numpy(), fmin=0.6 * LOW_HZ[0], fmax=1.25 * HIGH_HZ[1],
                                 sr=sample_rate, frame_length=frame, hop_length=frame // 4,
                                 resolution=SEMITONES_PER_BIN)
    return np.where(voiced, f0, np.nan)


def tone_class(track: np.ndarray) -> int:
    """The class index a pitch track (Hz, NaN = unvoiced) belongs to, or -1 when it has too little pitch."""
    octaves = np.log2(track[np.isfinite(track)])
    if len(octaves) < MIN_VOICED_FRAMES:
        return -1
    third = max(1, len(octaves) // 3)
    motion = np.median(octaves[-third:]) - np.median(octaves[:third])
    if motion > MOTION_OCTAVES:
        return CLASS_NAMES.index("rising_chirp")
    if motion < -MOTION_OCTAVES:
        return CLASS_NAMES.index("falling_chirp")
    middle = 0.5 * (math.log2(LOW_HZ[1]) + math.log2(HIGH_HZ[0]))
    return CLASS_NAMES.index("low_tone" if np.median(octaves) < middle else "high_tone")


def accuracy(x: torch.Tensor, labels: torch.Tensor, sample_rate: int) -> float:
    """The share of clips ``x`` (N, 1, T) whose pitch contour is that of their class ``labels``."""
    heard = [tone_class(track) for track in pitch_tracks(x.detach().float().cpu(), sample_rate)]
    return float(np.mean(np.asarray(heard) == labels.cpu().numpy()))
