"""Writing point clouds (PLY through trimesh, NPY) and a PNG preview of several clouds."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import trimesh

from .normalize import Transform


def _as_array(points) -> np.ndarray:
    points = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected a cloud of shape (N, 3), got {points.shape}")
    return points


def write_ply(path: Path, points, transform: Transform | None = None) -> Path:
    """A binary PLY of the points (mapped back through ``transform`` when given)."""
    points = _as_array(points)
    if transform is not None:
        points = transform.invert(points)
    trimesh.PointCloud(points).export(path, file_type="ply")
    return Path(path)


def write_npy(path: Path, points, transform: Transform | None = None) -> Path:
    points = _as_array(points)
    if transform is not None:
        points = transform.invert(points)
    np.save(path, points)
    return Path(path)


def write_clouds(clouds, labels, out_dir: Path, class_names: list[str],
                 transforms: list[Transform] | None = None) -> list[Path]:
    """``sample_XXXX[_class].ply`` and ``.npy`` for each cloud of ``clouds`` (B, N, 3).

    Numbering continues after the samples already in ``out_dir``, so nothing is overwritten.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.match(r"sample_(\d+)", p.name))]
    first = max(taken) + 1 if taken else 0
    paths = []
    for i, cloud in enumerate(clouds):
        label = -1 if labels is None else int(labels[i])
        stem = f"sample_{first + i:04d}" + (f"_{class_names[label]}" if 0 <= label < len(class_names) else "")
        transform = transforms[i] if transforms is not None else None
        paths.append(write_ply(out_dir / f"{stem}.ply", cloud, transform))
        paths.append(write_npy(out_dir / f"{stem}.npy", cloud, transform))
    return paths


def preview(clouds, labels, path: Path, class_names: list[str], columns: int = 4, max_clouds: int = 16) -> Path:
    """One PNG of up to ``max_clouds`` clouds as 3-D scatter plots (z up, equal axes), titled by class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    clouds = [_as_array(c) for c in clouds[:max_clouds]]
    if not clouds:
        raise ValueError("nothing to preview: no clouds given")
    rows = -(-len(clouds) // columns)
    cols = min(columns, len(clouds))
    fig = Figure(figsize=(2.5 * cols, 2.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, cloud in enumerate(clouds):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        ax.scatter(cloud[:, 0], cloud[:, 1], cloud[:, 2], s=1.5, c=cloud[:, 2], cmap="viridis", depthshade=False)
        centre = (cloud.max(0) + cloud.min(0)) / 2
        half = float((cloud.max(0) - cloud.min(0)).max()) / 2 or 1.0
        ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half),
               zlim=(centre[2] - half, centre[2] + half))
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
        label = -1 if labels is None else int(labels[i])
        if 0 <= label < len(class_names):
            ax.set_title(class_names[label], fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
