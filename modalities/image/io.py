"""Writing images: [-1, 1] tensors to PNG files, one per sample, and grids of several."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: Grids of small images are enlarged (nearest neighbour, integer factor) to at least this width.
GRID_MIN_WIDTH = 256


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] (clipped) -> (N, H, W, C) uint8."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    pixels = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def _pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def grid(pixels: np.ndarray, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, C) uint8 images into a near-square grid with ``pad`` grey pixels between them."""
    n, h, w, c = pixels.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 128, dtype=np.uint8)
    for i, image in enumerate(pixels):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = image
    return out


def save_grid(x: torch.Tensor, path: Path) -> Path:
    """One PNG of all images in ``x``, enlarged so that small images stay visible."""
    tiled = grid(to_uint8(x))
    factor = math.ceil(GRID_MIN_WIDTH / tiled.shape[1])
    image = _pil(tiled)
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_samples(x: torch.Tensor, labels: torch.Tensor | None, class_names: list[str], out_dir: Path) -> list[Path]:
    """``out_dir/NNNN_<class>.png``, one per sample at native size (``save_grid`` draws the preview).

    Numbering continues after the highest ``NNNN_`` already in ``out_dir``, so nothing is overwritten.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(x)
    start = 1 + max((int(p.name[:4]) for p in out_dir.glob("[0-9][0-9][0-9][0-9]_*.png")), default=-1)
    paths = []
    for i, image in enumerate(pixels):
        c = -1 if labels is None else int(labels[i])
        path = out_dir / f"{start + i:04d}_{class_names[c] if 0 <= c < len(class_names) else 'sample'}.png"
        _pil(image).save(path)
        paths.append(path)
    return paths
