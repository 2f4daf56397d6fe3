"""A small CNN over log-mel features that names the class of a clip; the judge of generated audio.

Its penultimate layer is the embedding in which generated and real clips are compared (the audio
counterpart of FID's Inception features). The features are computed inside the network, from the
waveform, with settings fixed here so that they do not depend on the recipe's encoder.
"""
from __future__ import annotations

import math

import torch
import torchaudio.transforms as T
from torch import nn


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class ClipClassifier(nn.Module):
    """(B, 1, T) waveforms -> class logits; ``embed`` gives the (B, embed_dim) features."""

    def __init__(self, sample_rate: int, num_classes: int, n_mels: int = 40, width: int = 16, embed_dim: int = 64):
        super().__init__()
        n_fft = 2 ** round(math.log2(0.032 * sample_rate))  # ~32 ms windows at any rate
        self.log_mel = T.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=n_fft // 2, n_mels=n_mels)
        self.net = nn.Sequential(
            nn.BatchNorm2d(1),  # standardises the log-mel input with statistics learned in training
            _conv_block(1, width), nn.MaxPool2d(2),
            _conv_block(width, 2 * width), nn.MaxPool2d(2),
            _conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, embed_dim), nn.ReLU(),
        )
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.log_mel(x).clamp_min(1e-5).log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
