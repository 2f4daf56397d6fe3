"""Networks that name the class of a clip from its log-mel features: the judges of generated audio.

Their penultimate layer is the embedding in which generated and real clips are compared (the audio
counterpart of FID's Inception features). The features are computed inside the network, from the
waveform, with settings fixed here so that they do not depend on the recipe's encoder.

Two judges, chosen by a recipe's ``[eval] classifier``:
    "cnn"  ClipClassifier: three 2D convolutions over the (mel, frame) image, average-pooled. Enough for
           0.5 s clips (0.97 on FSDD's held-out digits) but it underfits whole 1 s utterances (0.90-0.92 on the
           held-out digits and 0.947 on its own training clips after 1,500 steps).
    "tcn"  TemporalClassifier: the mel bins as channels of 1D residual convolutions over time, dilated
           1, 2, 4 (a temporal-convolution keyword spotter, as TC-ResNet), mean and max pooled over
           frames: the word may sit anywhere in a padded clip. 1.00 on the held-out digits and speakers of
           whole FSDD utterances after 2,000 steps, in about the same time as the CNN's 1,500.
"""
from __future__ import annotations

import math

import torch
import torchaudio.transforms as T
from torch import nn


def _mel(sample_rate: int, n_mels: int) -> T.MelSpectrogram:
    """Mel power frames of ~32 ms windows at any rate, half overlapping."""
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))
    return T.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=n_fft // 2, n_mels=n_mels)


def _log(power: torch.Tensor) -> torch.Tensor:
    return power.clamp_min(1e-5).log()


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class ClipClassifier(nn.Module):
    """(B, 1, T) waveforms -> class logits; ``embed`` gives the (B, embed_dim) features."""

    def __init__(self, sample_rate: int, num_classes: int, n_mels: int = 40, width: int = 16, embed_dim: int = 64):
        super().__init__()
        self.log_mel = _mel(sample_rate, n_mels)
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
        return self.net(_log(self.log_mel(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation), nn.BatchNorm1d(channels), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation), nn.BatchNorm1d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.f(x))


class TemporalClassifier(nn.Module):
    """(B, 1, T) waveforms -> class logits through 1D convolutions over log-mel frames."""

    def __init__(self, sample_rate: int, num_classes: int, n_mels: int = 64, width: int = 96, blocks: int = 3,
                 embed_dim: int = 64):
        super().__init__()
        self.log_mel = _mel(sample_rate, n_mels)
        self.norm = nn.BatchNorm1d(n_mels)   # per mel bin, with statistics learned in training
        self.stem = nn.Sequential(nn.Conv1d(n_mels, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU())
        self.blocks = nn.Sequential(*[_Residual(width, 2 ** i) for i in range(blocks)])
        self.out = nn.Sequential(nn.Linear(2 * width, embed_dim), nn.ReLU())
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(self.norm(_log(self.log_mel(x))[:, 0])))
        return self.out(torch.cat([h.mean(-1), h.amax(-1)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


CLASSIFIERS = {"cnn": ClipClassifier, "tcn": TemporalClassifier}


def build_classifier(name: str, sample_rate: int, num_classes: int) -> nn.Module:
    """The judge named by a recipe's ``[eval] classifier``."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown audio classifier {name!r}; choose one of: {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name](sample_rate, num_classes)
