"""The tones recipe's pitch measure (librosa's pYIN): pure tones and chirps of each class are named
by construction, the synthetic clips almost all, silence never."""
import numpy as np
import torch

from modalities.audio import pitch
from modalities.audio.synthetic import CLASS_NAMES, synthetic_clips

RATE = 8000


def chirp(f_start, f_end, seconds=0.3, length=4096):
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * (f_start * t + (f_end - f_start) * t ** 2 / (2 * seconds)))
    return np.pad(wave, (0, length - len(wave)))


def test_each_class_is_named_from_its_pitch_contour():
    clips = torch.tensor(np.stack([chirp(300, 300), chirp(1300, 1300), chirp(300, 1300), chirp(1300, 300),
                                   chirp(440, 1000), np.zeros(4096)]), dtype=torch.float32)[:, None]
    heard = [pitch.tone_class(track) for track in pitch.pitch_tracks(clips, RATE)]
    named = ["low_tone", "high_tone", "rising_chirp", "falling_chirp", "rising_chirp"]
    assert heard == [CLASS_NAMES.index(n) for n in named] + [-1]  # silence: no pitch, no class


def test_the_synthetic_tones_score_near_one_and_shuffled_labels_near_chance():
    waves, labels = synthetic_clips(24, RATE, seed=3, split="test")
    clips = torch.stack([torch.nn.functional.pad(w, (0, 4096 - len(w))) for w in waves])[:, None]
    labels = torch.tensor(labels)
    assert pitch.accuracy(clips, labels, RATE) >= 0.9
    assert pitch.accuracy(clips, labels.roll(1), RATE) <= 0.2  # every label now names another class
