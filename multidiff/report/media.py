"""Reading sample files by their type (PNG, WAV, point clouds in NPY or PLY) and drawing spectrograms.

The report and the TensorBoard log show whatever a modality writes; they know file types, not modalities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Spectrogram: window length in seconds, overlap 3/4, and the dB range shown below the loudest bin.
SPECTROGRAM_WINDOW_S = 0.032
SPECTROGRAM_RANGE_DB = 80.0


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(samples as float32 in [-1, 1], first channel only; sample rate)."""
    import soundfile as sf

    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return wave[:, 0], int(rate)


def read_cloud(path: Path) -> np.ndarray | None:
    """The (N, 3) float32 points of a .npy or .ply file; None when the file holds anything else."""
    path = Path(path)
    if path.suffix == ".npy":
        points = np.load(path, allow_pickle=False)
    elif path.suffix == ".ply":
        import trimesh

        points = np.asarray(trimesh.load(path).vertices)
    else:
        return None
    if points.ndim != 2 or points.shape[1] != 3 or not len(points):
        return None
    return points.astype(np.float32)


def log_spectrogram(wave: np.ndarray, rate: int) -> np.ndarray:
    """(frequency bins, frames) magnitudes in dB of a Hann-windowed short-time Fourier transform."""
    n_fft = 1 << max(4, round(np.log2(SPECTROGRAM_WINDOW_S * rate)))
    hop = n_fft // 4
    padded = np.pad(wave.astype(np.float64), (n_fft // 2, n_fft // 2))
    frames = 1 + max(0, len(padded) - n_fft) // hop
    windows = np.stack([padded[i * hop:i * hop + n_fft] for i in range(frames)]) * np.hanning(n_fft)
    return 20 * np.log10(np.maximum(np.abs(np.fft.rfft(windows, axis=1)).T, 1e-5))


def write_spectrogram(wave: np.ndarray, rate: int, path: Path, height: int = 128) -> Path:
    """A PNG of the spectrogram (low frequencies at the bottom, magma colours, SPECTROGRAM_RANGE_DB shown)."""
    from matplotlib import colormaps

    spec = log_spectrogram(wave, rate)
    top = spec.max()
    level = np.clip((spec - (top - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB, 0, 1)[::-1]
    pixels = (colormaps["magma"](level)[..., :3] * 255).astype(np.uint8)
    image = Image.fromarray(pixels).resize((max(256, pixels.shape[1] * 2), height), Image.Resampling.BILINEAR)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
