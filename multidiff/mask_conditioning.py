"""Mask-conditioned networks: inpainting-specialised models that see the known data and the mask.

``[edit] mask_conditioned = true`` in a recipe wraps the modality's backbone: the network input is
[x_t, mask * known, mask] stacked along the feature axis (channels for images and audio, coordinates for
points), so the modality builds its backbone for 2C + 1 input features and the first C outputs are the
prediction (as in Stable Diffusion's inpainting UNet). In training the wrapper is given the clean data
and draws its own random masks (from the global generator, which the trainer seeds per step as it does
for dropout): ``EMPTY_SHARE`` of them empty, so the model still generates from nothing; of the others on a
grid, ``HALF_SHARE`` keep one side of a random cut across one axis (the top rows of an image, the start of a
clip: completion and continuation, which boxes alone rarely show) and the rest the inside or the outside
of a random box; for point clouds, the points beyond a random plane. ``multidiff.sample(..., known=,
known_mask=)`` passes the data and the mask in.
"""
from __future__ import annotations

import torch
from torch import nn

EMPTY_SHARE = 0.2
HALF_SHARE = 0.4


class MaskConditioned(nn.Module):
    mask_conditioned = True

    def __init__(self, backbone: nn.Module, channels: int, feature_axis: int):
        super().__init__()
        self.backbone = backbone
        self.channels = channels
        self.feature_axis = feature_axis          # in the batch tensor: 1 (channels first) or -1 (points)

    def forward(self, x, t, cond=None, known=None, mask=None):
        if known is None:
            known, mask = torch.zeros_like(x), torch.zeros_like(x.narrow(self.feature_axis, 0, 1))
        elif mask is None:
            mask = random_masks(known, self.feature_axis)
        repeat = x.shape[0] // known.shape[0]                           # a guided batch holds x twice
        mask = torch.broadcast_to(mask, known.shape[:1] + mask.shape[1:]).to(x.dtype)
        mask = mask.expand_as(known).narrow(self.feature_axis, 0, 1)
        known, mask = known.to(x.dtype).repeat(repeat, *[1] * (x.ndim - 1)), mask.repeat(repeat, *[1] * (x.ndim - 1))
        out = self.backbone(torch.cat([x, known * mask, mask], dim=self.feature_axis), t, cond)
        return out.narrow(self.feature_axis, 0, self.channels)


def random_masks(x0: torch.Tensor, feature_axis: int) -> torch.Tensor:
    """Training masks (1 = known), one per example, with a size-1 feature axis."""
    batch, device = x0.shape[0], x0.device
    if feature_axis == 1:                                               # a grid: a random box, in or out
        grid = x0.shape[2:]
        inside = torch.ones(batch, *grid, dtype=torch.bool, device=device)
        for axis, size in enumerate(grid):
            length = (torch.rand(batch, device=device) * 0.6 + 0.2) * size
            start = torch.rand(batch, device=device) * (size - length)
            position = torch.arange(size, device=device).view(1, *[1] * axis, size, *[1] * (len(grid) - axis - 1))
            view = (batch, *[1] * len(grid))
            inside &= (position >= start.view(view)) & (position < (start + length).view(view))
        keep_inside = torch.rand(batch, device=device).view(batch, *[1] * len(grid)) < 0.5
        mask = torch.where(keep_inside, inside, ~inside)
        half = (torch.rand(batch, device=device) < HALF_SHARE).view(batch, *[1] * len(grid))
        mask = torch.where(half, half_masks(batch, grid, device), mask)[:, None]
    else:                                                               # points: beyond a random plane
        direction = torch.nn.functional.normalize(torch.randn(batch, 1, x0.shape[-1], device=device), dim=-1)
        height = (x0 * direction).sum(-1)                               # (B, N)
        cut = torch.quantile(height, torch.rand(batch, device=device) * 0.6 + 0.2, dim=1).diagonal()
        mask = (height > cut[:, None])[..., None]
    empty = torch.rand(batch, device=device) < EMPTY_SHARE
    return (mask & ~empty.view(batch, *[1] * (mask.ndim - 1))).to(x0.dtype)


def half_masks(batch: int, grid: tuple[int, ...], device) -> torch.Tensor:
    """(batch, *grid) booleans: per example, the positions on one side (either) of a cut across a random
    axis at 20-80% of its length."""
    axis = torch.randint(len(grid), (batch,), device=device)
    fraction = torch.rand(batch, device=device) * 0.6 + 0.2
    before = torch.rand(batch, device=device) < 0.5
    mask = torch.zeros(batch, *grid, dtype=torch.bool, device=device)
    for a, size in enumerate(grid):
        shape = (1, *[1] * a, size, *[1] * (len(grid) - a - 1))
        position = (torch.arange(size, device=device) + 0.5).view(shape) / size
        view = (batch, *[1] * len(grid))
        side = torch.where(before.view(view), position < fraction.view(view), position >= fraction.view(view))
        mask |= side & (axis == a).view(view)
    return mask


def build(modality, cfg: dict, shape: tuple[int, ...], num_classes: int) -> MaskConditioned:
    """The modality's backbone for 2C + 1 input features, wrapped."""
    axis = modality.feature_axis
    wide = list(shape)
    wide[axis] = 2 * shape[axis] + 1
    return MaskConditioned(modality.backbone(cfg, tuple(wide), num_classes), shape[axis], 1 + axis % len(shape))
