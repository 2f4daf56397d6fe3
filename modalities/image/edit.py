"""Reading images and masks for editing (``multidiff edit``): a file to a [-1, 1] tensor, a spec to a mask.

Mask specs name the region to REGENERATE: ``left-half``, ``right-half``, ``top-half``, ``bottom-half``,
``box=x0,y0,x1,y1`` (pixels, x0/y0 inclusive, x1/y1 exclusive), or a PNG of the image's size whose white
(>= 128) pixels are regenerated (diffusers' convention). ``keep=<spec>`` keeps that region instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

HALVES = ("left-half", "right-half", "top-half", "bottom-half")


def read_image(path: Path, cfg: dict) -> torch.Tensor:
    """(C, H, W) in [-1, 1]; the file must have the model's size (no silent resizing)."""
    data = cfg["data"]
    size = int(data["resolution"])
    pixels = _open(path).convert("L" if data["channels"] == 1 else "RGB")
    if pixels.size != (size, size):
        width, height = pixels.size
        raise ValueError(f"{path}: the image is {width}x{height} pixels, the model's are {size}x{size}")
    array = np.asarray(pixels, dtype=np.float32)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array / 127.5 - 1.0)


def image_mask(spec: str, x: torch.Tensor) -> torch.Tensor:
    """(1, H, W) float mask, 1 = keep, for the image ``x`` (C, H, W)."""
    keep = spec.startswith("keep=")
    region = _region(spec.removeprefix("keep="), x.shape[-2], x.shape[-1])
    return (region if keep else ~region).float()[None]


def _region(spec: str, height: int, width: int) -> torch.Tensor:
    """(H, W) bool: True inside the region the spec names."""
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
    if spec in HALVES:
        side = {"left-half": cols < width // 2, "right-half": cols >= width // 2,
                "top-half": rows < height // 2, "bottom-half": rows >= height // 2}[spec]
        return side.expand(height, width)
    if spec.startswith("box="):
        try:
            x0, y0, x1, y1 = (int(v) for v in spec.removeprefix("box=").split(","))
        except ValueError:
            raise ValueError(f"mask {spec!r}: expected box=x0,y0,x1,y1 (four integers, pixels)") from None
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"mask {spec!r}: the box must lie within the {width}x{height} image with x0 < x1, y0 < y1")
        return (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)
    path = Path(spec)
    if path.suffix.lower() != ".png":
        raise ValueError(f"unknown image mask {spec!r}; use {', '.join(HALVES)}, box=x0,y0,x1,y1 or a PNG file")
    mask = _open(path).convert("L")
    if mask.size != (width, height):
        raise ValueError(f"{path}: the mask is {mask.size[0]}x{mask.size[1]} pixels, the image {width}x{height}")
    return torch.from_numpy(np.asarray(mask) >= 128)


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
