"""Drive diffusers' schedulers with an analytic or trained noise prediction, for side-by-side benchmarks.

Every scheduler runs the caller's discrete schedule (by default DDPM "linear": 1000 training steps, betas
1e-4..0.02, eps prediction). The network is replaced by `eps_at(x, alpha, sigma)`: the caller's eps for
the variance-preserving sample `x = alpha x0 + sigma noise`. It is evaluated at the noise level the
scheduler itself uses at that call (its own `sigmas[step_index]`, `sigmas_interpol` for KDPM2's second
evaluation, or `alphas_cumprod[timestep]` for DDIM and PNDM), never at a timestep re-interpolated by us,
so a scheduler is judged on the steps it means to take. Those levels never fall below the smallest
training timestep's, so diffusers, too, only asks about the trained range.

`CONFIGS` is diffusers' complete option set for deterministic sampling of a discrete eps/v model: every
timestep spacing (linspace, leading, trailing) and sigma family (Karras, exponential, beta; Lu lambdas for
DPM-Solver multistep), `final_sigmas_type` zero/sigma_min, `set_alpha_to_one`, solver orders and types,
`lower_order_final`, UniPC bh1/bh2 with and without x0 prediction, DPM-Solver (++) multistep and
singlestep, DEIS, SA-Solver with tau = 0, PNDM (PRK and PLMS), Heun, KDPM2, LMS and Euler (both sigma
interpolations). Left out: the ancestral and SDE schedulers (DDPM, Euler ancestral, KDPM2 ancestral,
DPM-Solver SDE, sde-dpmsolver(++)), which follow the SDE and cannot converge to the ODE solution;
EDM*/IPNDM/Cosine-DPM, which bring their own noise schedule; LCM/TCD/consistency, which need a distilled
model; flow-matching schedulers. Settings that give the same steps as another (a spacing that a sigma
family overrides) are run once (`distinct`).
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    SASolverScheduler,
    UniPCMultistepScheduler,
)

DDPM_LINEAR = dict(
    num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, prediction_type="epsilon"
)

EpsAt = Callable[[torch.Tensor, float, float], torch.Tensor]
_MADE: dict = {}


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

    def make(self, steps: int, schedule: dict = DDPM_LINEAR):
        """A fresh scheduler after set_timesteps(steps) (a copy of one made before: KDPM2's takes a second)."""
        key = (self.label, steps, repr(sorted(schedule.items())))
        if key not in _MADE:
            scheduler = self.scheduler_class(**schedule, **self.options)
            scheduler.set_timesteps(steps)
            _MADE[key] = scheduler
        return copy.deepcopy(_MADE[key])

    def steps_for_nfe(self, nfe: int, schedule: dict = DDPM_LINEAR) -> int:
        """Most inference steps whose network calls (one per entry of `timesteps`) fit in `nfe`; 0 if none."""
        if self.scheduler_class in (HeunDiscreteScheduler, KDPM2DiscreteScheduler):
            return (nfe + 1) // 2                       # 2 n - 1 calls (checked when run)
        for steps in range(nfe, 0, -1):
            try:
                calls = len(self.make(steps, schedule).timesteps)
            except (ValueError, IndexError):         # e.g. PRK's warm-up needs more steps than that
                continue
            if calls <= nfe:
                return steps
        return 0


SPACINGS = {"linspace": dict(timestep_spacing="linspace"), "leading": dict(timestep_spacing="leading"),
            "trailing": dict(timestep_spacing="trailing")}
SIGMA_FAMILIES = {"karras": dict(use_karras_sigmas=True), "exponential": dict(use_exponential_sigmas=True),
                  "beta": dict(use_beta_sigmas=True)}


def _grid(**axes: dict) -> list[tuple[str, dict]]:
    """(setting, options) for every combination of the named axes, each a dict of label -> options."""
    out = []
    for combo in itertools.product(*(axis.items() for axis in axes.values())):
        out.append((" ".join(label for label, _ in combo if label),
                    {k: v for _, options in combo for k, v in options.items()}))
    return out


def _placements(spacings: bool = True, extra: dict | None = None) -> dict:
    """Every spacing alone, and every sigma family on every spacing (duplicates are dropped when run)."""
    bases = SPACINGS if spacings else {"": {}}
    out = dict(bases)
    for (family, f_opts), (spacing, s_opts) in itertools.product({**SIGMA_FAMILIES, **(extra or {})}.items(),
                                                                 bases.items()):
        out[f"{family} {spacing}".strip()] = {**f_opts, **s_opts}
    return out


def _on(order_key: str, orders, **more) -> dict:
    return {f"order {o}": {order_key: o, **more} for o in orders}


FINAL = {"final zero": dict(final_sigmas_type="zero"), "final sigma_min": dict(final_sigmas_type="sigma_min")}
LOWER_FINAL = {"": dict(lower_order_final=True), "no lower_order_final": dict(lower_order_final=False)}


def _configs() -> list[PeerConfig]:
    configs = []

    def add(family, cls, grid):
        configs.extend(PeerConfig(family, setting, cls, options) for setting, options in grid)

    alpha_one = {"": dict(set_alpha_to_one=True), "alpha_one false": dict(set_alpha_to_one=False)}
    add("DDIM", DDIMScheduler, _grid(p=SPACINGS, a=alpha_one, c={"": dict(clip_sample=False)}))
    add("DDIM", DDIMScheduler, [("leading, offset 1", dict(clip_sample=False, timestep_spacing="leading", steps_offset=1))])
    add("PNDM", PNDMScheduler, _grid(k={"PLMS": dict(skip_prk_steps=True), "PRK+PLMS": dict(skip_prk_steps=False)},
                                     p=SPACINGS, a=alpha_one))
    lu = {"lu_lambdas": dict(use_lu_lambdas=True)}
    for algorithm in ("dpmsolver++", "dpmsolver"):
        solvers = {**_on("solver_order", [1]),
                   **{f"{k} {t}": {**v, "solver_type": t} for k, v in _on("solver_order", [2, 3]).items()
                      for t in ("midpoint", "heun")}}
        add(f"DPMSolverMultistep {algorithm}", DPMSolverMultistepScheduler,
            _grid(o=solvers, p=_placements(extra=lu), f=FINAL, l=LOWER_FINAL, a={"": dict(algorithm_type=algorithm)}))
        add(f"DPMSolverSinglestep {algorithm}", DPMSolverSinglestepScheduler,
            _grid(o=solvers, p=_placements(spacings=False), f=FINAL, l=LOWER_FINAL,
                  a={"": dict(algorithm_type=algorithm)}))
    unipc = {f"{k} {t}": {**v, "solver_type": t} for k, v in _on("solver_order", [1, 2, 3]).items() for t in ("bh1", "bh2")}
    add("UniPCMultistep", UniPCMultistepScheduler,
        _grid(o=unipc, x={"": dict(predict_x0=True), "eps": dict(predict_x0=False)}, p=_placements(), f=FINAL,
              l=LOWER_FINAL))
    add("DEISMultistep", DEISMultistepScheduler, _grid(o=_on("solver_order", [1, 2, 3]), p=_placements(), l=LOWER_FINAL))
    sa = {f"predictor {p} corrector {c}": dict(predictor_order=p, corrector_order=c, tau_func=_no_noise)
          for p in (1, 2, 3) for c in (1, 2, 3)}
    add("SASolver tau 0", SASolverScheduler,
        _grid(o=sa, a={"": dict(algorithm_type="data_prediction"), "eps": dict(algorithm_type="noise_prediction")},
              p=_placements()))
    for family, cls in (("HeunDiscrete", HeunDiscreteScheduler), ("KDPM2Discrete", KDPM2DiscreteScheduler),
                        ("LMSDiscrete", LMSDiscreteScheduler)):
        add(family, cls, _grid(p=_placements()))
    add("EulerDiscrete", EulerDiscreteScheduler,
        _grid(p=_placements(), i={"": dict(interpolation_type="linear"), "log_linear": dict(interpolation_type="log_linear")},
              f=FINAL))
    return configs


def _no_noise(t) -> float:
    """SA-Solver's tau: 0 at every timestep makes it a deterministic ODE solver."""
    return 0.0


CONFIGS = _configs()


def distinct(configs: list[PeerConfig], budgets, schedule: dict = DDPM_LINEAR) -> list[PeerConfig]:
    """The configs whose steps differ from every earlier one's at some budget (same class, options other
    than the placement equal, same timesteps and sigmas): the rest would give identical results."""
    seen, out = set(), []
    placement_keys = {"timestep_spacing", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                      "use_lu_lambdas"}
    for config in configs:
        key = [config.scheduler_class.__name__,
               tuple(sorted((k, repr(v)) for k, v in config.options.items() if k not in placement_keys))]
        for budget in budgets:
            steps = config.steps_for_nfe(budget, schedule)
            scheduler = config.make(steps, schedule) if steps else None
            key.append(None if scheduler is None else
                       (tuple(scheduler.timesteps.tolist()), tuple(getattr(scheduler, "sigmas", torch.zeros(0)).tolist())))
        key = repr(key)
        if key not in seen:
            seen.add(key)
            out.append(config)
    return out


def discrete_schedule(schedule) -> dict:
    """diffusers' settings for a multidiff variance-preserving schedule with v prediction: its alphas_cumprod at
    t = (k + 1) / 1000 for timestep k, given as betas, so timestep 0 is t = 1e-3, the smallest trained time."""
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    alphas_cumprod = schedule.alpha(t) ** 2
    betas = 1 - alphas_cumprod / torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return dict(num_train_timesteps=1000, trained_betas=betas.tolist(), prediction_type="v_prediction")


def v_at(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule, t_min: float) -> EpsAt:
    """A multidiff denoiser D(x, t) as diffusers' v prediction at the level (alpha, sigma) it means.

    v = alpha eps - sigma D = (alpha x - D) / sigma for variance-preserving x; t comes from the level's logSNR.
    A level below t_min by more than rounding is an error, never a query outside the trained range.
    """
    def predict(x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
        t = float(schedule.t_from_logsnr(torch.tensor(2 * math.log(alpha / sigma), dtype=torch.float64)))
        if t < t_min * (1 - 1e-6):
            raise RuntimeError(f"diffusers asked about t = {t:.6g}, below the trained range (t_min = {t_min:g})")
        d = denoise(x, torch.full((x.shape[0],), max(t, t_min), dtype=x.dtype, device=x.device))
        return ((alpha * x - d) / sigma).to(x.dtype)

    return predict


def noise_level(scheduler, index: int, timestep) -> tuple[float, float]:
    """(alpha, sigma) of the variance-preserving sample that the scheduler's `index`-th network call sees
    (after its scale_model_input)."""
    if isinstance(scheduler, (DDIMScheduler, PNDMScheduler)):
        alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
        return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    if isinstance(scheduler, KDPM2DiscreteScheduler) and not scheduler.state_in_first_order:
        ve_sigma = float(scheduler.sigmas_interpol[scheduler.step_index])
    else:
        ve_sigma = float(scheduler.sigmas[index])  # sigma of x / alpha, as every sigma-based scheduler stores it
    alpha = 1.0 / math.sqrt(1.0 + ve_sigma**2)
    return alpha, ve_sigma * alpha


def sample(config: PeerConfig, x_start: torch.Tensor, eps_at: EpsAt, nfe: int,
           schedule: dict = DDPM_LINEAR) -> tuple[torch.Tensor, int]:
    """Run the scheduler loop from `x_start`, the variance-preserving sample at t = 1 (timestep 999),
    within `nfe` network calls. Returns the final sample and the number of network calls it made
    (None, 0 when not even one step fits).
    """
    steps = config.steps_for_nfe(nfe, schedule)
    if not steps:
        return None, 0
    scheduler = config.make(steps, schedule)
    x = x_start * scheduler.init_noise_sigma   # sigma-based schedulers keep x / alpha; 1 / alpha(1) is their scale
    calls = 0
    for index, timestep in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, timestep)
        alpha, sigma = noise_level(scheduler, index, timestep)
        eps = eps_at(x_in, alpha, sigma)
        calls += 1
        x = scheduler.step(eps, timestep, x, **_step_options(scheduler)).prev_sample
        if getattr(scheduler, "step_index", index + 1) != index + 1:
            raise RuntimeError(f"{config.label}: step index out of step with the loop at call {index}")
    if calls > nfe:
        raise RuntimeError(f"{config.label}: {calls} network calls exceed the budget of {nfe}")
    return x, calls


def _step_options(scheduler) -> dict:
    """SA-Solver draws noise (times tau = 0) even when deterministic: a fixed generator keeps runs repeatable."""
    return {"generator": torch.Generator().manual_seed(0)} if isinstance(scheduler, SASolverScheduler) else {}


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
