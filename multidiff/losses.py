"""The training loss: noise the data at the weighting's times and regress the prediction's target.

The prediction (``multidiff.parameterizations``) says what the network outputs; the weighting
(``multidiff.weightings``) where the times fall and how much each example's squared error counts.
"""
from __future__ import annotations

import torch

from . import parameterizations, schedules, weightings
from .parameterizations import Denoiser


def diffusion_loss(model, x0: torch.Tensor, *, schedule, prediction="eps", weighting="uniform", cond=None,
                   mask: torch.Tensor | None = None, generator=None, t: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None, known: torch.Tensor | None = None) -> torch.Tensor:
    """Mean weighted squared error of ``model`` on a batch ``x0`` (B, ...).

    schedule, prediction, weighting: objects or names (``multidiff.schedules``, ``.parameterizations``,
    ``.weightings``). ``mask`` (broadcastable to x0, 1 = data, 0 = padding) removes padding from the
    loss: each example's error is averaged over its real entries only. ``t`` and ``noise`` may be given
    (e.g. drawn per example by a distributed trainer); otherwise they come from ``generator``.
    ``known``: the clean data shown to a mask-conditioned network (``multidiff.mask_conditioning``).
    """
    schedule = schedules.get(schedule)
    prediction, weighting = parameterizations.get(prediction), weightings.get(weighting)
    if t is None:
        t = weighting.times(schedule, x0.shape[0], generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = t.to(device=x0.device, dtype=torch.float64)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    x_t = alpha.reshape(shape).to(x0.dtype) * x0 + sigma.reshape(shape).to(x0.dtype) * noise
    inputs = (Denoiser(model, schedule, prediction).network_input(x_t, t), t.to(x0.dtype), cond)
    out = model(*inputs) if known is None else model(*inputs, known=known)
    if out.shape != x0.shape:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for input of shape {tuple(x0.shape)}")
    target = prediction.target(x0, noise, alpha, sigma)
    err = (out.float() - target.float()) ** 2
    if mask is None:
        per_example = err.flatten(1).mean(1)
    else:
        m = torch.broadcast_to(mask.to(err.dtype), err.shape).flatten(1)
        per_example = (err.flatten(1) * m).sum(1) / m.sum(1).clamp(min=1.0)
    w = weighting.weight(prediction, alpha, sigma)
    return (w.to(per_example.dtype) * per_example).mean()
