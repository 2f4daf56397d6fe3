"""Where evaluations go, and the evaluation during training.

``multidiff eval`` writes each evaluation to its own file, RUN/evals/eval_step<STEP>_<K>.json (K counts
the evaluations of that step; an existing file is never replaced), and copies the latest to
RUN/eval.json, the name older tools read. Each file holds the step, the number of samples, the
metrics at the top level and the sampling settings under "settings".

``train.eval_every`` scores ``train.eval_n`` samples every that many steps (and at the last step):
one row per evaluation in RUN/evals.csv, the metrics in TensorBoard under eval/, and with
``train.best_metric`` the weights of the best evaluation so far in RUN/checkpoints/best.safetensors.
"""
from __future__ import annotations

import csv
import json
import math
import re
import time
from pathlib import Path

from multidiff.engine import checkpoint
from multidiff.engine.errors import UserError

EVALS_DIR = "evals"
LATEST_NAME = "eval.json"
TRAINING_LOG = "evals.csv"
BEST_NAME = "best.safetensors"
_RECORD = re.compile(r"^eval_step(\d+)_(\d+)\.json$")


def record(run_dir: Path, result: dict, out: Path | None = None) -> Path:
    """Write ``result`` to ``out`` or to the next free RUN/evals/eval_step<STEP>_<K>.json, and to RUN/eval.json."""
    result = {**result, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(result, indent=2) + "\n"
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(out, "x") as f:
                f.write(text)
        except FileExistsError:
            raise UserError(f"{out} already exists; choose another --out (evaluations are never overwritten)") from None
        path = out
    else:
        folder = Path(run_dir) / EVALS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        k = 1 + max((int(m.group(2)) for p in folder.iterdir()
                     if (m := _RECORD.match(p.name)) and int(m.group(1)) == result["step"]), default=0)
        while True:  # exclusive creation: two evaluations at once never share a file
            path = folder / f"eval_step{result['step']:06d}_{k:02d}.json"
            try:
                with open(path, "x") as f:
                    f.write(text)
                break
            except FileExistsError:
                k += 1
    checkpoint.atomic_write(Path(run_dir) / LATEST_NAME, text.encode())
    return path


def read_records(run_dir: Path) -> list[dict]:
    """Every evaluation of RUN/evals/ in (step, K) order, each with its "file" name; RUN/eval.json alone
    for a run evaluated before evaluations had their own files."""
    folder = Path(run_dir) / EVALS_DIR
    found = sorted((int(m.group(1)), int(m.group(2)), p) for p in folder.glob("eval_step*.json")
                   if (m := _RECORD.match(p.name))) if folder.is_dir() else []
    paths = [p for _, _, p in found]
    if not paths and (Path(run_dir) / LATEST_NAME).is_file():
        paths = [Path(run_dir) / LATEST_NAME]
    records = []
    for path in paths:
        try:
            records.append({**json.loads(path.read_text()), "file": path.name})
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON: {e}") from None
    return records


def metrics_of(result: dict) -> dict[str, float]:
    """The numeric metrics of an evaluation record (its step, sample count and settings left out)."""
    return {k: float(v) for k, v in result.items()
            if k not in ("step", "n") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_training_evals(path: Path) -> list[dict]:
    """The rows of RUN/evals.csv: "step" an int, every other column a float (NaN where empty)."""
    with open(path, newline="") as f:
        return [{"step": int(r["step"]), **{k: float(v) if v else math.nan for k, v in r.items() if k != "step"}}
                for r in csv.DictReader(f)]


def is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


class TrainingEvaluation:
    """``train.eval_every``: evaluates, logs to RUN/evals.csv (rows after a resumed step dropped,
    as in metrics.csv) and keeps the best checkpoint."""

    def __init__(self, run_dir: Path, cfg: dict, start_step: int):
        tc = cfg["train"]
        self.every, self.n, self.last = tc.get("eval_every", 0), tc.get("eval_n", 64), tc["steps"]
        self.metric, self.mode = tc.get("best_metric", ""), tc.get("best_mode", "min")
        self.path = Path(run_dir) / TRAINING_LOG
        self.best_path = checkpoint.checkpoint_dir(run_dir) / BEST_NAME
        self.rows = [r for r in read_training_evals(self.path) if r["step"] <= start_step] if self.path.exists() else []
        self.best = None
        for row in self.rows:
            if is_better(row.get(self.metric, math.nan), self.best, self.mode):
                self.best = row[self.metric]
        if self.every:
            self._write()

    def due(self, step: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == self.last)

    def __call__(self, step: int, run, parts: dict, log=None) -> dict[str, float]:
        """Score ``run`` (the EMA weights) at ``step``; ``parts`` are the weights best.safetensors keeps."""
        from multidiff.engine.generate import score

        s = run.cfg["sample"]
        metrics = score(run, self.n, sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"],
                        seed=run.cfg["train"]["seed"])
        self.rows.append({"step": step, **metrics})
        self._write()
        if log is not None:
            log.scalars("eval", metrics, step)
        if self.metric:
            if self.metric not in metrics:
                raise UserError(f"train.best_metric {self.metric!r} is not a metric of this modality; "
                                f"its metrics: {', '.join(metrics)}")
            if is_better(metrics[self.metric], self.best, self.mode):
                self.best = metrics[self.metric]
                self.best_path.parent.mkdir(parents=True, exist_ok=True)
                checkpoint.write_weights(self.best_path, step=step, cfg=run.cfg, parts=parts)
        return metrics

    def _write(self) -> None:
        columns = ["step"] + list(dict.fromkeys(k for row in self.rows for k in row if k != "step"))
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)


def latest(run_dir: Path) -> tuple[str, dict] | None:
    """(where it comes from, the record) of a run's latest evaluation: the newest of RUN/evals/ (or
    RUN/eval.json) and the last row of RUN/evals.csv, by step (a ``multidiff eval`` at the same step wins)."""
    found = []
    records = read_records(run_dir)
    if records:
        found.append((records[-1]["step"], 1, records[-1]["file"], records[-1]))
    if (Path(run_dir) / TRAINING_LOG).is_file() and (rows := read_training_evals(Path(run_dir) / TRAINING_LOG)):
        found.append((rows[-1]["step"], 0, f"{TRAINING_LOG} (during training)", rows[-1]))
    if not found:
        return None
    _, _, origin, result = max(found, key=lambda f: f[:2])
    return origin, result
