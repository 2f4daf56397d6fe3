"""The class each sample is drawn for, read from ``--cond KEY=VALUE`` (or a bare class name or
index, from Python) against a run's config: the one place that resolves a condition.

KEY is the run's ``data.cond_key`` (the recipe's, else its modality's default), so the tones
model takes ``--cond tone=rising_chirp`` and the spoken digits ``--cond digit=7``. A run with named
conditions (``[conditions.NAME]``) takes them all, repeated, and ``prompt``: see
multidiff.conditioning.request.
"""
from __future__ import annotations

import torch

from multidiff import conditioning
from multidiff.conditioning import request
from multidiff.engine.config import check_guidance
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


def class_labels(n: int, cfg: dict, cond=None, prompt: str | None = None):
    """Labels for ``n`` samples: all the class ``cond`` names (see ``class_index``), else balanced
    over the classes (i mod C); None for a model trained without classes. For a run with named
    conditions, their dict (``cond``: one KEY=VALUE or several)."""
    if conditioning.declared(cfg):
        return request.build(n, cfg, () if cond is None else cond, prompt)
    if prompt is not None:
        raise UserError("this model was trained without a text condition; drop --prompt")
    if not isinstance(cond, (str, int, type(None))):
        if len(cond) > 1:
            raise UserError("this model takes one --cond (its class); several were given")
        cond = cond[0] if cond else None
    if cond is not None:
        return torch.full((n,), class_index(cfg, cond), dtype=torch.long)
    names = cfg["dataset"]["class_names"]
    return torch.arange(n) % len(names) if names else None


def display_labels(cond, cfg: dict) -> torch.Tensor | None:
    """The class labels a modality names, previews and scores samples by: ``cond`` itself, or for named
    conditions the categorical named like the run's ``data.cond_key`` when it has the dataset's classes
    (-1 where withheld); else None."""
    if not isinstance(cond, dict):
        return cond
    key = cfg["data"]["cond_key"]
    spec = cfg["conditions"].get(key)
    if spec is None or spec["type"] != "categorical":
        return None
    if cfg["dataset"]["conditions"][key]["values"] != list(cfg["dataset"]["class_names"]):
        return None
    column = list(cfg["conditions"]).index(key)
    return torch.where(cond["dropped"][:, column], -1, cond[key])


def guidance_scales(given, cfg: dict):
    """The guidance of a sampling call: None (the recipe's), a scale, or {condition: scale} in the run's
    order. ``given``: a number, or ``--guidance`` strings: "2" (every condition: one joint scale) and
    "NAME=1.5" (that condition: compositional guidance, the others at the joint scale, else the recipe's)."""
    if given is None or isinstance(given, (int, float)):
        if given is not None:
            check_guidance(float(given), "guidance")
        return None if given is None else float(given)
    joint, per = None, {}
    for item in ([given] if isinstance(given, str) else given):
        name, sep, text = str(item).rpartition("=")
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"--guidance takes a scale or NAME=SCALE, got {item!r}") from None
        check_guidance(value, f"guidance {name.strip()}" if sep else "guidance")
        if not sep:
            joint = value
        elif not conditioning.declared(cfg) or name.strip() not in cfg["conditions"]:
            known = ", ".join(cfg.get("conditions", {})) or "none: this model takes one scale"
            raise UserError(f"--guidance {item}: no condition {name.strip()!r}; conditions: {known}")
        else:
            per[name.strip()] = value
    if not per:
        return joint
    default = cfg["sample"]["guidance"] if joint is None else joint
    return {name: per.get(name, default) for name in cfg["conditions"]}
