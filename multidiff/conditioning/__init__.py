"""Conditioning beyond one class label: named conditions of three types declared in a recipe.

``[conditions.NAME]`` tables (see ``spec``) say what each condition is and where its value comes from;
``data`` turns a dataset's per-item fields into tensors, ``encoders`` turns those into the vectors and
tokens a backbone reads (the pooled vector joins the time embedding, the tokens feed cross-attention),
``request`` builds the conditions of samples from ``--cond`` and ``--prompt``. A batch's conditions are
a dict ``{NAME: tensor, ..., "dropped": BoolTensor (B, K)}`` (``batch``), one column of ``dropped`` per
condition in recipe order: True where that condition is withheld (training dropout, the unconditional
branches of guidance, a condition the user did not give).

A recipe without ``[conditions]`` keeps the single class label of ``multidiff.guidance`` untouched.
"""
from __future__ import annotations


def declared(cfg: dict) -> bool:
    """Whether the run ``cfg`` has named conditions (rather than the single class label, or none)."""
    return bool(cfg.get("conditions"))
