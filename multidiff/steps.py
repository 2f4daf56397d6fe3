"""Step placements: where a sampler evaluates the denoiser between pure noise and clean data.

A placement is a function ``placement(schedule, steps, t_max=1.0, t_min=T_MIN) -> times``: a float64
tensor of ``steps + 1`` times falling strictly from ``t_max`` to exactly 0, every nonzero one inside
the trained range [t_min, t_max]. A sampler steps from ``times[i]`` to ``times[i + 1]``; the last step,
to t = 0, is the final denoising step: it returns the denoiser's data prediction at the last nonzero time.

    linspace, trailing, leading   uniform in t, as diffusers spaces its 1000 training timesteps k
                                  (t = (k + 1) / 1000), Lin et al. 2024, "Common Diffusion Noise
                                  Schedules and Sample Steps are Flawed", table 2. Only trailing
                                  starts at t_max for every step count; leading never does.
    logsnr                        uniform in logSNR down to t_min (DPM-Solver, Lu et al. 2022)
    karras                        uniform in sigma~^(1/7), sigma~ = sigma / alpha, down to t_min
                                  (Karras et al. 2022, eq. 5, applied to x / alpha)

The trained range. A network is trained on t >= t_min only (``multidiff.losses.sample_times`` keeps
t >= T_MIN = 1e-3, diffusers' first timestep; a run records its own as ``diffusion.t_min``), so no
placement asks it about a lower noise level. The uniform spacings use diffusers' grid, whose smallest
time t_max / 1000 is inside the range for t_min <= 1e-3; above that the grid is stretched over
[t_min, t_max] instead. logsnr and karras stop at t_min (for the EDM schedule and t_min = 1e-3,
sigma~ = 0.00205 there), or at T_MIN where t_min = 0 leaves logSNR infinite (an analytic model, exact
everywhere, may be sampled with t_min = 0). When sigma~ is infinite at t_max (zero terminal SNR), no
spacing in logSNR or sigma~ can start there: the first step then goes from t_max to the second point
of the uniform-in-t placement, t_max (steps - 1) / steps, and the rule places the rest below it.

``times_for(placement, schedule, steps, t_min=...)`` takes a placement by name or as a callable
``(schedule, steps) -> times`` (e.g. a fitted ``multidiff.pilot_steps.Pilot``) and checks what it
returns, the trained range included. Add a named placement with ``register(name, fn)``; ``names()``
and ``get(name)`` see it at once.
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


def _check_steps(steps: int, t_max: float, t_min: float) -> None:
    check_count(steps)
    if not 0 < t_max <= 1:
        raise ValueError(f"t_max must be in (0, 1], got {t_max}")
    if not 0 <= t_min < t_max:
        raise ValueError(f"t_min must be in [0, t_max) = [0, {t_max:g}), got {t_min}")


def _on_grid(k: torch.Tensor, t_max: float, t_min: float) -> torch.Tensor:
    """Timesteps k (falling) -> times (k + 1) / 1000 * t_max, with the final 0 appended; where the grid's
    smallest time t_max / 1000 is below t_min, t_min + k (t_max - t_min) / 999 instead."""
    if len(torch.unique(k)) != len(k):
        raise ValueError(f"at most {TRAIN_STEPS} steps fit on the {TRAIN_STEPS}-step grid, got {len(k)}")
    k = k.to(torch.float64)
    if t_max / TRAIN_STEPS >= t_min:
        t = (k + 1) / TRAIN_STEPS * t_max
    else:
        t = (t_min + k / (TRAIN_STEPS - 1) * (t_max - t_min)).clamp(t_min, t_max)
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def linspace(schedule, steps: int, t_max: float = 1.0, t_min: float = T_MIN) -> torch.Tensor:
    """k = round(linspace(0, 999, steps)), falling: from t_max to t_max / 1000, then 0 (one step: k = 0 only)."""
    _check_steps(steps, t_max, t_min)
    k = torch.linspace(0, TRAIN_STEPS - 1, steps, dtype=torch.float64).round().flip(0)
    return _on_grid(k, t_max, t_min)


def trailing(schedule, steps: int, t_max: float = 1.0, t_min: float = T_MIN) -> torch.Tensor:
    """k = round(arange(1000, 0, -1000 / steps)) - 1: evenly spaced, starting at t_max."""
    _check_steps(steps, t_max, t_min)
    k = (TRAIN_STEPS - torch.arange(steps, dtype=torch.float64) * (TRAIN_STEPS / steps)).round() - 1
    return _on_grid(k, t_max, t_min)


def leading(schedule, steps: int, t_max: float = 1.0, t_min: float = T_MIN) -> torch.Tensor:
    """k = arange(steps) * (1000 // steps), falling: starts below t_max (the flawed default of old pipelines)."""
    _check_steps(steps, t_max, t_min)
    k = (torch.arange(steps, dtype=torch.float64) * (TRAIN_STEPS // steps)).flip(0)
    return _on_grid(k, t_max, t_min)


def _in_logsnr(schedule, steps: int, t_max: float, t_min: float,
               spacing: Callable[[float, float, int], torch.Tensor]) -> torch.Tensor:
    """Times whose logSNRs are ``spacing(logsnr_top, logsnr_bottom, n)``, from t_max to t_min (T_MIN
    where t_min = 0), then 0."""
    _check_steps(steps, t_max, t_min)
    t_min = t_min or T_MIN
    if t_max <= t_min:
        raise ValueError(f"t_max must exceed t_min = {t_min:g}, got {t_max}")
    top = torch.tensor([t_max], dtype=torch.float64)
    bottom = float(schedule.logsnr(torch.tensor(t_min, dtype=torch.float64)))
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
    if n > 1:
        t[-1] = t_min            # exactly, not t_from_logsnr(logsnr(t_min)) a rounding below it
    return torch.cat(head + [t, torch.zeros(1, dtype=torch.float64)])


def logsnr(schedule, steps: int, t_max: float = 1.0, t_min: float = T_MIN) -> torch.Tensor:
    """Uniform in logSNR from t_max down to t_min, then 0."""
    return _in_logsnr(schedule, steps, t_max, t_min,
                      lambda top, bottom, n: torch.linspace(top, bottom, n, dtype=torch.float64))


def karras(schedule, steps: int, t_max: float = 1.0, t_min: float = T_MIN, rho: float = 7.0) -> torch.Tensor:
    """Uniform in sigma~^(1/rho) from t_max down to t_min, then 0 (EDM's placement for any schedule)."""

    def spacing(top: float, bottom: float, n: int) -> torch.Tensor:
        # sigma~ = exp(-logsnr / 2), so sigma~^(1/rho) = exp(-logsnr / (2 rho))
        ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        hi, lo = math.exp(-top / (2 * rho)), math.exp(-bottom / (2 * rho))
        return -2 * rho * torch.log(hi + ramp * (lo - hi))

    return _in_logsnr(schedule, steps, t_max, t_min, spacing)


def times_for(placement: str | Placement, schedule, steps: int, *, t_min: float = T_MIN,
              t_max: float = 1.0) -> torch.Tensor:
    """The checked times of ``placement``: a registered name (called with ``t_min`` and ``t_max``) or a
    callable ``(schedule, steps) -> times`` (which starts at 1: a ValueError for t_max < 1). Raises a
    ValueError for anything but ``steps + 1`` float times falling strictly from at most t_max to exactly 0
    with every nonzero time at least ``t_min``."""
    if not 0 <= t_min < 1:
        raise ValueError(f"t_min must be in [0, 1), got {t_min}")
    if callable(placement):
        label = getattr(placement, "__name__", type(placement).__name__)
        if t_max != 1.0:
            raise ValueError(f"step placement {label} starts at t = 1 and cannot start at t_max = {t_max:g}")
        times = placement(schedule, steps)
    else:
        label, times = repr(placement), get(placement)(schedule, steps, t_max=t_max, t_min=t_min)
    ok = (isinstance(times, torch.Tensor) and times.is_floating_point() and times.ndim == 1
          and len(times) == steps + 1 and times[-1] == 0 and bool((times[1:] < times[:-1]).all())
          and times[0] <= t_max)
    if not ok:
        shown = times.tolist() if isinstance(times, torch.Tensor) else repr(times)
        raise ValueError(f"step placement {label} returned {shown}: need {steps + 1} times falling strictly "
                         f"from at most {t_max:g} to exactly 0")
    if times[-2] < t_min:
        raise ValueError(f"step placement {label} asks for t = {float(times[-2]):.6g}, below the trained range "
                         f"[t_min, 1] with t_min = {t_min:g}: the network was never trained there")
    return times.to(torch.float64)


for _fn in (linspace, trailing, leading, logsnr, karras):
    register(_fn.__name__, _fn)
