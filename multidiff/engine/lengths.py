"""How long each sample is, for data whose examples have lengths of their own (padded audio clips).

Training learns one length per class from the data: the median real length (the padding mask's
extent along the last axis) of the class's training examples, recorded in ``cfg["dataset"]
["class_lengths"]`` so a checkpoint alone samples at them. Sampling draws each example at its
class's length, or at one asked for (``sample --seconds``), when the run's encoder decodes any
length (``Encoder.variable_length``); other runs keep their fixed shape.
"""
from __future__ import annotations

import torch

from multidiff.engine.errors import UserError


def class_lengths(dataset) -> list[int] | None:
    """Median real length per class (one entry, over all examples, for an unconditional set); None
    when the items carry no padding mask."""
    if len(dataset) == 0 or dataset[0].get("mask") is None:
        return None
    real, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        real.append(int(item["mask"].reshape(-1, item["mask"].shape[-1]).amax(0).sum()))
        labels.append(int(item["label"]))
    real, labels = torch.tensor(real), torch.tensor(labels)
    classes = len(dataset.class_names)
    if not classes:
        return [int(real.median())]
    # a class with no training example (impossible in practice) falls back to the overall median
    return [int(real[labels == c].median()) if bool((labels == c).any()) else int(real.median())
            for c in range(classes)]


def sample_lengths(run, labels: torch.Tensor | None, n: int, length: int | None = None) -> torch.Tensor | None:
    """The real length of each of ``n`` samples: ``length`` for all when given, else its class's
    (``class_lengths``); None for a run that draws fixed-shape examples."""
    if not run.encoder.variable_length:
        if length is not None:
            raise UserError(f"this run's encoder ({type(run.encoder).__name__}) decodes examples of one fixed "
                            f"length only; a length of one's own needs a waveform or latent-autoencoder run")
        return None
    if length is not None:
        if length < 1:
            raise UserError(f"the length to generate must be positive, got {length} samples")
        return torch.full((n,), int(length))
    per_class = run.cfg["dataset"].get("class_lengths")
    if not per_class:
        return None
    if len(per_class) == 1:
        return torch.full((n,), per_class[0])
    per_class = torch.tensor(per_class)
    # -1 (no class asked for), or no labels at all (e.g. a caption alone): the classes' median
    labels = torch.full((n,), -1) if labels is None else labels.cpu()
    return torch.where(labels < 0, int(per_class.median()), per_class[labels.clamp_min(0)])
