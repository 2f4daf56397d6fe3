"""The ``[conditions.NAME]`` tables of a recipe: each condition's type, source and settings, checked.

    type = "categorical"   a value among those seen in training, from the item field ``field``
                           (a file-name pattern group, a CSV column, the folder or the class);
                           ``held_out``: combinations of field values never trained on, each a table
                           such as {digit = "7", speaker = "theo"} (items matching one are left out
                           of training; evaluation reports accuracies on them apart)
    type = "vector"        ``dim`` numbers: from the CSV columns ``columns``, or from a sidecar file
                           next to each data file (``source = "sidecar"``, the data file's name with
                           ``suffix``, a .npy holding ``dim`` numbers): an embedding from any encoder
    type = "text"          a caption: the item field ``field`` (a CSV column), or ``templates`` over the
                           other fields ("a {speaker} saying {digit}", item i taking template i mod K);
                           ``held_out`` templates are never trained on (for evaluation prompts).
                           ``synonyms``: words a template writes for a field's value, e.g.
                           {category = {chair = ["chair", "seat", "armchair"]}} (each item draws one,
                           fixed per item); ``held_out_synonyms`` (same shape) are never trained on.
                           ``made_up_words``: the share of training captions that carry one made-up word
                           (3 to 8 random letters, at a random place; fixed per item): the encoder learns
                           that a word it has never seen does not change what the caption names, which
                           unseen modifiers ("office desk" for a trained "desk") need.
                           Encoded by a transformer trained with the model (``layers``, ``heads``) over
                           bytes, or with ``tokens = "words"`` over words, each a bag of hashed byte n-grams
                           (``max_length`` bytes or words; 0: the longest caption of the training set,
                           rounded up to 8), or by a frozen pretrained encoder loaded with
                           ``transformers`` from the local folder ``pretrained`` (CLIP text or T5).
                           ``pool``: how its tokens become the one vector of the adaptive norms, "mean"
                           or "attention" (a learned score per token, softmax over the caption: it can
                           weigh the word that names the class above the template's and unknown words;
                           it starts as the mean).

Every condition has ``drop``, its own training dropout rate (classifier-free guidance), and ``field``,
default its own name. Unknown keys, or keys of another type, are errors naming the key.
"""
from __future__ import annotations

import copy
import math

from multidiff.engine.errors import UserError

COMMON = {"type": "", "field": "", "drop": 0.1}
TYPES = {
    "categorical": {"held_out": []},
    "vector": {"source": "columns", "columns": [], "suffix": ".npy", "dim": 0},
    "text": {"templates": [], "held_out": [], "max_length": 0, "layers": 2, "heads": 4, "pretrained": "",
             "synonyms": {}, "held_out_synonyms": {}, "made_up_words": 0.0, "pool": "mean", "tokens": "bytes"},
}
TEXT_POOLS = ("mean", "attention")
TEXT_TOKENS = ("bytes", "words")
VECTOR_SOURCES = ("columns", "sidecar")
RESERVED = ("dropped",)


def merge(base: dict, update: dict, origin: str) -> dict:
    """``base`` conditions with ``update``'s (a recipe's or a preset's) merged in, condition by condition."""
    if not isinstance(update, dict):
        raise UserError(f"{origin}: [conditions] must be a table of [conditions.NAME] tables")
    merged = copy.deepcopy(base)
    for name, table in update.items():
        if not isinstance(table, dict):
            raise UserError(f"{origin}: conditions.{name} must be a table (type = ..., ...)")
        merged[name] = {**merged.get(name, {}), **table}
    return merged


def resolve(conditions: dict) -> dict:
    """Every condition with its type's defaults filled in and checked; a UserError names a bad key."""
    return {name: _resolve_one(name, table) for name, table in conditions.items()}


def with_defaults(conditions: dict) -> dict:
    """Resolved conditions (a saved run's) with keys added to their type since filled in as defaults."""
    return {name: {**COMMON, **copy.deepcopy(TYPES.get(table.get("type"), {})), **table}
            for name, table in conditions.items()}


def _resolve_one(name: str, table: dict) -> dict:
    where = f"conditions.{name}"
    if name in RESERVED or not name.replace("_", "").isalnum():
        raise UserError(f"{where}: a condition name is letters, digits and '_' (and not {', '.join(RESERVED)})")
    kind = table.get("type", "")
    if kind not in TYPES:
        raise UserError(f"{where}.type must be one of {', '.join(TYPES)}, got {kind!r}")
    defaults = {**COMMON, **copy.deepcopy(TYPES[kind])}
    unknown = sorted(set(table) - set(defaults))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} for a {kind} condition; "
                        f"known: {', '.join(sorted(defaults))}")
    out = {**defaults, "field": name}
    for key, value in table.items():
        current = defaults[key]
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(current) and not (key == "field" and isinstance(value, str)):
            raise UserError(f"{where}.{key} must be of type {type(current).__name__}, got {value!r}")
        out[key] = value
    if not out["field"]:
        out["field"] = name
    if not (math.isfinite(out["drop"]) and 0.0 <= out["drop"] <= 1.0):
        raise UserError(f"{where}.drop must be in [0, 1], got {out['drop']}")
    if kind == "vector":
        if out["source"] not in VECTOR_SOURCES:
            raise UserError(f"{where}.source must be one of {', '.join(VECTOR_SOURCES)}, got {out['source']!r}")
        if out["dim"] < 1:
            raise UserError(f"{where}.dim must be at least 1 (the vector's size), got {out['dim']}")
        if out["source"] == "columns" and len(out["columns"]) != out["dim"]:
            raise UserError(f"{where}: {len(out['columns'])} columns given for a vector of dim {out['dim']}")
    if kind == "categorical" and not all(isinstance(c, dict) and c and all(isinstance(v, str) for v in c.values())
                                         for c in out["held_out"]):
        raise UserError(f"{where}.held_out must be a list of tables of field = \"value\" strings")
    if kind == "text":
        for key in ("layers", "heads"):
            if out[key] < 1:
                raise UserError(f"{where}.{key} must be at least 1, got {out[key]}")
        if out["max_length"] < 0:
            raise UserError(f"{where}.max_length must be at least 1 (or 0: the longest caption), got {out['max_length']}")
        if not 0.0 <= out["made_up_words"] <= 1.0:
            raise UserError(f"{where}.made_up_words is a share of the captions, in [0, 1]; got {out['made_up_words']}")
        if out["tokens"] not in TEXT_TOKENS:
            raise UserError(f"{where}.tokens must be one of {', '.join(TEXT_TOKENS)}, got {out['tokens']!r}")
        if out["tokens"] != "bytes" and out["pretrained"]:
            raise UserError(f"{where}: a pretrained encoder reads its own tokenizer's tokens; leave tokens = \"bytes\"")
        if out["pool"] not in TEXT_POOLS:
            raise UserError(f"{where}.pool must be one of {', '.join(TEXT_POOLS)}, got {out['pool']!r}")
        if out["made_up_words"] and not out["templates"]:
            raise UserError(f"{where}.made_up_words needs templates (it adds words to the captions they write)")
        if set(out["held_out"]) - set(out["templates"]):
            raise UserError(f"{where}.held_out names templates that are not in {where}.templates")
        if out["templates"] and len(out["held_out"]) == len(out["templates"]):
            raise UserError(f"{where}: every template is held out; keep at least one to train on")
        _check_synonyms(where, out)
    return out


def _check_synonyms(where: str, out: dict) -> None:
    """``synonyms`` a table of field -> value -> non-empty word list; ``held_out_synonyms`` picks words from
    it and leaves every value at least one to train on. (That each field and value occurs in the data is
    checked with the data, in conditioning.data.)"""
    synonyms, held = out["synonyms"], out["held_out_synonyms"]
    if (synonyms or held) and not out["templates"]:
        raise UserError(f"{where}.synonyms need templates (the words they write in for a field's value)")
    for key, table in (("synonyms", synonyms), ("held_out_synonyms", held)):
        for field, values in table.items():
            if not isinstance(values, dict) or not all(
                    isinstance(words, list) and all(isinstance(w, str) for w in words) for words in values.values()):
                raise UserError(f"{where}.{key}.{field} must be a table of value = [\"word\", ...] lists")
    for field, values in synonyms.items():
        for value, words in values.items():
            if not words:
                raise UserError(f"{where}.synonyms.{field}.{value} is an empty list; give at least one word")
    for field, values in held.items():
        for value, words in values.items():
            known = synonyms.get(field, {}).get(value, [])
            missing = [w for w in words if w not in known]
            if missing:
                raise UserError(f"{where}.held_out_synonyms.{field}.{value}: {missing[0]!r} is not in "
                                f"{where}.synonyms.{field}.{value}")
            if known and set(known) <= set(words):
                raise UserError(f"{where}.held_out_synonyms.{field}.{value} holds out every synonym; "
                                f"keep at least one to train on")


def held_out_combinations(cfg: dict) -> list[dict[str, str]]:
    """Every combination of field values the run's categoricals hold out of training."""
    return [c for spec in cfg["conditions"].values() if spec["type"] == "categorical" for c in spec["held_out"]]


def is_held_out(fields: dict[str, str], combinations: list[dict[str, str]]) -> bool:
    return any(all(fields.get(k) == v for k, v in c.items()) for c in combinations)
