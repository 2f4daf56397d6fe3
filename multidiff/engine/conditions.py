"""The class each sample is drawn for, read from ``--cond KEY=VALUE`` (or a bare class name or
index, from Python) against a run's config: the one place that resolves a condition.

KEY is the run's ``data.cond_key`` (the recipe's, else its modality's default), so the tones
model takes ``--cond tone=rising_chirp`` and the spoken digits ``--cond digit=7``.
"""
from __future__ import annotations

import torch

from multidiff.engine.errors import UserError


def class_index(cfg: dict, cond) -> int:
    """The index of the class ``cond`` names: "KEY=VALUE" with the run's condition key, or a
    class name or index alone."""
    names, key = cfg["dataset"]["class_names"], cfg["data"]["cond_key"]
    if not names:
        raise UserError("this model was trained without classes; drop the condition")
    text = str(cond).strip()
    given, sep, value = text.partition("=")
    if sep:
        if given.strip() != key:
            raise UserError(f"--cond expects {key}=VALUE for this model, got {text!r}")
        text = value.strip()
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
        return int(text)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    raise UserError(f"unknown class {text!r}; classes: {shown} (or an index 0..{len(names) - 1})")


def class_labels(n: int, cfg: dict, cond=None) -> torch.Tensor | None:
    """Labels for ``n`` samples: all the class ``cond`` names (see ``class_index``), else balanced
    over the classes (i mod C); None for a model trained without classes."""
    if cond is not None:
        return torch.full((n,), class_index(cfg, cond), dtype=torch.long)
    names = cfg["dataset"]["class_names"]
    return torch.arange(n) % len(names) if names else None
