"""Evaluating a model with named conditions: the modality's metrics, then how well each condition is obeyed.

    NAME_accuracy            categorical NAME: how often the modality's judge (``Modality.classify``)
                             hears the value each sample was asked for (samples balanced over the
                             combinations of the categoricals)
    NAME_accuracy_held_out   the same over the samples asked for a held-out combination only
    NAME_ceiling_accuracy    the judge's accuracy on the real test split (the best samples can score)
    NAME_trained_templates_KEY_accuracy, NAME_held_out_templates_KEY_accuracy
                             text NAME with templates: the modality's class accuracy (its ``data.cond_key``
                             class) of samples prompted with the trained, then the held-out templates
                             filled in with the fields of the test split's items (a field with
                             synonyms written as a trained synonym); a modality without a class judge
                             (points) reports NAME_..._1nna_cd instead: 1-NNA-CD against test items of
                             the prompted classes
    NAME_held_out_synonyms_KEY_accuracy
                             text NAME with held_out_synonyms: the same with the trained templates,
                             written with held-out synonyms (test items whose value has some); compare
                             it with NAME_trained_templates_KEY_accuracy
"""
from __future__ import annotations

import torch

from multidiff.engine.errors import UserError

from . import data, spec, text
from .request import build


def score(run, n: int, draw, cache_dir) -> dict[str, float]:
    """``draw(cond) -> decoded samples``; ``run``: a multidiff.engine.generate.Run with named conditions."""
    from multidiff.engine.conditions import display_labels

    cfg, modality = run.cfg, run.modality
    cond = build(n, cfg)
    x = draw(cond)
    metrics = dict(modality.evaluate(x, display_labels(cond, cfg), cfg, cache_dir))
    held_out = _held_out_samples(cond, cfg)
    for k, (name, condition) in enumerate(cfg["conditions"].items()):
        if condition["type"] == "categorical":
            values = cfg["dataset"]["conditions"][name]["values"]
            heard = modality.classify(x, condition["field"], values, cfg, cache_dir)
            if heard is not None:
                asked = ~cond["dropped"][:, k]
                right = (heard.cpu() == cond[name]) & asked
                metrics[f"{name}_accuracy"] = float(right.sum() / asked.sum())
                if (held_out & asked).any():
                    metrics[f"{name}_accuracy_held_out"] = float(right[held_out].sum() / (held_out & asked).sum())
                metrics[f"{name}_ceiling_accuracy"] = _ceiling(modality, cfg, condition["field"], values, cache_dir)
        elif condition["type"] == "text" and condition["templates"]:
            trained = [t for t in condition["templates"] if t not in condition["held_out"]]
            groups = [("trained_templates", trained, False), ("held_out_templates", condition["held_out"], False)]
            if condition["held_out_synonyms"]:
                groups.append(("held_out_synonyms", trained, True))
            for group, templates, held_out_words in groups:
                if templates:
                    prompted, labels = _template_prompts(n, cfg, name, templates, modality, held_out_words)
                    scores = modality.evaluate(draw(prompted), labels, cfg, cache_dir)
                    metrics.update(_obeyed(scores, f"{name}_{group}", cfg["data"]["cond_key"]))
    return {k: float(v) for k, v in metrics.items()}


def _obeyed(scores: dict, prefix: str, key: str) -> dict[str, float]:
    """How well prompted samples show their class: the judge's accuracy, else 1-NNA-CD within the classes."""
    if "classifier_accuracy" in scores:
        return {f"{prefix}_{key}_accuracy": scores["classifier_accuracy"]}
    if "1nna_cd" in scores:
        return {f"{prefix}_1nna_cd": scores["1nna_cd"]}
    return {}


def _held_out_samples(cond: dict, cfg: dict) -> torch.Tensor:
    """Which samples were asked for a held-out combination of categorical values."""
    combinations = spec.held_out_combinations(cfg)
    out = torch.zeros(len(cond["dropped"]), dtype=torch.bool)
    if not combinations:
        return out
    categoricals = [(name, s["field"]) for name, s in cfg["conditions"].items() if s["type"] == "categorical"]
    for i in range(len(out)):
        fields = {field: cfg["dataset"]["conditions"][name]["values"][int(cond[name][i])]
                  for name, field in categoricals}
        out[i] = spec.is_held_out(fields, combinations)
    return out


def _template_prompts(n: int, cfg: dict, name: str, templates: list[str], modality, held_out_words: bool = False):
    """Conditions of ``n`` samples whose text ``name`` is template i mod K filled with the fields of test item
    i N / n (the other conditions withheld), each field with synonyms written as a trained one (with
    ``held_out_words``: a held-out one, among the test items whose value has some), and those items'
    class labels."""
    condition = cfg["conditions"][name]
    test = modality.dataset(cfg, "test")
    fields = data.item_fields(test, cfg)
    pool = [j for j, f in enumerate(fields) if not held_out_words or any(
        data.synonym_words(condition, field, f[field], True) for field in condition["synonyms"] if field in f)]
    if not pool:
        raise UserError(f"condition {name!r}: no test item has a value with held-out synonyms to prompt")
    items = [pool[i * len(pool) // n % len(pool)] for i in range(n)]   # spread over the (class-sorted) split
    draws = data.synonym_draws(n)
    written = [data.with_synonyms(condition, fields[j], draws[i], held_out_words) for i, j in enumerate(items)]
    captions = [data.fill(templates[i % len(templates)], f, name, f"test item {j}")
                for i, (j, f) in enumerate(zip(items, written))]
    labels = torch.as_tensor([int(test[j]["label"]) for j in items])
    return captioned(cfg, name, captions), labels


def captioned(cfg: dict, name: str, captions: list[str]) -> dict[str, torch.Tensor]:
    """Conditions of ``len(captions)`` samples, sample i asked for the text ``name`` = captions[i] (the run's
    other conditions withheld)."""
    cond = build(len(captions), cfg, [f"{other}=" for other in cfg["conditions"] if other != name])
    cond[name] = text.tokenizer(cfg["conditions"][name])(captions, f"condition {name!r}")
    cond["dropped"][:, list(cfg["conditions"]).index(name)] = False
    return cond


def _ceiling(modality, cfg: dict, field: str, values: list[str], cache_dir) -> float:
    """How often the judge of ``field`` hears the right value in the real test items (whose value it knows)."""
    test = modality.dataset(cfg, "test")
    known = [(i, values.index(f[field])) for i, f in enumerate(data.item_fields(test, cfg)) if f.get(field) in values]
    real = torch.stack([test[i]["x"] for i, _ in known])
    heard = modality.classify(real, field, values, cfg, cache_dir)
    return float((heard.cpu() == torch.tensor([v for _, v in known])).float().mean())
