"""The diffusion a run trains and samples with, built once from its ``[diffusion]`` section."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from multidiff import parameterizations, schedules, weightings
from multidiff.parameterizations import Prediction
from multidiff.schedules import Schedule
from multidiff.weightings import Weighting

#: The ``[diffusion]`` key each constructor parameter of a prediction or a weighting is read from.
CONFIG_KEYS = {"sigma_data": "sigma_data", "gamma": "min_snr_gamma", "p_mean": "p_mean", "p_std": "p_std"}


@dataclass(frozen=True)
class Diffusion:
    schedule: Schedule
    prediction: Prediction
    weighting: Weighting
    t_min: float = weightings.T_MIN    # the smallest time trained on, so the smallest one sampling asks for


def from_config(dc: dict) -> Diffusion:
    """Schedule, prediction and weighting of a ``[diffusion]`` section (names checked by config.validate)."""
    return Diffusion(schedule=schedules.get(dc["schedule"], **dc["schedule_args"]),
                     prediction=_built(parameterizations.PREDICTIONS[dc["prediction"]], dc),
                     weighting=_built(weightings.WEIGHTINGS[dc["weighting"]], dc),
                     t_min=dc.get("t_min", weightings.T_MIN))


def _built(cls, dc: dict):
    """``cls`` with each of its constructor parameters taken from its key in ``dc``."""
    return cls(**{name: dc[CONFIG_KEYS[name]] for name in inspect.signature(cls).parameters})
