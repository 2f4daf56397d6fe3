"""The encoder of a latent-diffusion run: the modality's own encoder, then a trained autoencoder.

encode(x) = mean of the autoencoder's posterior at base.encode(x), times ``scale``;
decode(z) = base.decode(autoencoder.decode(z / scale)).
Padded batches (audio clips of several lengths): the data is zeroed over its padding before
encoding, and a latent frame is real where any sample of its window is (``latent_mask``), so
the diffusion loss skips the latents of silence-padding as the data's loss skips the padding.
``scale`` is 1 / (standard deviation of the latent means over the training set), so the diffusion
model sees unit-variance data, as its schedules assume (Rombach et al. 2022, section 4.3.2 and
their "scale_factor"). It is a buffer, like the base encoder's statistics and the autoencoder's
weights, so a latent run's checkpoint carries everything its samples need.
"""
from __future__ import annotations

import torch
from torch import nn

from multidiff.engine.errors import UserError
from multidiff.modality import Encoder

from .cache import dataset_latent_masks, encoded_training_set


class LatentEncoder(Encoder):
    def __init__(self, base: Encoder, autoencoder: nn.Module, record: dict):
        """``record``: where the autoencoder came from ({"path", "sha256", "step", "config"}, the
        autoencoder run's resolved config), kept in the latent run's ``cfg["dataset"]``."""
        super().__init__()
        self.base, self.autoencoder, self.record = base, autoencoder, record
        self.register_buffer("scale", torch.ones(()))
        #: whether fit and training_data keep the encoded training set on disk (``[latent] cache``)
        self.cache = False

    def fit(self, dataset) -> None:
        """Measure ``scale`` on the training set (the base encoder keeps the autoencoder run's statistics)."""
        expected = self.record["config"]["dataset"]["shape"]
        if list(dataset[0]["x"].shape) != list(expected):
            raise UserError(f"the autoencoder {self.record['path']} was trained on examples of shape {tuple(expected)}, "
                            f"this recipe's data has shape {tuple(dataset[0]['x'].shape)}")
        means, _ = encoded_training_set(self, dataset)
        masks = dataset_latent_masks(self, dataset)
        if masks is None:
            self.scale.fill_(1.0 / means.double().std().item())
            return
        weight = torch.broadcast_to(masks, means.shape).double()
        mean = (means * weight).sum() / weight.sum()
        self.scale.fill_(1.0 / (((means - mean) ** 2 * weight).sum() / weight.sum()).sqrt().item())

    @property
    def variable_length(self) -> bool:
        return self.base.variable_length

    def latent_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) sample mask -> (B, 1, T / factor) latent mask: 1 where any sample of a frame's window is real."""
        if mask.ndim != 3:
            raise UserError(f"latent diffusion takes padding masks of 1D sequences (B, 1, T) only, got shape "
                            f"{tuple(mask.shape)}")
        factor = self.autoencoder.downsample_factor
        return mask.reshape(*mask.shape[:-1], mask.shape[-1] // factor, factor).amax(-1)

    @torch.no_grad()
    def latent_means(self, x: torch.Tensor) -> torch.Tensor:
        """The unscaled posterior means of a data-space batch."""
        z, _ = self.base.encode(x, None)
        return self.autoencoder.encode(z)[0]

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        if mask is None:
            return self.latent_means(x) * self.scale, None
        return self.latent_means(x * mask) * self.scale, self.latent_mask(mask)

    def decode(self, z: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """``size``: how many elements (points) per example a set decoder emits; None = as many as it
        was trained on. Only an autoencoder with ``emits_any_size`` (the point autoencoder) takes it."""
        if size is None:
            return self.base.decode(self.autoencoder.decode(z / self.scale))
        if not getattr(self.autoencoder, "emits_any_size", False):
            raise UserError(f"the autoencoder {self.record.get('path', '')} decodes to a fixed size; only a "
                            f"point-cloud autoencoder takes a number of points")
        return self.base.decode(self.autoencoder.decode(z / self.scale, size))

    def describe(self) -> dict:
        return {"autoencoder": self.record}
