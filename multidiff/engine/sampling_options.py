"""A run's sampling options beyond the sampler: placement (a name, or "pilot"), eta, churn, trained range.

``options(...)`` turns the command line's or the recipe's ``[sample]`` values into keyword arguments of
``multidiff.sample``. ``--placement pilot`` fits a ``multidiff.pilot_steps`` placement once per
(checkpoint, sampler, steps, guidance) on pilot noises of its own and keeps it in RUN/pilots/ as JSON;
later calls reuse it, and a pilot fitted for other weights (the checkpoint's SHA-256 differs) is fitted
again. Fitting reports its stages and one-off network calls on stderr.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import torch

from multidiff import pilot_steps, samplers
from multidiff import steps as placements
from multidiff.engine import checkpoint
from multidiff.engine.data import derived_seed
from multidiff.engine.errors import UserError

PILOT = "pilot"
PILOT_BATCH = 64                          # pilot noises per fit
PILOT_SEED = derived_seed(0x70696C6F74)   # "pilot": noises no user seed draws


def check(sampler: str, placement: str, eta: float, churn: float) -> None:
    """UserError unless the placement is known and eta / churn belong to ``sampler`` (eta < 0, churn 0: unset)."""
    known = placements.names() + [PILOT]
    if placement and placement not in known:
        raise UserError(f"unknown placement {placement!r}; choose one of: {', '.join(known)}")
    accepted = inspect.signature(samplers.get(sampler)).parameters
    if eta >= 0 and "eta" not in accepted:
        with_eta = [n for n in samplers.names() if "eta" in inspect.signature(samplers.get(n)).parameters]
        raise UserError(f"sampler {sampler!r} takes no eta; samplers with eta: {', '.join(with_eta)}")
    if churn < 0:
        raise UserError(f"churn must be at least 0, got {churn}")
    if churn and "s_churn" not in accepted:
        raise UserError(f"sampler {sampler!r} takes no churn; only heun does")


def t_min(cfg: dict) -> float:
    """The run's smallest trained time (runs from before it was recorded trained with 1e-3)."""
    from multidiff.engine.diffusion import from_config

    return from_config(cfg["diffusion"]).t_min


def options(run, run_path: str | Path, *, sampler: str, steps: int, guidance: float, placement: str | None = None,
            eta: float | None = None, churn: float | None = None) -> dict:
    """Keyword arguments of ``multidiff.sample`` for ``run``: unset values come from its ``[sample]``."""
    defaults = run.cfg["sample"]
    placement = defaults.get("placement", "") if placement is None else placement
    eta = defaults.get("eta", -1.0) if eta is None else eta
    churn = defaults.get("churn", 0.0) if churn is None else churn
    check(sampler, placement, eta, churn)
    out = {"t_min": t_min(run.cfg)}
    if placement == PILOT and isinstance(guidance, dict):
        raise UserError("the pilot placement is fitted for one guidance scale; drop --guidance NAME=SCALE")
    if placement == PILOT:
        out["placement"] = pilot_for(run, run_path, sampler=sampler, steps=steps, guidance=guidance)
    elif placement:
        out["placement"] = placement
    if eta >= 0:
        out["eta"] = eta
    if churn:
        out["s_churn"] = churn
    return out


def pilot_for(run, run_path: str | Path, *, sampler: str, steps: int, guidance: float) -> pilot_steps.Pilot:
    """The cached pilot of RUN/pilots/ for these settings, fitted (and saved) when missing or stale."""
    weights = checkpoint.weights_path(run_path)
    folder = (Path(run_path) if Path(run_path).is_dir() else weights.parent) / "pilots"
    path = folder / f"{sampler}-{steps}steps-guidance{guidance:g}.json"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if path.is_file():
        cached = pilot_steps.Pilot.load(path)
        if cached.fitted_for.get("checkpoint_sha256") == digest and steps in cached.tuned:
            _say(f"pilot: using {path} (fitted once in {cached.nfe} network calls)")
            return cached
        _say(f"pilot: {path} was fitted for other weights; fitting again")
    pilot = fit(run, sampler=sampler, steps=steps, guidance=guidance)
    pilot = pilot_steps.Pilot({**pilot.fitted_for, "checkpoint_sha256": digest, "step": run.step},
                              pilot.reference_nfe, pilot.tuned)
    folder.mkdir(parents=True, exist_ok=True)
    pilot.save(path)
    _say(f"pilot: fitted in {pilot.nfe} network calls on {PILOT_BATCH} pilot noises (one-off) -> {path}")
    return pilot


def fit(run, *, sampler: str, steps: int, guidance: float) -> pilot_steps.Pilot:
    """A pilot for ``run``'s network as ``multidiff.engine.generate.draw`` samples it, labels balanced over classes."""
    from multidiff.engine.conditions import class_labels
    from multidiff.engine.diffusion import from_config

    diffusion = from_config(run.cfg["diffusion"])
    shape = (PILOT_BATCH, *run.cfg["dataset"]["encoded_shape"])
    return pilot_steps.fit(run.model, shape, schedule=diffusion.schedule, sampler=sampler, steps=steps,
                           prediction=diffusion.prediction, cond=class_labels(PILOT_BATCH, run.cfg),
                           guidance_scale=guidance, t_min=t_min(run.cfg),
                           generator=torch.Generator().manual_seed(PILOT_SEED), progress=_say)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
