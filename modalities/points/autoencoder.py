"""The point-cloud autoencoder: a set of points to one shape code, and the code to any number of points.

Encoder (PointNet, Qi et al. 2017): a shared MLP lifts every point on its own, then max- and
mean-pooling over the points give one vector per cloud, so the code does not depend on the points'
order; a final MLP maps it to the mean and log-variance of a diagonal Gaussian over ``latent_dim``
numbers.
Decoder (a folding decoder, as FoldingNet and AtlasNet's sphere variant): each output point is a
function of the code and of one point of a base set on the unit sphere, through residual MLP blocks
modulated by the code (a scale and shift per block). Points never interact, so a cloud of N points
costs N evaluations and N can be anything. The base set is a spherical Fibonacci lattice of N
points (nearly uniform for any N, so outputs of any size cover the shape evenly); while training it
is randomly rotated per cloud (torch's global generator, seeded per step by the trainer), so the
decoder learns the whole sphere rather than one lattice, and decoding in eval mode is deterministic.
Because the decoder never sees a fixed point count, training decodes at most ``train_points`` points
per cloud, fewer than the clouds may hold, the Chamfer loss still comparing them with every input
point: the decoder's cost falls in proportion while the encoder keeps seeing whole clouds.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from multidiff.nn.autoencoder import LOGVAR_RANGE

AUTOENCODER_DEFAULTS = {"latent_dim": 128, "width": 128, "depth": 3, "train_points": 1024}
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def fibonacci_sphere(n: int, device=None) -> torch.Tensor:
    """``n`` nearly evenly spread points on the unit sphere (n, 3): z in even steps, the longitude
    advancing by the golden angle."""
    i = torch.arange(n, dtype=torch.float32, device=device)
    z = 1.0 - (2.0 * i + 1.0) / n
    r = (1.0 - z * z).clamp(min=0.0).sqrt()
    phi = i * GOLDEN_ANGLE
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1)


def random_rotations(b: int, device=None) -> torch.Tensor:
    """``b`` rotation matrices (b, 3, 3), uniform over SO(3) (QR of Gaussian matrices, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(b, 3, 3, device=device))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    return q * torch.sign(torch.linalg.det(q))[:, None, None]


class FoldingBlock(nn.Module):
    """h + MLP(LayerNorm(h) * (1 + scale) + shift), scale and shift from the shape code."""

    def __init__(self, width: int, latent_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.modulation = nn.Linear(latent_dim, 2 * width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(code)[:, None].chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class PointSetAutoencoder(nn.Module):
    """encode((B, N, 3)) -> (mean, logvar) of shape (B, latent_dim); decode(z, n) -> (B, n, 3)."""

    emits_any_size = True  # multidiff.latent.LatentEncoder.decode may ask for any number of points

    def __init__(self, n_points: int, latent_dim: int = 128, width: int = 128, depth: int = 3,
                 train_points: int = 1024):
        super().__init__()
        self.n_points, self.latent_dim, self.train_points = n_points, latent_dim, train_points
        self.lift = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, 2 * width))
        self.head = nn.Sequential(nn.Linear(4 * width, 2 * width), nn.SiLU(), nn.Linear(2 * width, 2 * latent_dim))
        self.base = nn.Linear(3, width)
        self.code = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(FoldingBlock(width, latent_dim) for _ in range(depth))
        self.out = nn.Linear(width, 3)

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.latent_dim,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"the point autoencoder expects clouds (B, N, 3), got shape {tuple(x.shape)}")
        h = self.lift(x)
        pooled = torch.cat([h.amax(1), h.mean(1)], dim=1)
        mean, logvar = self.head(pooled).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor, n_points: int | None = None) -> torch.Tensor:
        """``n_points`` points per code (default: as many as the training clouds had)."""
        n = n_points or self.n_points
        base = fibonacci_sphere(n, z.device).expand(len(z), n, 3)
        if self.training:
            base = base @ random_rotations(len(z), z.device)
        return self.fold(z, base.to(z.dtype))

    def fold(self, z: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The point of each base point (B, n, 3) on the shape of each code z (B, latent_dim), point by point."""
        h = self.base(base) + self.code(z)[:, None]
        for block in self.blocks:
            h = block(h, z)
        return self.out(F.silu(h))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction from mean + exp(logvar / 2) * noise, mean, logvar); the reconstruction has
        as many points as x, or ``train_points`` when x has more."""
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * noise.to(mean.dtype)
        return self.decode(z, min(self.train_points, x.shape[1])), mean, logvar


def point_autoencoder(cfg: dict, shape) -> PointSetAutoencoder:
    """The autoencoder of a points ``kind = "autoencoder"`` recipe, for clouds of shape (N, 3)."""
    if len(shape) != 2 or shape[1] != 3:
        raise ValueError(f"the point autoencoder works on clouds of shape (N, 3), got examples of shape {tuple(shape)}")
    m = {**AUTOENCODER_DEFAULTS, **cfg.get("model", {})}
    for key in AUTOENCODER_DEFAULTS:
        if m[key] < 1:
            raise ValueError(f"model.{key} must be at least 1, got {m[key]}")
    return PointSetAutoencoder(shape[0], latent_dim=m["latent_dim"], width=m["width"], depth=m["depth"],
                               train_points=m["train_points"])
