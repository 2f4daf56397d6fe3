"""The audio data type: spoken-digit (or any labelled) clips as waveforms or log-mel spectrograms."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from multidiff.conditioning import encoders
from multidiff.modality import Encoder, Modality
from multidiff.nn.unet import UNet

from . import data, evaluation, writers
from .autoencoder import AUTOENCODER_DEFAULTS, waveform_autoencoder
from .classifier import CLASSIFIERS
from .edit import read_clip, time_mask
from .encoders import build_encoder

_TUPLE_KEYS = ("channel_mult", "attn_levels")


class AudioModality(Modality):
    name = "audio"
    cond_key = "digit"
    sections = {
        # what each [data] key means: modalities/audio/data.py; "" / [] / 0.0 = not used
        "data": {"source": "folder", "path": "", "name_pattern": "", "labels_csv": "", "label_key": "",
                 "split_by": "", "test_range": [], "num_train": 512, "num_test": 128, "seed": 0,
                 "sample_rate": 8000, "length": 4096, "trim_db": 0.0, "loudness": "none", "target_db": -20.0,
                 "skip_bad_files": False, "conditional": True, "mask_padding": True},
        # representation "mel" | "waveform"; the rest are MelEncoder's settings (f_max 0.0 = Nyquist)
        "encoder": {"representation": "mel", "n_fft": 256, "hop_length": 64, "n_mels": 48, "f_min": 0.0,
                    "f_max": 0.0, "griffin_lim_iters": 64, "floor": 1e-4},
        # keyword arguments of multidiff.nn.unet.UNet, with its defaults
        "model": {"channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attn_levels": [],
                  "num_heads": 4, "dropout": 0.0},
        # the judge of `eval` (.classifier): "cnn" for short clips, "tcn" for whole utterances
        "eval": {"classifier_steps": 600, "classifier": "cnn"},
    }
    choices = {"eval.classifier": tuple(CLASSIFIERS)}
    autoencoder_model = AUTOENCODER_DEFAULTS   # keyword arguments of .autoencoder.WaveformAutoencoder

    def reads_files(self, cfg: dict) -> bool:
        return cfg["data"]["source"] != "synthetic"

    def dataset(self, cfg: dict, split: str) -> data.AudioClips:
        return data.load(cfg, split)

    def encoder(self, cfg: dict) -> Encoder:
        return build_encoder(cfg)

    def autoencoder(self, cfg: dict, shape) -> nn.Module:
        return waveform_autoencoder(cfg, shape)

    def backbone(self, cfg: dict, shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The shared UNet with 1D convolutions over time; channels = 1 (waveform) or n_mels (mel).
        ``[model]`` holds UNet's keyword arguments (channels, channel_mult, num_res_blocks, ...)."""
        if len(shape) != 2:
            raise ValueError(f"audio examples are (channels, time), got shape {tuple(shape)}")
        settings = {k: tuple(v) if k in _TUPLE_KEYS else v for k, v in cfg["model"].items()}
        net = UNet(dims=1, in_channels=shape[0], num_classes=num_classes, conditions=encoders.factory(cfg), **settings)
        if shape[1] % net.downsample_factor:
            raise ValueError(f"the UNet halves time {len(settings['channel_mult']) - 1} times, so "
                             f"the encoded length {shape[1]} must be a multiple of {net.downsample_factor}; "
                             f"change [data] length")
        return net

    def _class_names(self, cfg: dict) -> list[str]:
        """From the run's config when the engine recorded them, else from the training set."""
        if "class_names" in cfg.get("dataset", {}):
            return list(cfg["dataset"]["class_names"])
        return data.load(cfg, "train").class_names

    def write(self, x: torch.Tensor, labels: torch.Tensor | None, out_dir: Path, cfg: dict,
              lengths: torch.Tensor | None = None) -> list[Path]:
        d = cfg["data"]
        return writers.write_wavs(x, labels, out_dir, int(d["sample_rate"]), self._class_names(cfg), lengths,
                                  d.get("loudness", "none"), float(d.get("target_db", -20.0)))

    def length_of(self, cfg: dict, seconds: float) -> int:
        return max(1, round(seconds * int(cfg["data"]["sample_rate"])))

    def preview(self, x: torch.Tensor, labels: torch.Tensor | None, path: Path, cfg: dict) -> Path:
        return writers.preview_png(x, labels, path, int(cfg["data"]["sample_rate"]), self._class_names(cfg))

    def read_for_edit(self, path: Path, cfg: dict) -> torch.Tensor:
        return read_clip(Path(path), cfg)

    def edit_mask(self, spec: str, x: torch.Tensor, cfg: dict) -> torch.Tensor:
        return time_mask(spec, x, cfg)

    def classify(self, x: torch.Tensor, field: str, values: list[str], cfg: dict, cache_dir: Path):
        return evaluation.classify_field(x, field, values, cfg, cache_dir)

    def evaluate(self, x: torch.Tensor, labels: torch.Tensor | None, cfg: dict, cache_dir: Path) -> dict[str, float]:
        return evaluation.evaluate(x, labels, cfg, cache_dir)
