"""A step placement fitted to the model itself from a pilot run ("pilot" in ``multidiff.steps``).

At 5 to 20 network calls the error of an ODE sampler is set mostly by where its steps fall, and the
best places depend on the model: on where along the noise levels its data prediction D moves, and on
how early the steps may stop. A pilot measures that once, on pilot noises of its own:

1. Reference: a fine solve (``dpmpp_3m``, REFERENCE_STEPS steps uniform in lam = logSNR from the
   schedule's top down to LOGSNR_BOTTOM) gives the pilot noises' end points and the speed of D along
   the path, m(lam) = RMS over the pilot batch of dD/dlam.
2. Placement family: the first time is t = 1 (pure noise, where D is close to the data mean); the
   other n - 1 nonzero times sit at equal shares of the density m(lam)^gamma between lam = a and
   lam = b (gamma = 0: uniform in logSNR; gamma > 0: more steps where D moves fastest); the last step
   returns D at b. A free first jump to a skips the high noise levels where D barely changes.
3. Tuning, per step count: a pattern search over (a, b, gamma), started from uniform-in-logSNR steps
   (``multidiff.steps.logsnr``), minimises the RMS distance between the sampler's result with that
   placement and the reference end points, on the same pilot noises. It only ever accepts a better
   point, so on the pilot noises the result is never worse than uniform-in-logSNR steps.

Everything is measured on the model and its pilot noises, never on data or an exact solution. The
pilot's network calls (``PilotSteps.nfe``, each on the batch of pilot noises) are a one-off cost per
model, sampler and step count, amortised over every sample drawn afterwards.

Use::

    pilot = pilot_steps.fit(model, (128, 3, 8, 8), schedule="linear", sampler="dpmpp_2m")
    x = multidiff.sample(model, shape, schedule="linear", sampler="dpmpp_2m", steps=10, placement="pilot")

``fit`` makes the new pilot the one that ``placement="pilot"`` uses; asking it for a step count it
has not tuned yet tunes it then, with more network calls.
"""
from __future__ import annotations

import math

import torch

from . import parameterizations, samplers, schedules
from . import steps as placements
from .parameterizations import Denoiser
from .sampling import device_of
from .schedules import interp

REFERENCE_SAMPLER = "dpmpp_3m"
REFERENCE_STEPS = 400
LOGSNR_BOTTOM = 20.0    # sigma~ = exp(-10): far below the spread of any data the model was trained on
SEARCH_STEPS = (2.0, 2.0, 0.25)    # first moves of the pattern search in a, b (logSNR) and gamma
SEARCH_HALVINGS = 3     # the moves halve this often before the search stops (a, b to 0.25 in logSNR)

_active: PilotSteps | None = None


class PilotSteps:
    """A fitted pilot; call it as a placement ``pilot(schedule, steps, t_max=1.0) -> times``.

    ``tuned[steps]`` holds the chosen (a, b, gamma) and its pilot error; ``nfe`` counts the network
    calls spent so far (``reference_nfe`` of them on the reference solve).
    """

    def __init__(self, denoise, schedule, sampler: str, start: torch.Tensor):
        self.denoise = denoise
        self.schedule = schedule
        self.sampler = sampler
        self.start = start
        self.nfe = 0
        self.tuned: dict[int, tuple[tuple[float, float, float], float]] = {}
        self._measure()

    @torch.no_grad()
    def __call__(self, schedule, steps: int, t_max: float = 1.0) -> torch.Tensor:
        if repr(schedules.get(schedule)) != repr(self.schedule):
            raise ValueError(f"this pilot was fitted for the schedule {self.schedule!r}, not {schedule!r}")
        if t_max != 1.0:
            raise ValueError(f"a pilot placement starts at t = 1 (pure noise), got t_max = {t_max}")
        steps = placements.check_count(steps)
        if steps not in self.tuned:
            self.tuned[steps] = self._tune(steps)
        return self.times(steps, *self.tuned[steps][0])

    def times(self, steps: int, a: float, b: float, gamma: float) -> torch.Tensor:
        """The family's placement: t = 1, then steps - 1 times at equal shares of m^gamma on [a, b], then 0."""
        lam = self.lam
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum(self.speed.clamp(min=1e-300) ** gamma * lam.diff(), 0)])
        ends = interp(torch.tensor([a, b], dtype=torch.float64), lam, cdf)
        shares = torch.linspace(float(ends[0]), float(ends[1]), steps - 1, dtype=torch.float64)
        if steps == 2:
            shares = ends[1:]
        inner = self.schedule.t_from_logsnr(interp(shares, cdf, lam))
        t = torch.cat([torch.ones(1, dtype=torch.float64), inner, torch.zeros(1, dtype=torch.float64)])
        if not bool((t[1:] < t[:-1]).all()):
            raise ValueError(f"(a, b) = ({a}, {b}) gives times that do not fall strictly: {t.tolist()}")
        return t

    def error(self, times: torch.Tensor) -> float:
        """RMS distance of the sampler's result on the pilot noises from the reference end points."""
        x = samplers.get(self.sampler)(self._counted, self.start, times, self.schedule)
        error = float((x.to(torch.float64) - self.reference).pow(2).mean().sqrt())
        return error if math.isfinite(error) else math.inf

    def _counted(self, x, t):
        self.nfe += 1
        return self.denoise(x, t)

    def _measure(self) -> None:
        """The reference solve: end points and the RMS speed of D per unit logSNR along the path."""
        top = self.schedule.logsnr(torch.tensor(1.0, dtype=torch.float64))
        if not torch.isfinite(top):      # zero terminal SNR: the grid starts where uniform-in-t steps would
            top = self.schedule.logsnr(torch.tensor(1.0 - 1.0 / REFERENCE_STEPS, dtype=torch.float64))
        bottom = min(LOGSNR_BOTTOM, float(self.schedule.logsnr(torch.tensor(1e-9, dtype=torch.float64))))
        self.lam = torch.linspace(float(top), bottom, REFERENCE_STEPS, dtype=torch.float64)
        seen: list[torch.Tensor] = []

        def recording(x, t):
            d = self._counted(x, t)
            seen.append(d.to(torch.float64))
            return d

        t = torch.cat([self.schedule.t_from_logsnr(self.lam), torch.zeros(1, dtype=torch.float64)])
        t[0] = 1.0
        self.reference = samplers.get(REFERENCE_SAMPLER)(recording, self.start, t, self.schedule).to(torch.float64)
        d = torch.stack(seen[:REFERENCE_STEPS])
        self.speed = d.diff(dim=0).pow(2).mean(dim=tuple(range(1, d.ndim))).sqrt() / self.lam.diff()
        self.reference_nfe = self.nfe

    def _tune(self, steps: int) -> tuple[tuple[float, float, float], float]:
        """((a, b, gamma), pilot error): a pattern search from uniform-in-logSNR steps."""
        top, bottom = float(self.lam[0]), float(self.lam[-1])
        if steps == 1:
            return (top, top, 0.0), self.error(self.times(1, top, top, 0.0))
        b = min(float(self.schedule.logsnr(torch.tensor(placements.T_MIN, dtype=torch.float64))), bottom)
        point = (top + (b - top) / (steps - 1), b, 0.0)
        seen: dict[tuple[float, float, float], float] = {}

        def cost(p: tuple[float, float, float]) -> float:
            a, b, gamma = p
            if not (top < a and (a < b or steps == 2) and b <= bottom and gamma >= 0):
                return math.inf
            if p not in seen:
                try:
                    seen[p] = self.error(self.times(steps, *p))
                except ValueError:          # two times rounded together: not a placement
                    seen[p] = math.inf
            return seen[p]

        moves = list(SEARCH_STEPS)
        best = cost(point)
        for _ in range(SEARCH_HALVINGS + 1):
            improved = True
            while improved:
                improved = False
                for k, move in enumerate(moves):
                    for sign in (1, -1):
                        trial = tuple(v + sign * move if i == k else v for i, v in enumerate(point))
                        if cost(trial) < best:
                            point, best, improved = trial, cost(trial), True
            moves = [m / 2 for m in moves]
        return point, best


def fit(model, shape, *, schedule, sampler: str = "dpmpp_2m", prediction="eps",
        generator: torch.Generator | None = None) -> PilotSteps:
    """Run the pilot's reference solve for ``model`` (as ``multidiff.sample`` calls it) on noises of ``shape``.

    shape: (pilot batch, ...) like the samples to come; a few dozen pilot noises are enough. The
    pilot noises are drawn from ``generator`` (seed 0 if None). prediction: a name or a
    ``multidiff.parameterizations`` object. The new pilot becomes the one that ``placement="pilot"`` uses.
    """
    global _active
    schedule = schedules.get(schedule)
    samplers.get(sampler)
    prediction = parameterizations.get(prediction)
    shape = tuple(int(n) for n in shape)
    if len(shape) < 1 or min(shape) < 1:
        raise ValueError(f"shape must be (pilot batch, ...) with positive sizes, got {shape}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    start = noise * float(schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))
    denoiser = Denoiser(model, schedule, prediction)
    with torch.no_grad():
        _active = PilotSteps(lambda x, t: denoiser(x, t, None), schedule, sampler, start.to(device_of(model)))
    return _active


def _fitted_pilot(schedule, steps: int, t_max: float = 1.0) -> torch.Tensor:
    """The placement of the pilot fitted last (see ``fit``)."""
    if _active is None:
        raise ValueError("no pilot fitted: call multidiff.pilot_steps.fit(model, shape, schedule=...) first")
    return _active(schedule, steps, t_max)


placements.register("pilot", _fitted_pilot)
