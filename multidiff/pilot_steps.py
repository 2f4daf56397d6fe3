"""A step placement fitted to the model itself from a pilot run: ``pilot = fit(model, ...)``.

At 5 to 20 network calls the error of an ODE sampler is set mostly by where its steps fall, and the
best places depend on the model: on where along the noise levels its data prediction D moves. A pilot
measures that once, on pilot noises of its own, inside the trained range [t_min, 1]:

1. Reference: a fine solve (``dpmpp_3m``, REFERENCE_STEPS steps uniform in lam = logSNR from the
   schedule's top down to logSNR(t_min), ending with the final denoising step at t_min) gives the pilot
   noises' end points, the target every placement can reach, and the speed of D along the path,
   m(lam) = RMS over the pilot batch of dD/dlam.
2. Placement family: the first time is t = 1 (pure noise, where D is close to the data mean); the
   other n - 1 nonzero times sit at equal shares of the density m(lam)^gamma between lam = a and
   lam = b <= logSNR(t_min) (gamma = 0: uniform in logSNR; gamma > 0: more steps where D moves
   fastest); the last step returns D at b. A free first jump to a skips the high noise levels where D
   barely changes.
3. Tuning, per step count: a pattern search over (a, b, gamma), started from uniform-in-logSNR steps
   (``multidiff.steps.logsnr``), minimises the RMS distance between the sampler's result with that
   placement and the reference end points, on the same pilot noises. It only ever accepts a better
   point, so on the pilot noises the result is never worse than uniform-in-logSNR steps.

Everything is measured on the model and its pilot noises, never on data or an exact solution, and the
network is never asked about t < t_min. The pilot's network calls (each on the batch of pilot noises)
are a one-off cost per model, sampler, step count and guidance, amortised over every sample drawn after.

A ``Pilot`` is a value: the times it chose per step count and what it was fitted for. Use it as a
placement, keep it in a file::

    pilot = pilot_steps.fit(model, (64, 3, 8, 8), schedule="linear", sampler="dpmpp_2m", steps=[6, 10])
    x = multidiff.sample(model, shape, schedule="linear", sampler="dpmpp_2m", steps=10, placement=pilot)
    pilot.save("pilot.json"); pilot = pilot_steps.Pilot.load("pilot.json")
"""
from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Callable, Iterable

import torch

from . import parameterizations, samplers, schedules
from . import steps as placements
from .conditioning import batch as condition_batch
from .guidance import guided
from .parameterizations import Denoiser
from .sampling import device_of
from .schedules import interp

REFERENCE_SAMPLER = "dpmpp_3m"
REFERENCE_STEPS = 400
LOGSNR_BOTTOM = 20.0    # where the reference stops for a model exact at every level (t_min = 0)
SEARCH_STEPS = (2.0, 2.0, 0.25)    # first moves of the pattern search in a, b (logSNR) and gamma
SEARCH_HALVINGS = 3     # the moves halve this often before the search stops (a, b to 0.25 in logSNR)
FORMAT = "multidiff-pilot/1"


class Pilot:
    """A fitted placement, called as ``pilot(schedule, steps) -> times`` for the step counts it was tuned for.

    fitted_for: what the times were fitted for (schedule, sampler, t_min, prediction, guidance, pilot
    batch, and anything its maker adds, e.g. a checkpoint hash). tuned[steps]: the times and the search's
    result, dict(times, a, b, gamma, pilot_error, tuning_nfe). reference_nfe: the reference solve's calls.
    """

    def __init__(self, fitted_for: dict, reference_nfe: int, tuned: dict[int, dict]):
        self.fitted_for = dict(fitted_for)
        self.reference_nfe = int(reference_nfe)
        self.tuned = {int(n): dict(entry) for n, entry in tuned.items()}

    @property
    def steps(self) -> list[int]:
        return sorted(self.tuned)

    @property
    def nfe(self) -> int:
        """Network calls the fit cost, each on the batch of pilot noises."""
        return self.reference_nfe + sum(entry["tuning_nfe"] for entry in self.tuned.values())

    def __call__(self, schedule, steps: int) -> torch.Tensor:
        if repr(schedules.get(schedule)) != self.fitted_for["schedule"]:
            raise ValueError(f"this pilot was fitted for the schedule {self.fitted_for['schedule']}, not {schedule!r}")
        if steps not in self.tuned:
            raise ValueError(f"this pilot was fitted for {', '.join(map(str, self.steps))} steps, not {steps!r}: "
                             "fit one for that step count")
        return torch.tensor(self.tuned[steps]["times"], dtype=torch.float64)

    def __repr__(self) -> str:
        return f"Pilot(sampler={self.fitted_for.get('sampler')!r}, steps={self.steps}, nfe={self.nfe})"

    def save(self, path: str | Path) -> None:
        """Write the pilot as JSON (the times as exact float64 decimals), replacing ``path`` only once complete."""
        doc = {"format": FORMAT, "fitted_for": self.fitted_for, "reference_nfe": self.reference_nfe,
               "tuned": {str(n): self.tuned[n] for n in self.steps}}
        tmp = Path(f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp")   # unique: two writers never share it
        try:
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> Pilot:
        """A pilot saved by ``save``; a ValueError naming the file for anything else."""
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("format") != FORMAT:
                raise ValueError(f"no {FORMAT!r} format tag")
            pilot = cls(doc["fitted_for"], doc["reference_nfe"], doc["tuned"])
            for n, entry in pilot.tuned.items():
                times = torch.tensor(entry["times"], dtype=torch.float64)
                if times.shape != (n + 1,) or times[-1] != 0 or not bool((times[1:] < times[:-1]).all()):
                    raise ValueError(f"the times for {n} steps do not fall strictly to 0")
                entry["tuning_nfe"] = int(entry["tuning_nfe"])
            if not isinstance(pilot.fitted_for.get("schedule"), str):
                raise ValueError("it names no schedule")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            what = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise ValueError(f"{path} is not a readable multidiff pilot: {what}") from None
        return pilot


def fit(model, shape, *, schedule, sampler: str = "dpmpp_2m", steps: int | Iterable[int] = 10,
        prediction="eps", cond: torch.Tensor | None = None,
        guidance_scale: float = 1.0, t_min: float = placements.T_MIN, generator: torch.Generator | None = None,
        progress: Callable[[str], None] | None = None, reference_steps: int = REFERENCE_STEPS) -> Pilot:
    """Fit a pilot placement for ``model`` (called as ``multidiff.sample`` calls it) and ``sampler``.

    shape: (pilot batch, ...) like the samples to come; a few dozen pilot noises are enough, drawn from
    ``generator`` (seed 0 if None). prediction: a name or a ``multidiff.parameterizations`` object.
    steps: the step count(s) to tune. cond, guidance_scale: labels of the
    pilot batch and the guidance the samples will use. t_min: the smallest trained time (as in
    ``multidiff.sample``). progress: called with a line per stage, network calls included. reference_steps:
    the reference solve's steps (fewer make a cheaper, coarser pilot for an expensive network).
    """
    schedule = schedules.get(schedule)
    samplers.get(sampler)
    prediction = parameterizations.get(prediction)
    counts = sorted({steps} if isinstance(steps, int) else set(steps))
    if not counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
        raise ValueError(f"steps must be positive integers, got {steps!r}")
    if not 0 <= t_min < 1:
        raise ValueError(f"t_min must be in [0, 1), got {t_min}")
    shape = tuple(int(n) for n in shape)
    if len(shape) < 1 or min(shape) < 1:
        raise ValueError(f"shape must be (pilot batch, ...) with positive sizes, got {shape}")
    if cond is not None and condition_batch.size(cond) != shape[0]:
        raise ValueError(f"cond must hold {shape[0]} rows of conditions, got {condition_batch.size(cond)}")
    say = progress or (lambda line: None)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    start = (noise * float(schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))).to(device_of(model))
    denoiser = guided(Denoiser(model, schedule, prediction), guidance_scale)
    cond = condition_batch.to(cond, start.device)
    fitted_for = {"schedule": repr(schedule), "sampler": sampler, "t_min": t_min, "prediction": repr(prediction),
                  "guidance_scale": guidance_scale, "pilot_batch": shape[0]}
    with torch.no_grad():
        say(f"pilot: reference solve, {reference_steps} network calls on {shape[0]} pilot noises")
        search = _Search(lambda x, t: denoiser(x, t, cond), schedule, sampler, start, t_min, reference_steps)
        tuned = {}
        for n in counts:
            before = search.nfe
            (a, b, gamma), error = search.tune(n)
            tuned[n] = dict(times=search.times(n, a, b, gamma).tolist(), a=a, b=b, gamma=gamma, pilot_error=error,
                            tuning_nfe=search.nfe - before)
            say(f"pilot: tuned {n} steps in {tuned[n]['tuning_nfe']} network calls (pilot error {error:.3g})")
    return Pilot(fitted_for, search.reference_nfe, tuned)


class _Search:
    """The reference solve on the pilot noises and the pattern search over the placement family."""

    def __init__(self, denoise, schedule, sampler: str, start: torch.Tensor, t_min: float,
                 reference_steps: int = REFERENCE_STEPS):
        self.denoise = denoise
        self.schedule = schedule
        self.sampler = sampler
        self.start = start
        self.nfe = 0
        self._measure(t_min, reference_steps)

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
        if steps > 1:
            inner[-1] = max(float(inner[-1]), self.t_bottom)     # b = bottom must not round below t_min
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

    def _measure(self, t_min: float, n: int) -> None:
        """The reference solve: end points and the RMS speed of D per unit logSNR along the path."""
        top = self.schedule.logsnr(torch.tensor(1.0, dtype=torch.float64))
        if not torch.isfinite(top):      # zero terminal SNR: the grid starts where uniform-in-t steps would
            top = self.schedule.logsnr(torch.tensor(1.0 - 1.0 / n, dtype=torch.float64))
        if t_min > 0:
            self.t_bottom = t_min
            bottom = float(self.schedule.logsnr(torch.tensor(t_min, dtype=torch.float64)))
        else:
            bottom = min(LOGSNR_BOTTOM, float(self.schedule.logsnr(torch.tensor(1e-9, dtype=torch.float64))))
            self.t_bottom = float(self.schedule.t_from_logsnr(torch.tensor(bottom, dtype=torch.float64)))
        self.lam = torch.linspace(float(top), bottom, n, dtype=torch.float64)
        seen: list[torch.Tensor] = []

        def recording(x, t):
            d = self._counted(x, t)
            seen.append(d.to(torch.float64))
            return d

        t = torch.cat([self.schedule.t_from_logsnr(self.lam), torch.zeros(1, dtype=torch.float64)])
        t[0], t[-2] = 1.0, self.t_bottom
        self.reference = samplers.get(REFERENCE_SAMPLER)(recording, self.start, t, self.schedule).to(torch.float64)
        d = torch.stack(seen[:n])
        self.speed = d.diff(dim=0).pow(2).mean(dim=tuple(range(1, d.ndim))).sqrt() / self.lam.diff()
        self.reference_nfe = self.nfe

    def tune(self, steps: int) -> tuple[tuple[float, float, float], float]:
        """((a, b, gamma), pilot error): a pattern search from uniform-in-logSNR steps."""
        top, bottom = float(self.lam[0]), float(self.lam[-1])
        if steps == 1:
            return (top, bottom, 0.0), self.error(self.times(1, top, bottom, 0.0))
        point = (top + (bottom - top) / (steps - 1), bottom, 0.0)
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


