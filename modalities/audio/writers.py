"""Generated clips out to disk: 16-bit PCM WAV files and a PNG sheet of their spectrograms."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_NUMBERED = re.compile(r"^(\d+)_")


def _label_text(labels: torch.Tensor | None, i: int, class_names: list[str]) -> str:
    if labels is None or labels[i] < 0 or not class_names:
        return "any"
    return class_names[int(labels[i])]


def _first_free_index(out_dir: Path) -> int:
    """Numbering continues after the files already in ``out_dir``, so nothing is overwritten."""
    taken = [int(m.group(1)) for p in out_dir.glob("*.wav") if (m := _NUMBERED.match(p.name))]
    return max(taken, default=-1) + 1


def write_wavs(x: torch.Tensor, labels: torch.Tensor | None, out_dir: Path, sample_rate: int,
               class_names: list[str]) -> list[Path]:
    """One ``NNNN_<class>.wav`` per clip of ``x`` (B, 1, T) or (B, T), clipped to [-1, 1]."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    waves = x.detach().float().cpu().reshape(len(x), -1).clamp(-1, 1).numpy()
    start = _first_free_index(out_dir)
    paths = []
    for i, wave in enumerate(waves):
        path = out_dir / f"{start + i:04d}_{_label_text(labels, i, class_names)}.wav"
        sf.write(str(path), wave, sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def _log_spectrogram(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))
    spec = torch.stft(torch.from_numpy(wave), n_fft, n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True).abs()
    return (20 * torch.log10(spec.clamp_min(1e-5))).numpy()


def preview_png(x: torch.Tensor, labels: torch.Tensor | None, path: Path, sample_rate: int,
                class_names: list[str]) -> Path:
    """A grid of spectrograms (dB, 80 dB range) of the clips, titled with the class each was asked for."""
    waves = x.detach().float().cpu().reshape(len(x), -1).numpy()
    cols = min(4, len(waves))
    rows = math.ceil(len(waves) / cols)
    fig = Figure(figsize=(3 * cols, 2.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    duration = waves.shape[1] / sample_rate
    for i, wave in enumerate(waves):
        ax = fig.add_subplot(rows, cols, i + 1)
        spec = _log_spectrogram(wave, sample_rate)
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80, vmax=spec.max(),
                  extent=(0, duration, 0, sample_rate / 2000))
        ax.set_title(_label_text(labels, i, class_names), fontsize=9)
        ax.set_xlabel("s", fontsize=7)
        ax.set_ylabel("kHz", fontsize=7)
        ax.tick_params(labelsize=6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
