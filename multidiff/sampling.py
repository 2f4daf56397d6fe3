"""``multidiff.sample``: the one entry point from a trained network to clean samples.

It resolves the schedule, the sampler and its step placement, wraps the network into a guided
data-prediction denoiser, and runs the sampler from x = sigma(times[0]) * noise.

Randomness is per sample: ``generator`` (seed 0 when None) yields one seed, and sample i draws its
starting noise and every later noise from its own generator seeded with (seed, i). A seeded sample is
therefore the same whatever batch it is drawn in, on any device.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

from . import editing, parameterizations, samplers, schedules
from . import steps as placements
from .conditioning import batch as condition_batch
from .guidance import guided
from .parameterizations import Denoiser

# Step placement each sampler uses unless told otherwise.
DEFAULT_PLACEMENT = {
    "ddpm": "trailing",
    "ddim": "trailing",
    "euler": "karras",
    "euler_ancestral": "karras",
    "heun": "karras",
    "dpmpp_2m": "logsnr",
    "dpmpp_3m": "logsnr",
    "dpmpp_2m_sde": "logsnr",
    "unipc": "logsnr",
}


def sample(model, shape, *, schedule, sampler: str = "dpmpp_2m", steps: int = 20, prediction="eps",
           cond=None, guidance_scale: float | dict = 1.0, noise=None, generator=None, t_min: float = placements.T_MIN,
           **options) -> torch.Tensor:
    """Draw samples of ``shape`` (batch first) from ``model(x_t, t, cond) -> prediction``.

    schedule: a ``multidiff.schedules`` name or Schedule. prediction: a ``multidiff.parameterizations``
    name or Prediction (e.g. ``EDMPrediction(sigma_data=1.0)``). noise: the standard-normal starting
    tensor of ``shape`` (float64 noise keeps the whole run in float64); else drawn per sample on the
    model's device. t_min: the smallest time the network was trained on (1e-3 unless the run's
    ``diffusion.t_min`` says otherwise): no step goes below it, the last one returns D there, and a
    placement that asks for less is an error (0 only for a model exact at every noise level).
    options: ``placement`` (a ``multidiff.steps`` name or a callable ``(schedule, steps) -> times`` such as
    a fitted ``multidiff.pilot_steps.Pilot``; default per sampler in DEFAULT_PLACEMENT), ``first_index``
    (index of this batch's first sample within a larger set drawn in chunks with generators of one seed:
    chunked draws then equal one batch), and the sampler's own
    keywords (eta, s_churn, s_tmin, s_tmax, s_noise, order, variant). Editing (``multidiff.editing``):
    ``init`` and ``strength`` (SDEdit), ``known``, ``known_mask`` and ``resample`` (inpainting), ``fit`` and
    ``fit_scale`` (reconstruction guidance by a loss of the predicted clean sample).
    cond: class labels (B,), or a dict of named conditions (multidiff.conditioning); guidance_scale: a
    number, or {name: scale} for compositional guidance over named conditions (multidiff.guidance).
    Network calls: ``steps`` for every sampler, 2 * steps - 1 for heun (with guidance each call runs the
    conditional and unconditional branches as one doubled batch), (resample - 1) more per step; with
    ``fit`` each call adds one backward pass.
    """
    schedule = schedules.get(schedule)
    run = samplers.get(sampler)
    prediction = parameterizations.get(prediction)
    steps = placements.check_count(steps)
    shape = tuple(int(n) for n in shape)
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(f"shape must start with a positive batch size, got {shape}")
    if isinstance(cond, dict):
        if condition_batch.size(cond) != shape[0]:
            raise ValueError(f"cond must hold {shape[0]} rows of conditions, got {condition_batch.size(cond)}")
    elif cond is not None and tuple(cond.shape) != shape[:1]:
        raise ValueError(f"cond must be a LongTensor of shape ({shape[0]},), got {tuple(cond.shape)}")
    edit = editing.request(shape, options)
    placement = options.pop("placement", DEFAULT_PLACEMENT[sampler])
    times = edit.times(lambda t_max: placements.times_for(placement, schedule, steps, t_min=t_min, t_max=t_max),
                       schedule)
    first_index = int(options.pop("first_index", 0))
    parameters = inspect.signature(run).parameters
    accepted = set(parameters) - {"denoise", "x", "times", "schedule", "noise", "step_hook"}
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(f"sampler {sampler!r} takes no option(s) {sorted(unknown)}; "
                         f"it takes: placement, first_index, {', '.join(sorted(accepted)) or 'nothing else'}")

    device = noise.device if noise is not None else device_of(model, cond)
    seed = _seed(generator)
    generators = _per_sample_generators(seed, shape[0], first_index) if noise is None else None
    if noise is None:
        noise = _draw(generators, shape, torch.float32, device)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape}")
    dtype = torch.float64 if noise.dtype == torch.float64 else torch.float32
    x = edit.start(noise.to(dtype), times, schedule)

    denoiser = Denoiser(edit.model(model), schedule, prediction)
    denoiser.prepare(times.to(dtype))    # samplers call with t in the state's dtype; refuses alpha = 0 for eps, edm
    denoiser = guided(denoiser, guidance_scale)
    denoise = edit.denoiser(lambda x_t, t: denoiser(x_t, t, cond))
    kwargs = dict(options)

    def fresh_noise() -> torch.Tensor:
        nonlocal generators
        if generators is None:
            generators = _per_sample_generators(seed, shape[0], first_index)
        return _draw(generators, shape, dtype, x.device)

    if "noise" in parameters:
        kwargs["noise"] = fresh_noise
    step_hook = edit.step_hook(denoise, times, schedule, fresh_noise)
    if step_hook is not None:
        kwargs["step_hook"] = step_hook
    with torch.no_grad():
        return run(denoise, x, times, schedule, **kwargs)


def device_of(model, cond=None) -> torch.device:
    """Where to draw the noise: the network's parameters, else the labels, else the CPU."""
    if isinstance(model, torch.nn.Module):
        for tensor in model.parameters():
            return tensor.device
    return condition_batch.device(cond) or torch.device("cpu")


def _seed(generator) -> int:
    """The run's seed: one draw from ``generator``, 0 if None."""
    return 0 if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))


def _per_sample_generators(seed: int, batch: int, first_index: int = 0) -> list[torch.Generator]:
    """Generator i seeded from (seed, first_index + i); built only once a run draws noise (16 cost ~1 ms)."""
    states = [np.random.SeedSequence(seed, spawn_key=(first_index + i,)) for i in range(batch)]
    return [torch.Generator().manual_seed(int(s.generate_state(1, np.uint64)[0] >> 1)) for s in states]


def _draw(generators: list[torch.Generator], shape, dtype, device) -> torch.Tensor:
    """One standard-normal draw per sample, each from its own (CPU) generator, stacked on ``device``."""
    return torch.stack([torch.randn(shape[1:], generator=g, dtype=dtype) for g in generators]).to(device)
