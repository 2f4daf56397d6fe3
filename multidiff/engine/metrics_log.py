"""The training log: RUN/metrics.csv, RUN/loss.png, and TensorBoard events when tensorboard is installed
(``pip install -e ".[tensorboard]"``): the scalars, the previews with their audio clips and point
clouds, the evaluations, and at the end the hyper-parameters with the final loss and metrics.

Each row reaches metrics.csv in one write call, flushed at once, so a kill or a full disk can tear
at most the last line; the reader drops a line without its newline or with missing or unreadable
fields instead of refusing the whole log. loss.png is redrawn at most every PLOT_INTERVAL_S seconds
(drawing it costs more than a small model's training step), and once more at the end of a session.
"""
from __future__ import annotations

import csv
import io
import math
import tempfile
import time
from pathlib import Path

from multidiff.engine.checkpoint import atomic_write

COLUMNS = ("step", "loss", "lr", "grad_norm", "steps_per_s")
#: Preview samples logged to TensorBoard as clips or clouds (the preview picture shows them all).
MAX_LOGGED_SAMPLES = 4
PLOT_INTERVAL_S = 30.0


class MetricsLog:
    """Appends rows to metrics.csv; on resume, rows after the resumed step are dropped first
    (they were logged after the checkpoint and will be logged again)."""

    def __init__(self, run_dir: Path, start_step: int, cfg: dict | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        self.plot_path = Path(run_dir) / "loss.png"
        recipe = f"recipe {cfg['name']}" + (f", preset {cfg['preset']}" if cfg.get("preset") else "") if cfg else ""
        self.title = Path(run_dir).resolve().name + (f" ({recipe})" if recipe else "")
        self.cfg = cfg
        rows = [r for r in read_metrics(self.path) if r["step"] <= start_step] if self.path.exists() else []
        atomic_write(self.path, (_csv_line(COLUMNS) + "".join(_csv_line(r[k] for k in COLUMNS) for r in rows)).encode())
        self.file = open(self.path, "a")
        self.last_plot = None
        self.final = {"loss": rows[-1]["loss"]} if rows else {}
        self.tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard")

    def write(self, row: dict) -> None:
        self.file.write(_csv_line(row[k] for k in COLUMNS))
        self.file.flush()
        self.final["loss"] = row["loss"]
        if self.tensorboard is not None:
            for key in COLUMNS[1:]:
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["step"])

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """Log ``values`` (e.g. an evaluation's metrics) as ``prefix/name``; the last ones go to the hparams."""
        self.final.update(values)
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"{prefix}/{key}", value, step)

    def samples(self, step: int, x, labels, modality, cfg: dict, picture: Path) -> None:
        """The preview picture, and the samples as the modality writes them: WAV files become audio
        clips, (N, 3) point files meshes without faces (TensorBoard's point clouds)."""
        if self.tensorboard is None:
            return
        from multidiff.report.media import read_cloud, read_image, read_wav

        self.tensorboard.add_image("samples/preview", read_image(picture), step, dataformats="HWC")
        with tempfile.TemporaryDirectory() as folder:
            paths = modality.write(x, labels, Path(folder), cfg)
            clips = [p for p in paths if p.suffix == ".wav"][:MAX_LOGGED_SAMPLES]
            for i, path in enumerate(clips):
                wave, rate = read_wav(path)
                self.tensorboard.add_audio(f"samples/audio_{i}", wave[None], step, sample_rate=rate)
            clouds = [c for p in paths if p.suffix == ".npy" and (c := read_cloud(p)) is not None]
            for i, cloud in enumerate(clouds[:MAX_LOGGED_SAMPLES]):
                self.tensorboard.add_mesh(f"samples/cloud_{i}", vertices=cloud[None], global_step=step)

    def plot(self, force: bool = False) -> None:
        """loss.png: the loss per logged step (faint) and its exponential moving average, on a log
        scale, with the learning rate on a second axis; redrawn only if ``force`` or PLOT_INTERVAL_S
        have passed since the last drawing."""
        if not force and self.last_plot is not None and time.monotonic() - self.last_plot < PLOT_INTERVAL_S:
            return
        from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

        from matplotlib.ticker import FuncFormatter

        rows = read_metrics(self.path)
        steps = [r["step"] for r in rows]
        loss = [r["loss"] for r in rows]
        span = smoothing_span(len(loss))
        fig = Figure(figsize=(7, 3.8), dpi=100)
        ax = fig.add_subplot()
        if span > 1:
            ax.plot(steps, loss, color="C0", alpha=0.3, linewidth=1, label="loss")
            ax.plot(steps, smoothed(loss, span), color="C0", linewidth=2, label=f"loss, EMA over ~{span} points")
        else:
            ax.plot(steps, loss, color="C0", linewidth=2, label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if all(v > 0 for v in loss):
            ax.set_yscale("log")
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
        lr_axis = ax.twinx()
        lr_axis.plot(steps, [r["lr"] for r in rows], color="C1", linewidth=1, linestyle="--", label="learning rate")
        lr_axis.set_ylabel("learning rate", color="C1")
        lr_axis.tick_params(axis="y", colors="C1")
        lines = ax.get_lines() + lr_axis.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
        ax.set_title(f"{self.title}: training loss")
        fig.savefig(self.plot_path, bbox_inches="tight")
        self.last_plot = time.monotonic()

    def close(self) -> None:
        """Flush the events (the writer stays usable: the last preview comes after the loop)."""
        if not self.file.closed:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def finish(self) -> None:
        """The hyper-parameters with the final loss and metrics, then close the events file."""
        if self.tensorboard is not None:
            if self.cfg is not None and self.final:
                self.tensorboard.add_hparams(hyperparameters(self.cfg), {f"final/{k}": v for k, v in self.final.items()},
                                             run_name="hparams")
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


def smoothing_span(n: int) -> int:
    """The moving average spans about a twentieth of the curve (at least one point)."""
    return max(1, n // 20)


def smoothed(values, span: int | None = None) -> list[float]:
    """Exponential moving average with weight 2 / (span + 1) on the newest value, divided by the sum of
    its weights so far (so the start is not pulled towards zero): a constant stays that constant."""
    alpha = 2 / ((span or smoothing_span(len(values))) + 1)
    out, total, weight = [], 0.0, 0.0
    for v in values:
        total = (1 - alpha) * total + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(total / weight)
    return out


def hyperparameters(cfg: dict) -> dict:
    """The scalar settings of a run's recipe, flattened ("train.lr": 0.001), as TensorBoard's hparams take them."""
    out = {k: cfg[k] for k in ("name", "modality", "preset") if cfg.get(k)}
    for section in ("diffusion", "train", "sample", "model", "encoder", "eval"):
        for key, value in cfg.get(section, {}).items():
            if isinstance(value, (bool, int, float, str)) and not (isinstance(value, float) and math.isnan(value)):
                out[f"{section}.{key}"] = value
    return out


def versions() -> dict[str, str]:
    """The versions a run's summary records, so a report says what produced it."""
    import platform

    import torch

    import multidiff

    return {"multidiff": multidiff.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))

