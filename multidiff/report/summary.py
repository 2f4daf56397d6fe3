"""The lines ``multidiff info`` adds after the checkpoint's facts: how to condition, last loss, latest evaluation."""
from __future__ import annotations

from pathlib import Path

from multidiff import modality as modality_registry
from multidiff.conditioning.describe import describe_conditions
from multidiff.engine import evaluations
from multidiff.engine.metrics_log import read_metrics, smoothed
from multidiff.report.ceilings import split_ceilings


def run_folder(run_or_ckpt: str | Path) -> Path | None:
    """The run folder of a run folder or of a checkpoint file inside RUN/checkpoints/."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else None


def describe_progress(run_or_ckpt: str | Path, cfg: dict) -> list[str]:
    classes = cfg["dataset"]["class_names"]
    key = cfg["data"].get("cond_key") or modality_registry.get(cfg["modality"]).cond_key
    if cfg.get("conditions"):
        lines = describe_conditions(cfg)
    else:
        lines = [f"condition:  --cond {key}=NAME (a class above, or its index 0..{len(classes) - 1})" if classes
                 else "condition:  none (trained without classes)"]
    folder = run_folder(run_or_ckpt)
    if folder is None:
        return lines
    if (folder / "metrics.csv").is_file() and (rows := read_metrics(folder / "metrics.csv")):
        loss = [r["loss"] for r in rows]
        lines.append(f"last loss:  {loss[-1]:.5g} at step {rows[-1]['step']} (smoothed {smoothed(loss)[-1]:.5g})")
    found = evaluations.latest(folder)
    if found is None:
        lines.append("evaluation: none yet (multidiff eval RUN, or train.eval_every)")
        return lines
    origin, result = found
    model, ceilings = split_ceilings(evaluations.metrics_of(result))
    lines.append(f"evaluation: step {result['step']}" + (f", {result['n']} samples" if "n" in result else "") +
                 f" ({origin})")
    for name in dict.fromkeys([*model, *ceilings]):
        value = f"{model[name]:.6g}" if name in model else "-"
        reals = ", ".join(f"{kind}: {v:.6g}" for kind, v in ceilings.get(name, {}).items())
        lines.append(f"  {name}: {value}" + (f"   ({reals})" if reals else ""))
    return lines
