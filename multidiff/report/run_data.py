"""What a run folder holds, read once for the report: config, summary, logs, evaluations, previews."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from multidiff.engine import checkpoint, evaluations
from multidiff.engine.errors import UserError
from multidiff.engine.metrics_log import read_metrics

_PREVIEW = re.compile(r"^step_(\d+)\.png$")


@dataclass
class RunData:
    path: Path
    cfg: dict
    step: int | None = None           # of the last checkpoint; None without one
    parameters: int | None = None
    summary: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)        # metrics.csv
    training_evals: list[dict] = field(default_factory=list)  # evals.csv
    evals: list[dict] = field(default_factory=list)           # RUN/evals/*.json (or eval.json)
    previews: list[tuple[int, Path]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def has_checkpoint(self) -> bool:
        return self.step is not None


def read_run(path: str | Path) -> RunData:
    """A run folder's contents; a UserError when it holds neither a checkpoint nor a config.json."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run folder not found: {path}")
    weights = checkpoint.checkpoint_dir(path) / checkpoint.WEIGHTS_NAME
    if weights.is_file():
        cfg, step, sizes = checkpoint.read_metadata(path)
        run = RunData(path, cfg, step, sizes["model"])
    elif (path / "config.json").is_file():
        run = RunData(path, _json(path / "config.json"))
    else:
        raise UserError(f"{path} is not a multidiff run (no checkpoints/{checkpoint.WEIGHTS_NAME} or config.json)")
    if (path / "summary.json").is_file():
        run.summary = _json(path / "summary.json")
    if (path / "metrics.csv").is_file():
        run.metrics = read_metrics(path / "metrics.csv")
    if (path / evaluations.TRAINING_LOG).is_file():
        run.training_evals = evaluations.read_training_evals(path / evaluations.TRAINING_LOG)
    run.evals = evaluations.read_records(path)
    run.previews = sorted((int(m.group(1)), p) for p in (path / "previews").glob("step_*.png")
                          if (m := _PREVIEW.match(p.name)))
    return run


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
