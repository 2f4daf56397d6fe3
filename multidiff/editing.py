"""Editing with the samplers as they are: variations (SDEdit), inpainting, RePaint's resampling jumps.

Every request goes through ``multidiff.sample`` and works with every sampler and step placement:

    init, strength       SDEdit (Meng et al. 2022). ``strength`` s in (0, 1] picks the start time t_s = s;
                         the placement is asked for its ``steps`` times below t_s (``t_max = t_s``), so
                         the requested network calls are all spent there, and the sampler starts from
                         x = alpha(t_s) init + sigma(t_s) noise. A placement that only starts at t = 1
                         (the fitted pilot) is rescaled instead: its logSNRs are mapped affinely onto
                         [logSNR(t_s), its last logSNR]. s = 1 is plain sampling from the same noise
                         (the start drops alpha(1) init, as every draw from t = 1 drops alpha(1) x0).
    known, known_mask    Inpainting: the output equals ``known`` where ``known_mask`` is 1, and the
                         rest is generated to fit it. A mask-conditioned network (``MaskConditioned``)
                         is also shown the known data and the mask as extra inputs.
    resample = r         RePaint's jumps (Lugmayr et al. 2022): each step is taken r times in all.
    known_guidance = w   For a mask-conditioned network: the prediction shown no known data plus w times
                         (the prediction shown it - that one), classifier-free guidance on the known data
                         as InstructPix2Pix guides on its input image (the network learned both: a share of
                         its training masks is empty). w = 1 is the plain network; w > 1 holds the
                         generated part closer to the kept one, for a second network call per evaluation.
    fit, fit_scale = w   Reconstruction guidance (Ho et al. 2022, "Video diffusion models"; DPS, Chung et al.
                         2023) for what a mask cannot say, e.g. a partial point cloud against a shape code:
                         ``fit(x0_hat) -> (B,)`` is a data-consistency loss of a predicted clean sample, and
                         every prediction becomes D - w grad_{x_t} fit(D(x_t)), the gradient taken through
                         the network (one backward pass per evaluation). Being a change of D, it serves
                         every sampler as the known region does (below). fit may normalise its loss itself
                         (DPS divides the gradient by the residual's norm: return sqrt(loss) for that).

Why the known region needs no change to any sampler. The denoiser is wrapped so that its data
prediction D equals the known data inside the mask. Every sampler's update is a per-coordinate linear
combination of the state, of predictions D and of fresh noise, and every one of them is exact for a
constant D: the exponential integrators by construction, DDIM, Euler and Heun because the path
x / alpha = D + (sigma / alpha) eps is then linear in sigma / alpha, and the stochastic ones because they
draw from q(x_next | x_t, x0 = D). So a known region started at alpha x_known + sigma eps stays a draw of
q(x_t | x_known) at every time the sampler visits (the same eps along a deterministic sampler's path,
fresh noise mixed in by a stochastic one), and the last step, which returns D, returns x_known exactly.
The network thus always sees the known region noised to the current level: the replacement method of
Song et al. (2021) and RePaint, with no replacement step of its own. Outside the mask nothing changes.

Replacement alone samples the unknown region from a biased distribution: a region generated early,
when the known data was still drowned in noise, cannot revise its choices when the data becomes clear.
RePaint's jumps mix it: after a step lands on times[i], the state is noised back to times[i - 1] by
the forward process q(x_{i-1} | x_i) and brought down again by DDPM's posterior step with D at the
raised state (``samplers.ancestral_step``), r - 1 times. This moves the state between steps, which no
denoiser wrapper can do, so every sampler calls an optional ``step_hook(x, i)`` on each state it reaches
(one line per sampler). The redo is always the ancestral step, whichever sampler takes the main steps:
the jumps need its fresh noise to mix. They cost (r - 1) network calls per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from . import samplers

EDIT_OPTIONS = ("init", "strength", "known", "known_mask", "resample", "known_guidance", "fit", "fit_scale")


@dataclass
class Edit:
    """What ``multidiff.sample`` was asked to keep: nothing, a start (init, strength), a known region."""
    init: torch.Tensor | None = None
    strength: float = 1.0
    known: torch.Tensor | None = None
    mask: torch.Tensor | None = None          # bool, broadcastable to the sample shape
    resample: int = 1
    known_guidance: float = 1.0
    fit: Callable[[torch.Tensor], torch.Tensor] | None = None
    fit_scale: float = 1.0

    def times(self, place: Callable[[float], torch.Tensor], schedule) -> torch.Tensor:
        """The placement's times below t_s = strength (``place(t_max)`` gives the checked times)."""
        if self.strength == 1.0:
            return place(1.0)
        try:
            return place(self.strength)
        except ValueError as refused:
            return _rescaled(place(1.0), schedule, self.strength, refused)

    def start(self, noise: torch.Tensor, times: torch.Tensor, schedule) -> torch.Tensor:
        """The sampler's first state at times[0]: noise alone, init noised, known region noised."""
        alpha, sigma = (float(v[0]) for v in schedule.levels(times[:1])[:2])
        x = noise * sigma
        if self.init is not None and self.strength < 1.0:
            x = self.init.to(x) * alpha + x
        if self.known is not None:
            x = torch.where(self.mask.to(x.device), self.known.to(x) * alpha + noise * sigma, x)
        return x

    def model(self, model):
        """A mask-conditioned network sees the known data and the mask; any other network is unchanged."""
        conditioned = getattr(model, "mask_conditioned", False)
        if self.known_guidance != 1.0 and not conditioned:
            raise ValueError("known_guidance needs a mask-conditioned network (a recipe with "
                             "[edit] mask_conditioned = true); this one never sees the known data")
        if self.known is None or not conditioned:
            return model
        shown = partial(model, known=self.known, mask=self.mask)
        if self.known_guidance == 1.0:
            return shown
        scale = self.known_guidance

        def known_guided(x, t, cond=None):
            unseen = model(x, t, cond)
            return unseen + scale * (shown(x, t, cond) - unseen)

        return known_guided

    def denoiser(self, denoise):
        """D nudged towards ``fit``, then with the known data inside the mask (see the module docstring
        for why that is enough)."""
        if self.fit is not None:
            denoise = _fitted(denoise, self.fit, self.fit_scale)
        if self.known is None:
            return denoise
        known, mask = self.known, self.mask

        def keeping_known(x, t):
            d = denoise(x, t)
            return torch.where(mask.to(d.device), known.to(d), d)

        return keeping_known

    def step_hook(self, denoise, times: torch.Tensor, schedule, noise: Callable[[], torch.Tensor]):
        """RePaint's jumps as a sampler's ``step_hook``; None when there are none (resample = 1)."""
        if self.resample == 1:
            return None
        alpha, sigma = (v.tolist() for v in schedule.levels(times[:-1].cpu())[:2])
        ts = times.tolist()

        def jumps(x, i):
            if i == 0:
                return x
            back = alpha[i - 1] / alpha[i]
            rise = math.sqrt(max(sigma[i - 1] ** 2 - back**2 * sigma[i] ** 2, 0.0))
            for _ in range(self.resample - 1):
                x = x * back
                x.add_(noise(), alpha=rise)                                      # q(x_{i-1} | x_i)
                d = denoise(x, torch.full((x.shape[0],), ts[i - 1], dtype=x.dtype, device=x.device))
                x = samplers.ancestral_step(x, d, alpha[i - 1], sigma[i - 1], alpha[i], sigma[i], noise())
            return x

        return jumps


def request(shape: tuple[int, ...], options: dict) -> Edit:
    """Take the editing options out of ``options`` (sample's keywords) and check them against ``shape``."""
    init, strength = options.pop("init", None), options.pop("strength", None)
    known, mask = options.pop("known", None), options.pop("known_mask", None)
    resample = options.pop("resample", 1)
    known_guidance = options.pop("known_guidance", 1.0)
    edit = Edit()
    if strength is not None and init is None:
        raise ValueError("strength needs init=, the data to start from")
    if init is not None:
        edit.init = _data("init", init, shape)
        edit.strength = check_strength(1.0 if strength is None else strength)
    if (known is None) != (mask is None):
        raise ValueError("inpainting needs both known= (the data) and known_mask= (1 where it is known)")
    if known is not None:
        edit.known = _data("known", known, shape)
        edit.mask = check_mask(mask, shape)
    if isinstance(resample, bool) or int(resample) != resample or resample < 1:
        raise ValueError(f"resample must be a positive integer (1 = no jumps), got {resample!r}")
    if resample > 1 and known is None:
        raise ValueError("resample jumps mix the generated region with a known one: pass known= and known_mask=")
    edit.resample = int(resample)
    if isinstance(known_guidance, bool) or not isinstance(known_guidance, (int, float)) \
            or not 0.0 <= known_guidance <= 1e6:
        raise ValueError(f"known_guidance must be a number in [0, 1e6] (1 = none), got {known_guidance!r}")
    if known_guidance != 1.0 and known is None:
        raise ValueError("known_guidance guides on the known data: pass known= and known_mask=")
    edit.known_guidance = float(known_guidance)
    fit, fit_scale = options.pop("fit", None), options.pop("fit_scale", None)
    if fit is not None and not callable(fit):
        raise ValueError(f"fit must be a function of the predicted clean samples returning one loss per sample, "
                         f"got {type(fit).__name__}")
    if fit_scale is not None:
        if fit is None:
            raise ValueError("fit_scale scales the gradient of a fit= loss: pass fit= too")
        if isinstance(fit_scale, bool) or not isinstance(fit_scale, (int, float)) or not 0.0 <= fit_scale < math.inf:
            raise ValueError(f"fit_scale must be a finite number >= 0, got {fit_scale!r}")
        edit.fit_scale = float(fit_scale)
    edit.fit = fit
    return edit


def check_strength(strength) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be a number in (0, 1] (1 = from pure noise), got {strength!r}")
    return float(strength)


def check_mask(mask, shape: tuple[int, ...]) -> torch.Tensor:
    """A 0/1 mask broadcastable to ``shape`` with something known in some example and something unknown in
    every one (an example with nothing known is drawn as without a mask: a batch may mix both)."""
    mask = torch.as_tensor(mask)
    try:
        full = torch.broadcast_to(mask, shape)
    except RuntimeError:
        raise ValueError(f"known_mask of shape {tuple(mask.shape)} does not fit samples of shape {shape}") from None
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("known_mask must hold only 0 (generate) and 1 (known)")
        mask = mask != 0
        full = torch.broadcast_to(mask, shape)
    per_example = full.reshape(shape[0], -1)
    if not bool(per_example.any()):
        raise ValueError("the known region is empty in every example: nothing to keep (use plain sampling)")
    if bool(per_example.all(1).any()):
        raise ValueError("the known region covers a whole example: nothing to generate")
    return mask


def _fitted(denoise, fit, scale: float):
    """D(x_t) - scale * grad_{x_t} sum_b fit(D(x_t))_b: each sample's gradient is its own, since the
    network treats the samples of a batch apart."""
    def fitting(x, t):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            d = denoise(x_in, t)
            loss = fit(d)
            if not isinstance(loss, torch.Tensor) or loss.shape != x.shape[:1]:
                got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"fit must return one loss per sample, shape ({x.shape[0]},), got {got}")
            grad, = torch.autograd.grad(loss.sum(), x_in)
        return (d - scale * grad).detach()

    return fitting


def _data(name: str, value, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of the sample shape {shape}, got {got}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} holds NaN or Inf")
    return value


def _rescaled(full: torch.Tensor, schedule, t_start: float, refused: ValueError) -> torch.Tensor:
    """``full`` (a placement from t = 1) with its logSNRs mapped affinely onto [logSNR(t_start), its last]."""
    lam = schedule.logsnr(full[:-1])
    top, bottom = float(lam[0]), float(lam[-1])
    new_top = float(schedule.logsnr(torch.tensor([t_start], dtype=torch.float64))[0])
    if not (math.isfinite(top) and top < new_top < bottom):
        raise refused
    t = schedule.t_from_logsnr(bottom + (lam - bottom) * ((new_top - bottom) / (top - bottom)))
    t[0] = t_start
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])
