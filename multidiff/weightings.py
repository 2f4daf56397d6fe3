"""Loss weightings: where training times fall and how much each example's error counts.

Each weighting states its weight w on the squared error of the network's own target; f is the
prediction's ``x0_error_scale`` (|x0_hat - x0| = f |out - target|), so w / f^2 is the weight in x0 space:

    uniform   w = 1                             (DDPM's "simple" loss for eps; likewise for x0, v)
    min_snr   w = min(snr, gamma) f^2           (Hang et al. 2023): x0-space weight min(snr, gamma)
    edm       w = (s^2 + sd^2) / (s sd)^2 f^2   (Karras et al. 2022), s = sigma / alpha; = 1 for the
                                                edm prediction with the same sigma_data sd
Times are uniform in [0, 1] for uniform and min_snr; edm draws s ~ LogNormal(p_mean, p_std) and maps
it to t. Like schedules and predictions: ``get("min_snr", gamma=5.0)`` or ``MinSNR(5.0)``.
"""
from __future__ import annotations

import torch

from . import named
from .parameterizations import Prediction
from .schedules import Schedule

T_MIN = 1e-3   # uniform times stay off t = 0 (logSNR = +inf there): the smallest step of a 1000-step grid;
               # sampling never asks the network below the t_min it was trained with (multidiff.steps)


class Weighting:
    """Base class: uniform times; subclasses give ``weight`` (and EDM its own ``times``)."""

    name = ""

    def times(self, schedule: Schedule, batch: int, *, generator=None, device=None, t_min: float = T_MIN) -> torch.Tensor:
        """Training times t (B,) float64 in [t_min, 1]."""
        return torch.rand(batch, generator=generator, dtype=torch.float64, device=device).clamp(min=t_min)

    def weight(self, prediction: Prediction, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Per-example weight (B,) on the squared error of ``prediction``'s target."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Uniform(Weighting):
    name = "uniform"

    def weight(self, prediction, alpha, sigma):
        return torch.ones_like(alpha)


class MinSNR(Weighting):
    """Min-SNR-gamma (Hang et al. 2023)."""

    name = "min_snr"

    def __init__(self, gamma: float = 5.0):
        if not gamma > 0:
            raise ValueError(f"min_snr weighting needs gamma > 0, got {gamma}")
        self.gamma = float(gamma)

    def weight(self, prediction, alpha, sigma):
        snr = (alpha / sigma) ** 2
        return snr.clamp(max=self.gamma) * prediction.x0_error_scale(alpha, sigma) ** 2

    def __repr__(self) -> str:
        return f"MinSNR(gamma={self.gamma})"


class EDMWeighting(Weighting):
    """Karras et al. (2022): log-normal noise levels and the weight that makes EDM's target unit-weighted."""

    name = "edm"

    def __init__(self, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2):
        if not sigma_data > 0 or not p_std > 0:
            raise ValueError(f"edm weighting needs sigma_data > 0 and p_std > 0, got {sigma_data}, {p_std}")
        self.sigma_data, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)

    def times(self, schedule, batch, *, generator=None, device=None, t_min: float = T_MIN):
        """EDM's log-normal noise levels, mapped to times (their tail may fall below ``t_min``)."""
        log_s = self.p_mean + self.p_std * torch.randn(batch, generator=generator, dtype=torch.float64, device=device)
        return schedule.t_from_logsnr(-2.0 * log_s)

    def weight(self, prediction, alpha, sigma):
        s = sigma / alpha
        f2 = prediction.x0_error_scale(alpha, sigma) ** 2
        return (s * s + self.sigma_data**2) / (s * self.sigma_data) ** 2 * f2

    def __repr__(self) -> str:
        return f"EDMWeighting(sigma_data={self.sigma_data}, p_mean={self.p_mean}, p_std={self.p_std})"


WEIGHTINGS = {cls.name: cls for cls in (Uniform, MinSNR, EDMWeighting)}


def names() -> list[str]:
    """The weighting names that ``get`` accepts."""
    return list(WEIGHTINGS)


def get(weighting, **params) -> Weighting:
    """A weighting by name (``params`` go to its constructor), or a Weighting passed through."""
    return named.build(weighting, WEIGHTINGS, Weighting, "loss weighting", params)
