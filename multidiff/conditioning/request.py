"""The conditions of samples, from ``--cond KEY=VALUE`` (repeatable) and ``--prompt TEXT``.

KEY is a condition's name. A categorical takes one of its values (or an index); a vector, a file (.npy,
or numbers separated by commas) or the numbers themselves ("0.1,0.5,..."); a text, its caption (as
``--prompt`` does for a run's one text condition); an empty VALUE (``KEY=``) withholds the condition.
Categoricals not given are balanced over their combinations (sample i takes the i-th in mixed radix);
other conditions not given are withheld.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from multidiff.engine.errors import UserError

from . import data, text


def parse_pairs(conds) -> dict[str, str]:
    """{KEY: VALUE} of ``--cond`` strings (one, or several)."""
    if isinstance(conds, str):
        conds = [conds]
    pairs = {}
    for item in conds or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UserError(f"--cond expects KEY=VALUE, got {item!r}")
        if key.strip() in pairs:
            raise UserError(f"--cond {key.strip()} is given twice")
        pairs[key.strip()] = value.strip()
    return pairs


def build(n: int, cfg: dict, conds=(), prompt: str | None = None) -> dict[str, torch.Tensor]:
    """The conditions of ``n`` samples of the run ``cfg`` (a dict of tensors, see multidiff.conditioning)."""
    specs, described = cfg["conditions"], cfg["dataset"]["conditions"]
    given = parse_pairs(conds)
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise UserError(f"this model has no condition {unknown[0]!r}; its conditions: {', '.join(specs)}")
    if prompt is not None:
        texts = [name for name, spec in specs.items() if spec["type"] == "text"]
        if len(texts) != 1:
            raise UserError(f"--prompt needs a model with one text condition, this one has {len(texts)}"
                            + (f"; use --cond {texts[0]}=TEXT" if texts else ""))
        if texts[0] in given:
            raise UserError(f"--prompt and --cond {texts[0]}= both give the caption; give one")
        given[texts[0]] = prompt
    out, dropped = {}, torch.zeros(n, len(specs), dtype=torch.bool)
    stride = 1
    for k, (name, spec) in enumerate(specs.items()):
        value = given.get(name)
        if value == "":
            dropped[:, k] = True
        if spec["type"] == "categorical":
            values = described[name]["values"]
            if value == "":
                out[name] = torch.zeros(n, dtype=torch.long)
            elif value is None:
                out[name] = torch.arange(n) // stride % len(values)
                stride *= len(values)
            else:
                out[name] = torch.full((n,), _value_index(name, value, values), dtype=torch.long)
        elif spec["type"] == "vector":
            vector = np.zeros(spec["dim"], dtype=np.float32) if not value else _vector(name, value, spec["dim"])
            out[name] = torch.tensor(vector).expand(n, -1).clone()
        else:
            ids = text.tokenizer(spec)([value or ""], f"--cond {name} / --prompt")
            out[name] = ids.expand(n, *ids.shape[1:]).clone()
        if value is None and spec["type"] != "categorical":
            dropped[:, k] = True
    out["dropped"] = dropped
    return out


def _value_index(name: str, value: str, values: list[str]) -> int:
    if value in values:
        return values.index(value)
    if value.isdigit() and int(value) < len(values):
        return int(value)
    shown = ", ".join(values[:30]) + (", ..." if len(values) > 30 else "")
    raise UserError(f"unknown value {value!r} for condition {name!r}; its values: {shown}")


def _vector(name: str, value: str, dim: int) -> np.ndarray:
    if Path(value).suffix in (".npy", ".txt", ".csv") or Path(value).is_file():
        return data.read_vector(Path(value), dim, name)
    try:
        numbers = np.array([float(v) for v in value.split(",")], dtype=np.float32)
    except ValueError:
        raise UserError(f"--cond {name}= takes a file or {dim} numbers separated by commas, got {value!r}") from None
    if numbers.size != dim or not np.isfinite(numbers).all():
        raise UserError(f"--cond {name}= has {numbers.size} numbers, the condition takes {dim} finite ones")
    return numbers
