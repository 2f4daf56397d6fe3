"""The training log: RUN/metrics.csv, TensorBoard events when tensorboard is installed, RUN/loss.png.

Each row reaches metrics.csv in one write call, flushed at once, so a kill or a full disk can tear
at most the last line; the reader drops a line without its newline or with missing or unreadable
fields instead of refusing the whole log. loss.png is redrawn at most every PLOT_INTERVAL_S seconds
(drawing it costs more than a small model's training step), and once more at the end of a session.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from multidiff.engine.checkpoint import atomic_write

COLUMNS = ("step", "loss", "lr", "grad_norm", "steps_per_s")
PLOT_INTERVAL_S = 30.0


class MetricsLog:
    """Appends rows to metrics.csv; on resume, rows after the resumed step are dropped first
    (they were logged after the checkpoint and will be logged again)."""

    def __init__(self, run_dir: Path, start_step: int):
        self.path = Path(run_dir) / "metrics.csv"
        self.plot_path = Path(run_dir) / "loss.png"
        rows = [r for r in read_metrics(self.path) if r["step"] <= start_step] if self.path.exists() else []
        atomic_write(self.path, (_csv_line(COLUMNS) + "".join(_csv_line(r[k] for k in COLUMNS) for r in rows)).encode())
        self.file = open(self.path, "a")
        self.last_plot = None
        self.tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard")

    def write(self, row: dict) -> None:
        self.file.write(_csv_line(row[k] for k in COLUMNS))
        self.file.flush()
        if self.tensorboard is not None:
            for key in COLUMNS[1:]:
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["step"])

    def plot(self, force: bool = False) -> None:
        """Redraw loss.png if ``force`` or PLOT_INTERVAL_S have passed since the last drawing."""
        if not force and self.last_plot is not None and time.monotonic() - self.last_plot < PLOT_INTERVAL_S:
            return
        from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

        rows = read_metrics(self.path)
        fig = Figure(figsize=(6, 3.5), dpi=100)
        ax = fig.add_subplot()
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        fig.savefig(self.plot_path, bbox_inches="tight")
        self.last_plot = time.monotonic()

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(path: Path) -> list[dict]:
    """The complete rows of a metrics.csv; a torn last line (no newline) and unreadable rows are left out."""
    text = Path(path).read_text(errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    rows = []
    for record in csv.DictReader(lines):
        try:
            rows.append({"step": int(record["step"]), **{k: float(record[k]) for k in COLUMNS[1:]}})
        except (KeyError, TypeError, ValueError):
            continue
    return rows


def _csv_line(values) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(list(values))
    return out.getvalue()


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))
