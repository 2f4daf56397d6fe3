"""The contract between the core and a data type, and the registry of data types.

A modality turns files into tensors and back; the core never learns what the tensors mean.
Modalities register by name: the built-in ones and any third-party package that declares an
entry point in the group ``multidiff.modalities`` (``name = "package.module:ClassName"``).

Dataset items are dicts:
    "x":     float32 tensor, one example in the data space (e.g. (C, T), (C, H, W), (N, 3));
    "label": int64 scalar tensor, the class index, or -1 for "no class";
    "mask":  optional float32 tensor broadcastable to "x" (1 = real data, 0 = padding).
A dataset also has ``class_names``: a list of strings ([] for an unconditional dataset).

``cfg`` everywhere is the whole resolved recipe (a nested dict); a modality reads its own
sections (``cfg["data"]``, ``cfg["encoder"]``, ``cfg["model"]``, ``cfg["eval"]``). It declares
every key of them, with its default, in ``Modality.sections``; the engine merges those defaults in
before the recipe, so a recipe, a preset or ``--set`` may set any declared key and no other, and a
resolved config always holds them all.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn


class Encoder(nn.Module):
    """Maps data-space batches to the space the diffusion model works in, and back.

    Its statistics are buffers, so they move with ``.to(device)`` and are saved in checkpoints.
    The default is the identity.
    """

    #: Whether ``decode`` takes encoded examples of any length along the last axis (a waveform, a
    #: convolutional autoencoder's latents), so samples can be drawn at lengths of their own.
    variable_length: bool = False

    def fit(self, dataset) -> None:
        """Estimate statistics (e.g. mean/std of log-mel bins) from the training set."""

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """Return ``(z, mask_z)``: the encoded batch and its mask in the encoded space (or None)."""
        return x, mask

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def describe(self) -> dict:
        """Entries for the run's ``cfg["dataset"]`` that rebuilding this encoder from a checkpoint needs
        beyond the recipe (a trained autoencoder's architecture; see multidiff.latent)."""
        return {}


class Modality:
    """A data type. Subclasses override what they need; ``name`` is the registry key."""

    name: str = ""
    #: The default of ``[data] cond_key``: the key users write in ``--cond KEY=VALUE`` (e.g. "digit",
    #: "class", "category"). A recipe names its own (the tones recipe: "tone").
    cond_key: str = "class"
    #: The axis of an example's shape that holds its channels or features (points: the coordinates).
    feature_axis: int = 0
    #: Section name ("data", "encoder", "model", "eval") -> {key: default}: every key the modality
    #: reads, with a default of the type it expects. A section left out holds whatever the recipe
    #: writes, unchecked (for modalities written before sections were declared).
    sections: dict[str, dict[str, Any]] = {}
    #: The ``[model]`` section of a ``kind = "autoencoder"`` recipe: the keys ``autoencoder`` reads.
    autoencoder_model: dict[str, Any] = {}
    #: The values of an autoencoder recipe's ``[autoencoder] reconstruction`` (``reconstruction_error``'s kinds).
    reconstructions: tuple[str, ...] = ("l1", "l2")
    #: "section.key" -> the values that key may take (checked with the rest of the recipe, before training).
    choices: dict[str, tuple[str, ...]] = {}

    def reads_files(self, cfg: dict) -> bool:
        """Whether the recipe ``cfg`` reads its data from ``data.path`` (so ``--data DIR`` applies),
        rather than generating it."""
        return "path" in cfg["data"]

    def dataset(self, cfg: dict, split: str):
        """A map-style dataset for ``split`` ("train" or "test"); see the module docstring."""
        raise NotImplementedError

    def encoder(self, cfg: dict) -> Encoder:
        return Encoder()

    def autoencoder(self, cfg: dict, shape: tuple[int, ...]) -> nn.Module:
        """The network of an autoencoder recipe (``kind = "autoencoder"``) for encoded examples of shape
        ``shape``: ``encode(x) -> (mean, logvar)``, ``decode(z)``, ``latent_shape(shape)`` and
        ``forward(x, noise) -> (reconstruction, mean, logvar)``, e.g. multidiff.nn.autoencoder."""
        raise ValueError(f"the {self.name} modality has no autoencoder")

    def reconstruction_error(self, x_hat: torch.Tensor, x: torch.Tensor, kind: str,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
        """The per-example reconstruction loss (B,) of an autoencoder recipe, ``kind`` one of
        ``reconstructions``: by default the mean absolute or squared error per entry."""
        from multidiff.nn.autoencoder import reconstruction_error

        return reconstruction_error(x_hat, x, kind, mask)

    def backbone(self, cfg: dict, shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """The network: ``forward(x_t, t, cond)`` with x_t of shape (B, *shape), t of shape (B,)
        in [0, 1], cond a LongTensor (B,) of class indices where -1 means "no class" (or None)."""
        raise NotImplementedError

    def write(self, x: torch.Tensor, labels: torch.Tensor | None, out_dir: Path, cfg: dict) -> list[Path]:
        """Write decoded samples (data space) as files (.wav / .png / .ply); return their paths. A modality
        whose encoder has ``variable_length`` also takes ``lengths``: each sample's real length."""
        raise NotImplementedError

    def preview(self, x: torch.Tensor, labels: torch.Tensor | None, path: Path, cfg: dict) -> Path:
        """Write one PNG picture of several decoded samples."""
        raise NotImplementedError

    def length_of(self, cfg: dict, seconds: float) -> int:
        """The length along the last axis of the data of an example ``seconds`` long (``sample --seconds``)."""
        raise ValueError(f"the {self.name} modality has no duration (--seconds)")

    def read_for_edit(self, path: Path, cfg: dict) -> torch.Tensor:
        """One example read from ``path`` into the data space (``multidiff edit --input``)."""
        raise ValueError(f"the {self.name} modality cannot read files for editing")

    def edit_mask(self, spec: str, x: torch.Tensor, cfg: dict) -> torch.Tensor:
        """The mask of a spec or mask file for example ``x``: 1 where x is kept, broadcastable to x."""
        raise ValueError(f"the {self.name} modality has no edit masks")

    def classify(self, x: torch.Tensor, field: str, values: list[str], cfg: dict, cache_dir: Path):
        """For named conditions: the index in ``values`` of the value of item field ``field`` (e.g. the
        speaker) that a judge trained on the real training data hears in each decoded sample, a LongTensor
        (B,); None when the modality has no judge for that field."""
        return None

    def evaluate(self, x: torch.Tensor, labels: torch.Tensor | None, cfg: dict, cache_dir: Path) -> dict[str, float]:
        """The field's metrics for decoded samples against the held-out split. ``cache_dir`` is
        where the modality may keep what it trains or computes once (e.g. a feature classifier)."""
        raise NotImplementedError


_BUILTIN = {
    "audio": "modalities.audio:AudioModality",
    "image": "modalities.image:ImageModality",
    "points": "modalities.points:PointsModality",
    "toy2d": "modalities.toy2d:Toy2DModality",
}
_registered: dict[str, Any] = {}


def register(name: str, cls) -> None:
    """Register a modality class under ``name`` (for code that does not use entry points)."""
    _registered[name] = cls


def _load(target: str):
    module, _, attr = target.partition(":")
    mod = __import__(module, fromlist=[attr])
    return getattr(mod, attr)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="multidiff.modalities")}


def names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registered) | set(_entry_points()))


def get(name: str) -> Modality:
    """An instance of the modality registered as ``name``."""
    if name in _registered:
        return _registered[name]()
    eps = _entry_points()
    if name in eps:
        return eps[name].load()()
    if name in _BUILTIN:
        return _load(_BUILTIN[name])()
    raise KeyError(f"unknown modality {name!r}; known: {', '.join(names())}")
