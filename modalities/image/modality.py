"""The image modality: folders / IDX / synthetic shapes in, a 2D UNet, PNG files out."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from multidiff.conditioning import encoders
from multidiff.modality import Modality
from multidiff.nn.unet import UNet

from .autoencoder import AUTOENCODER_DEFAULTS, image_autoencoder
from .data import DATA_DEFAULTS, image_dataset
from .edit import image_mask, read_image
from .io import save_grid, write_samples
from .metrics import CLASSIFIER_STEPS, evaluate_images

MODEL_DEFAULTS = {"channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attn_levels": [],
                  "num_heads": 4, "dropout": 0.0}


class ImageModality(Modality):
    name = "image"
    cond_key = "class"
    sections = {
        "data": DATA_DEFAULTS,       # what each key means: modalities/image/data.py
        "encoder": {},               # pixels in [-1, 1] need no settings
        "model": MODEL_DEFAULTS,     # keyword arguments of multidiff.nn.unet.UNet (dims = 2)
        # classifier_steps: Adam steps of the eval CNN; inception_weights: a local FID Inception file
        "eval": {"classifier_steps": CLASSIFIER_STEPS, "inception_weights": ""},
    }
    autoencoder_model = AUTOENCODER_DEFAULTS   # keyword arguments of multidiff.nn.autoencoder.ConvAutoencoder

    def reads_files(self, cfg: dict) -> bool:
        return cfg["data"]["source"] != "shapes"

    def dataset(self, cfg: dict, split: str):
        return image_dataset(cfg, split)

    def autoencoder(self, cfg: dict, shape) -> nn.Module:
        return image_autoencoder(cfg, shape)

    def backbone(self, cfg: dict, shape, num_classes: int) -> nn.Module:
        """A 2D UNet sized by ``[model]`` (keys as in ``MODEL_DEFAULTS``)."""
        if len(shape) != 3:
            raise ValueError(f"the image modality works on (C, H, W) images, got examples of shape {tuple(shape)}")
        m = cfg["model"]
        factor = 2 ** (len(m["channel_mult"]) - 1)
        if shape[1] % factor or shape[2] % factor:
            raise ValueError(f"images of {shape[1]}x{shape[2]} pixels do not halve {len(m['channel_mult']) - 1} times "
                             f"(model.channel_mult = {m['channel_mult']}); pick a data.resolution divisible by {factor}")
        return UNet(2, shape[0], channels=m["channels"], channel_mult=tuple(m["channel_mult"]),
                    num_res_blocks=m["num_res_blocks"], attn_levels=tuple(m["attn_levels"]), num_heads=m["num_heads"],
                    num_classes=num_classes, dropout=m["dropout"], conditions=encoders.factory(cfg))

    def write(self, x: torch.Tensor, labels, out_dir: Path, cfg: dict) -> list[Path]:
        """One PNG per sample (``0000_<class>.png``...); the grid of them is the preview."""
        return write_samples(x, labels, _class_names(cfg), Path(out_dir))

    def preview(self, x: torch.Tensor, labels, path: Path, cfg: dict) -> Path:
        return save_grid(x, Path(path))

    def read_for_edit(self, path: Path, cfg: dict) -> torch.Tensor:
        return read_image(Path(path), cfg)

    def edit_mask(self, spec: str, x: torch.Tensor, cfg: dict) -> torch.Tensor:
        return image_mask(spec, x)

    def evaluate(self, x: torch.Tensor, labels, cfg: dict, cache_dir: Path) -> dict[str, float]:
        return evaluate_images(x, labels, cfg, Path(cache_dir))


def _class_names(cfg: dict) -> list[str]:
    """The class names the engine recorded for the trained run (cfg["dataset"]); [] when it has none."""
    return list(cfg.get("dataset", {}).get("class_names", []))
