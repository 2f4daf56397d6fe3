"""The training log: RUN/metrics.csv, TensorBoard events when tensorboard is installed, RUN/loss.png."""
from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("step", "loss", "lr", "grad_norm", "steps_per_s")


class MetricsLog:
    """Appends rows to metrics.csv; on resume, rows after the resumed step are dropped first
    (they were logged after the checkpoint and will be logged again)."""

    def __init__(self, run_dir: Path, start_step: int):
        self.path = Path(run_dir) / "metrics.csv"
        self.plot_path = Path(run_dir) / "loss.png"
        rows = [r for r in read_metrics(self.path) if r["step"] <= start_step] if self.path.exists() else []
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard")

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow(row)
        if self.tensorboard is not None:
            for key in COLUMNS[1:]:
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["step"])

    def plot(self) -> None:
        from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

        rows = read_metrics(self.path)
        fig = Figure(figsize=(6, 3.5), dpi=100)
        ax = fig.add_subplot()
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        fig.savefig(self.plot_path, bbox_inches="tight")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{"step": int(r["step"]), **{k: float(r[k]) for k in COLUMNS[1:]}} for r in csv.DictReader(f)]


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))
