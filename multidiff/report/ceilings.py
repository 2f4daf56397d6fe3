"""Pairing each evaluation metric with its ceilings: the same metric measured on real data.

Modalities name a ceiling by a prefix or suffix on the metric's name: ``ceiling_X``, ``real_X``,
``ref_X``, ``X_real``; ``decoded_X`` is real data sent through the recipe's encoder and back (the best a
model in that representation can reach). Markers combine (``ceiling_decoded_X``).
"""
from __future__ import annotations

PREFIXES = ("ceiling_", "real_", "ref_", "decoded_")
SUFFIXES = ("_real",)
REAL = "real data"
DECODED = "real data, encoded and decoded"


def _strip(name: str) -> tuple[str, list[str]]:
    markers = []
    while True:
        prefix = next((p for p in PREFIXES if name.startswith(p) and len(name) > len(p)), None)
        suffix = next((s for s in SUFFIXES if name.endswith(s) and len(name) > len(s)), None)
        if prefix:
            markers.append(prefix.strip("_"))
            name = name[len(prefix):]
        elif suffix:
            markers.append(suffix.strip("_"))
            name = name[:-len(suffix)]
        else:
            return name, markers


def split_ceilings(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(the model's metrics, {metric: {kind of ceiling: value}}); a ceiling whose metric the model
    lacks still gets its row, under the stripped name."""
    model, ceilings = {}, {}
    for key, value in metrics.items():
        base, markers = _strip(key)
        if not markers:
            model[key] = value
        else:
            ceilings.setdefault(base, {})[DECODED if "decoded" in markers else REAL] = value
    return model, ceilings
