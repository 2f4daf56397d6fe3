"""The training loss: noise the data at sampled times and regress the parameterization's target.

Weightings, all stated as the weight w on the squared error of the network's own target:
    uniform   w = 1                                  (DDPM's "simple" loss for eps; likewise for x0, v)
    min_snr   w = min(snr, gamma) * f^2              (Hang et al. 2023), f = x0_error_scale: the
                                                     x0-space weight min(snr, gamma) carried over
    edm       sigma~ = sigma/alpha ~ LogNormal(p_mean, p_std), x0-space weight
              (s^2 + sd^2) / (s sd)^2 (Karras et al. 2022), i.e. w = that * f^2 (= 1 for edm)
Times are uniform in [0, 1] for uniform and min_snr; edm draws sigma~ and maps it to t.
"""
from __future__ import annotations

import torch

from .parameterizations import Denoiser, check_name, training_target, x0_error_scale
from .schedules import Schedule

WEIGHTINGS = ("uniform", "min_snr", "edm")


def sample_times(schedule: Schedule, batch: int, weighting: str, *, generator=None, device=None,
                 p_mean: float = -1.2, p_std: float = 1.2, t_min: float = 1e-3) -> torch.Tensor:
    """Training times t (B,) float64: uniform in [t_min, 1] (up to the clamp), or EDM's log-normal noise levels."""
    if weighting == "edm":
        log_s = p_mean + p_std * torch.randn(batch, generator=generator, dtype=torch.float64, device=device)
        return schedule.t_from_logsnr(-2.0 * log_s)
    # Keep t off exactly 0 (logSNR = +inf there): by default the smallest step of a 1000-step grid.
    return torch.rand(batch, generator=generator, dtype=torch.float64, device=device).clamp(min=t_min)


def loss_weight(prediction: str, weighting: str, alpha, sigma, *, min_snr_gamma: float = 5.0,
                sigma_data: float = 0.5) -> torch.Tensor:
    """Per-example weight (B,) on the squared error of the network's target."""
    if weighting == "uniform":
        return torch.ones_like(alpha)
    f2 = x0_error_scale(prediction, alpha, sigma, sigma_data) ** 2
    if weighting == "min_snr":
        snr = (alpha / sigma) ** 2
        return snr.clamp(max=min_snr_gamma) * f2
    if weighting == "edm":
        s = sigma / alpha
        return (s * s + sigma_data**2) / (s * sigma_data) ** 2 * f2
    raise ValueError(f"unknown loss weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")


def diffusion_loss(model, x0: torch.Tensor, *, schedule: Schedule, prediction: str = "eps",
                   weighting: str = "uniform", cond=None, mask: torch.Tensor | None = None, generator=None,
                   min_snr_gamma: float = 5.0, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2,
                   t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Mean weighted squared error of ``model`` on a batch ``x0`` (B, ...).

    ``mask`` (broadcastable to x0, 1 = data, 0 = padding) removes padding from the loss: each
    example's error is averaged over its real entries only. ``t`` and ``noise`` may be given
    (e.g. drawn per example by a distributed trainer); otherwise they come from ``generator``.
    """
    check_name(prediction)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")
    batch = x0.shape[0]
    if t is None:
        t = sample_times(schedule, batch, weighting, generator=generator, device=x0.device, p_mean=p_mean, p_std=p_std)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = t.to(device=x0.device, dtype=torch.float64)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    x_t = alpha.reshape(shape).to(x0.dtype) * x0 + sigma.reshape(shape).to(x0.dtype) * noise
    denoiser = Denoiser(model, schedule, prediction, sigma_data)
    out = model(denoiser.network_input(x_t, t), t.to(x0.dtype), cond)
    if out.shape != x0.shape:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for input of shape {tuple(x0.shape)}")
    target = training_target(prediction, x0, noise, alpha, sigma, sigma_data)
    err = (out.float() - target.float()) ** 2
    if mask is None:
        per_example = err.flatten(1).mean(1)
    else:
        m = torch.broadcast_to(mask.to(err.dtype), err.shape).flatten(1)
        per_example = (err.flatten(1) * m).sum(1) / m.sum(1).clamp(min=1.0)
    w = loss_weight(prediction, weighting, alpha, sigma, min_snr_gamma=min_snr_gamma, sigma_data=sigma_data)
    return (w.to(per_example.dtype) * per_example).mean()
