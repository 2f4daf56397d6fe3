"""Step placements: where a sampler evaluates the denoiser between pure noise and clean data.

A placement is a function ``placement(schedule, steps, t_max=1.0) -> times``: a float64 tensor of
``steps + 1`` times falling strictly from ``t_max`` to exactly 0. A sampler steps from ``times[i]`` to
``times[i + 1]``; the last step, to t = 0, returns the denoiser's data prediction.

    linspace, trailing, leading   uniform in t, as diffusers spaces its 1000 training timesteps k
                                  (t = (k + 1) / 1000), Lin et al. 2024, "Common Diffusion Noise
                                  Schedules and Sample Steps are Flawed", table 2. Only trailing
                                  starts at t_max for every step count; leading never does.
    logsnr                        uniform in logSNR down to T_MIN (DPM-Solver, Lu et al. 2022)
    karras                        uniform in sigma~^(1/7), sigma~ = sigma / alpha, down to T_MIN
                                  (Karras et al. 2022, eq. 5, applied to x / alpha)

logsnr and karras stop at T_MIN = 1e-3, the smallest training time and diffusers' first timestep
(for the EDM schedule, sigma~ = 0.00205 there). When sigma~ is infinite at t_max (zero terminal SNR),
no spacing in logSNR or sigma~ can start there: the first step then goes from t_max to the second
point of the uniform-in-t placement, t_max (steps - 1) / steps, and the rule places the rest below it.

Add a placement with ``register(name, fn)``; ``names()`` and ``get(name)`` see it at once.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

T_MIN = 1e-3
TRAIN_STEPS = 1000  # diffusers' timestep grid the uniform spacings round to

Placement = Callable[..., torch.Tensor]
_REGISTRY: dict[str, Placement] = {}


def register(name: str, fn: Placement) -> Placement:
    """Make ``fn(schedule, steps, t_max=1.0) -> times`` available as ``get(name)``; returns fn."""
    if name in _REGISTRY and _REGISTRY[name] is not fn:
        raise ValueError(f"a step placement named {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Placement:
    if name not in _REGISTRY:
        raise ValueError(f"unknown step placement {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def check_count(steps) -> int:
    """``steps`` as an int; a ValueError unless it is a positive integer (True is not one)."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def _check_steps(steps: int, t_max: float) -> None:
    check_count(steps)
    if not 0 < t_max <= 1:
        raise ValueError(f"t_max must be in (0, 1], got {t_max}")


def _on_grid(k: torch.Tensor, t_max: float) -> torch.Tensor:
    """Timesteps k (falling) -> times (k + 1) / 1000 * t_max, with the final 0 appended."""
    if len(torch.unique(k)) != len(k):
        raise ValueError(f"at most {TRAIN_STEPS} steps fit on the {TRAIN_STEPS}-step grid, got {len(k)}")
    t = (k.to(torch.float64) + 1) / TRAIN_STEPS * t_max
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def linspace(schedule, steps: int, t_max: float = 1.0) -> torch.Tensor:
    """k = round(linspace(0, 999, steps)), falling: from t_max to t_max / 1000, then 0 (one step: k = 0 only)."""
    _check_steps(steps, t_max)
    k = torch.linspace(0, TRAIN_STEPS - 1, steps, dtype=torch.float64).round().flip(0)
    return _on_grid(k, t_max)


def trailing(schedule, steps: int, t_max: float = 1.0) -> torch.Tensor:
    """k = round(arange(1000, 0, -1000 / steps)) - 1: evenly spaced, starting at t_max."""
    _check_steps(steps, t_max)
    k = (TRAIN_STEPS - torch.arange(steps, dtype=torch.float64) * (TRAIN_STEPS / steps)).round() - 1
    return _on_grid(k, t_max)


def leading(schedule, steps: int, t_max: float = 1.0) -> torch.Tensor:
    """k = arange(steps) * (1000 // steps), falling: starts below t_max (the flawed default of old pipelines)."""
    _check_steps(steps, t_max)
    k = (torch.arange(steps, dtype=torch.float64) * (TRAIN_STEPS // steps)).flip(0)
    return _on_grid(k, t_max)


def _in_logsnr(schedule, steps: int, t_max: float, spacing: Callable[[float, float, int], torch.Tensor]) -> torch.Tensor:
    """Times whose logSNRs are ``spacing(logsnr_top, logsnr_bottom, n)``, from t_max to T_MIN, then 0."""
    _check_steps(steps, t_max)
    if t_max <= T_MIN:
        raise ValueError(f"t_max must exceed T_MIN = {T_MIN}, got {t_max}")
    top = torch.tensor([t_max], dtype=torch.float64)
    bottom = float(schedule.logsnr(torch.tensor(T_MIN, dtype=torch.float64)))
    if torch.isinf(schedule.logsnr(top)).item():   # sigma~ = inf: first step to the uniform grid's 2nd point
        if steps == 1:
            return torch.cat([top, torch.zeros(1, dtype=torch.float64)])
        top = torch.tensor([t_max * (steps - 1) / steps], dtype=torch.float64)
        head, n = [torch.tensor([t_max], dtype=torch.float64)], steps - 1
    else:
        head, n = [], steps
    lam = spacing(float(schedule.logsnr(top)), bottom, n)
    t = schedule.t_from_logsnr(lam)
    t[0] = top[0]
    return torch.cat(head + [t, torch.zeros(1, dtype=torch.float64)])


def logsnr(schedule, steps: int, t_max: float = 1.0) -> torch.Tensor:
    """Uniform in logSNR from t_max down to T_MIN, then 0."""
    return _in_logsnr(schedule, steps, t_max,
                      lambda top, bottom, n: torch.linspace(top, bottom, n, dtype=torch.float64))


def karras(schedule, steps: int, t_max: float = 1.0, rho: float = 7.0) -> torch.Tensor:
    """Uniform in sigma~^(1/rho) from t_max down to T_MIN, then 0 (EDM's placement for any schedule)."""

    def spacing(top: float, bottom: float, n: int) -> torch.Tensor:
        # sigma~ = exp(-logsnr / 2), so sigma~^(1/rho) = exp(-logsnr / (2 rho))
        ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        hi, lo = math.exp(-top / (2 * rho)), math.exp(-bottom / (2 * rho))
        return -2 * rho * torch.log(hi + ramp * (lo - hi))

    return _in_logsnr(schedule, steps, t_max, spacing)


for _fn in (linspace, trailing, leading, logsnr, karras):
    register(_fn.__name__, _fn)
