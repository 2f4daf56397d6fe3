"""Drive diffusers' schedulers with an analytic noise prediction, for side-by-side benchmarks.

Every scheduler runs the DDPM "linear" schedule (1000 training steps, betas 1e-4..0.02, eps prediction).
The network is replaced by `eps_at(x, alpha, sigma)`: the caller's exact eps for the variance-preserving
sample `x = alpha x0 + sigma noise`. It is evaluated at the noise level the scheduler itself uses at that
call (its own `sigmas[step_index]`, or `alphas_cumprod[timestep]` for DDIM), never at a timestep
re-interpolated by us, so a scheduler is judged on the steps it means to take.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

DDPM_LINEAR = dict(
    num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, prediction_type="epsilon"
)

EpsAt = Callable[[torch.Tensor, float, float], torch.Tensor]


@dataclass(frozen=True)
class PeerConfig:
    """One diffusers scheduler with fixed settings; `family` groups the settings of one scheduler."""

    family: str
    setting: str
    scheduler_class: type
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.family} ({self.setting})"

    def steps_for_nfe(self, nfe: int) -> int:
        """Most inference steps whose network calls fit in `nfe` (Heun calls the network 2n - 1 times)."""
        return (nfe + 1) // 2 if self.scheduler_class is HeunDiscreteScheduler else nfe

    def make(self, steps: int):
        scheduler = self.scheduler_class(**DDPM_LINEAR, **self.options)
        scheduler.set_timesteps(steps)
        return scheduler


def _configs() -> list[PeerConfig]:
    """The benchmarked settings: diffusers' defaults plus the spacings its docs recommend."""
    configs = [
        PeerConfig("DDIM", "leading, offset 1", DDIMScheduler,
                   dict(clip_sample=False, timestep_spacing="leading", steps_offset=1)),
        PeerConfig("DDIM", "trailing", DDIMScheduler, dict(clip_sample=False, timestep_spacing="trailing")),
    ]
    spacings = {
        "linspace": dict(timestep_spacing="linspace"),
        "trailing": dict(timestep_spacing="trailing"),
        "karras": dict(use_karras_sigmas=True),
    }
    for order in (2, 3):
        dpm = {**spacings, "lu_lambdas": dict(use_lu_lambdas=True)}
        for setting, options in dpm.items():
            configs.append(PeerConfig(f"DPMSolverMultistep {order}M", setting, DPMSolverMultistepScheduler,
                                      dict(solver_order=order, **options)))
    for order in (2, 3):
        for setting, options in spacings.items():
            configs.append(PeerConfig(f"UniPCMultistep order {order}", setting, UniPCMultistepScheduler,
                                      dict(solver_order=order, **options)))
    for order in (2, 3):
        for setting, options in spacings.items():
            configs.append(PeerConfig(f"DEISMultistep order {order}", setting, DEISMultistepScheduler,
                                      dict(solver_order=order, **options)))
    for setting, options in spacings.items():
        configs.append(PeerConfig("HeunDiscrete", setting, HeunDiscreteScheduler, dict(options)))
    return configs


CONFIGS = _configs()


def noise_level(scheduler, index: int, timestep) -> tuple[float, float]:
    """(alpha, sigma) of the variance-preserving sample that the scheduler's `index`-th network call sees."""
    if isinstance(scheduler, DDIMScheduler):
        alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
        return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    ve_sigma = float(scheduler.sigmas[index])  # sigma of x / alpha, as every sigma-based scheduler stores it
    alpha = 1.0 / math.sqrt(1.0 + ve_sigma**2)
    return alpha, ve_sigma * alpha


def sample(config: PeerConfig, x_start: torch.Tensor, eps_at: EpsAt, nfe: int) -> tuple[torch.Tensor, int]:
    """Run the scheduler loop from `x_start`, the variance-preserving sample at t = 1 (timestep 999),
    within `nfe` network calls. Returns the final sample and the number of network calls it made.
    """
    scheduler = config.make(config.steps_for_nfe(nfe))
    x = x_start * scheduler.init_noise_sigma   # sigma-based schedulers keep x / alpha; 1 / alpha(1) is their scale
    calls = 0
    for index, timestep in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, timestep)
        alpha, sigma = noise_level(scheduler, index, timestep)
        eps = eps_at(x_in, alpha, sigma)
        calls += 1
        x = scheduler.step(eps, timestep, x).prev_sample
        if getattr(scheduler, "step_index", index + 1) != index + 1:
            raise RuntimeError(f"{config.label}: step index out of step with the loop at call {index}")
    return x, calls


def loop_seconds(config: PeerConfig, shape: tuple[int, ...], steps: int) -> tuple[float, int]:
    """Wall time of set_timesteps plus the whole scheduler loop with a free network (a constant eps).

    Returns (seconds, network calls), so that the caller can report overhead per call.
    """
    eps = torch.zeros(shape)
    noise = torch.zeros(shape)
    start = time.perf_counter()
    scheduler = config.make(steps)
    x = noise * scheduler.init_noise_sigma
    for timestep in scheduler.timesteps:
        scheduler.scale_model_input(x, timestep)
        x = scheduler.step(eps, timestep, x).prev_sample
    return time.perf_counter() - start, len(scheduler.timesteps)
