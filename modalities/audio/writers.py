"""Generated clips out to disk: 16-bit PCM WAV files and a PNG sheet of their spectrograms.

Nothing is clipped silently. Each clip is first brought to the data's loudness (the recipe's
``[data] loudness`` and ``target_db``, as the training clips were), since a model's level drifts
(the tones quickstart's clips hit 0 dBFS while its data sits at -20 dBFS); a clip whose peak still
passes full scale is scaled down to a peak of ``PEAK_DBFS``, and each such scaling is logged, in
``log.txt`` beside the files and on stderr.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import sys

import numpy as np
import soundfile as sf
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .preprocess import normalise_loudness

_NUMBERED = re.compile(r"^(\d+)_")
PEAK_DBFS = -1.0
LOG_NAME = "log.txt"


def _label_text(labels: torch.Tensor | None, i: int, class_names: list[str]) -> str:
    if labels is None or labels[i] < 0 or not class_names:
        return "any"
    return class_names[int(labels[i])]


def _first_free_index(out_dir: Path) -> int:
    """Numbering continues after the files already in ``out_dir``, so nothing is overwritten."""
    taken = [int(m.group(1)) for p in out_dir.glob("*.wav") if (m := _NUMBERED.match(p.name))]
    return max(taken, default=-1) + 1


def write_wavs(x: torch.Tensor, labels: torch.Tensor | None, out_dir: Path, sample_rate: int,
               class_names: list[str], lengths: torch.Tensor | None = None, loudness: str = "none",
               target_db: float = -20.0) -> list[Path]:
    """One ``NNNN_<class>.wav`` per clip of ``x`` (B, 1, T) or (B, T), cut to its entry of ``lengths``
    when given, at ``loudness`` / ``target_db`` (see preprocess.normalise_loudness) and peak-limited
    (see the module docstring)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    waves = x.detach().float().cpu().reshape(len(x), -1)
    start = _first_free_index(out_dir)
    paths, notes = [], []
    for i, wave in enumerate(waves):
        if lengths is not None:
            wave = wave[:int(lengths[i])]
        wave = normalise_loudness(wave, len(wave), loudness, target_db)
        path = out_dir / f"{start + i:04d}_{_label_text(labels, i, class_names)}.wav"
        wave, note = peak_limited(wave)
        if note:
            notes.append(f"{path.name}: {note}")
        sf.write(str(path), wave.numpy(), sample_rate, subtype="PCM_16")
        paths.append(path)
    if notes:
        with open(out_dir / LOG_NAME, "a") as log:
            log.writelines(line + "\n" for line in notes)
        print(f"{len(notes)} of {len(waves)} clips peaked above full scale and were scaled down to "
              f"{PEAK_DBFS:g} dBFS (see {out_dir / LOG_NAME})", file=sys.stderr)
    return paths


def peak_limited(wave: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``wave`` scaled so its peak sits at ``PEAK_DBFS`` if it passed full scale, with a note saying so
    (else unchanged, with an empty note)."""
    peak = float(wave.abs().max()) if len(wave) else 0.0
    if peak <= 1.0:
        return wave, ""
    gain = 10 ** (PEAK_DBFS / 20) / peak
    return wave * gain, f"peak {20 * math.log10(peak):+.1f} dBFS, scaled by {20 * math.log10(gain):.1f} dB"


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
