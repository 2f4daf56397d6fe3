"""From a dataset's items to condition tensors, and the vocabulary a run records for sampling.

A dataset describes its items by *fields*, strings per item: ``dataset.fields`` (a list of dicts: the
groups of a file-name pattern, CSV columns, the folder), else the class name under the run's
``data.cond_key``. A dataset that reads one file per item lists them in ``dataset.files`` (sidecar
vectors sit next to them). ``describe`` records what sampling needs beyond the weights (each
categorical's values, in index order) in ``cfg["dataset"]["conditions"]``; ``ConditionedSet`` gives
every trained item (``trained_rows``: the held-out combinations left out) its ``"cond"`` dict.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from multidiff.engine.errors import UserError

from . import spec as specs
from . import text


def item_fields(dataset, cfg: dict) -> list[dict[str, str]]:
    """The fields of every item of ``dataset``."""
    fields = getattr(dataset, "fields", None)
    if fields is not None:
        return list(fields)
    names, key = list(dataset.class_names), cfg["data"]["cond_key"]
    labels = getattr(dataset, "labels", None)
    labels = [int(v) for v in (labels if labels is not None else (dataset[i]["label"] for i in range(len(dataset))))]
    return [{key: names[v]} if v >= 0 and names else {} for v in labels]


def _where(dataset, i: int) -> str:
    files = getattr(dataset, "files", None)
    return str(files[i]) if files else f"item {i} of the dataset"


def _field(fields: dict, key: str, condition: str, where: str) -> str:
    if key not in fields:
        raise UserError(f"{where}: no field {key!r} for condition {condition!r} (fields: {', '.join(sorted(fields))})")
    return fields[key]


def _sorted_values(values: set[str]) -> list[str]:
    """Numerically when every value is an integer ("2" before "10"), else alphabetically."""
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def describe(dataset, cfg: dict) -> dict:
    """{name: {"values": [...]}} for categoricals, {name: {}} otherwise, read from the training set. A text
    condition's ``max_length`` 0 is settled here, in ``cfg`` (which the run saves): see ``longest_caption``."""
    fields = item_fields(dataset, cfg)
    out = {}
    for name, spec in cfg["conditions"].items():
        if spec["type"] == "categorical":
            values = {_field(f, spec["field"], name, _where(dataset, i)) for i, f in enumerate(fields)}
            out[name] = {"values": _sorted_values(values)}
        else:
            out[name] = {}
        if spec["type"] == "text" and not spec["max_length"]:
            spec["max_length"] = settled_length(spec, fields, name, lambda i: _where(dataset, i))
    return out


def settled_length(spec: dict, fields: list[dict[str, str]], name: str, where) -> int:
    """``max_length`` 0 made the longest caption (``longest_caption``), in bytes rounded up to 8."""
    longest = longest_caption(spec, fields, name, where)
    return longest if spec["pretrained"] else -(-longest // 8) * 8


def longest_caption(spec: dict, fields: list[dict[str, str]], name: str, where) -> int:
    """The tokens (bytes) of the longest caption of the training items: their ``field``, or what any template
    (held-out ones too) writes for their fields with any of their synonyms (held-out ones too). The encoder
    then spends no position on padding every caption leaves; a longer ``--prompt`` is refused with the
    length it may take."""
    count = text.tokenizer({**spec, "max_length": 1}).count
    if not spec["templates"]:
        return max(count(_field(f, spec["field"], name, where(i))) for i, f in enumerate(fields))
    longest = 0
    for f in {tuple(sorted(f.items())) for f in fields}:
        f = dict(f)
        choices = [values.get(f[field], [f[field]]) if field in f else [None]
                   for field, values in spec["synonyms"].items()]
        for words in itertools.product(*choices):
            written = {**f, **{field: w for field, w in zip(spec["synonyms"], words) if w is not None}}
            longest = max(longest, *(count(fill(t, written, name, "the training set")) for t in spec["templates"]))
    return longest + (count(" " + "x" * MADE_UP_LETTERS[1]) if spec["made_up_words"] else 0)


def captions(spec: dict, fields: list[dict[str, str]], name: str, where) -> list[str]:
    """The caption of every item: its ``field``, or template i mod K of the trained ones over its fields,
    a field with ``synonyms`` written as the trained synonym item i draws (``synonym_draws``)."""
    if not spec["templates"]:
        return [_field(f, spec["field"], name, where(i)) for i, f in enumerate(fields)]
    check_synonyms(spec, fields, name)
    trained = [t for t in spec["templates"] if t not in spec["held_out"]]
    draws = synonym_draws(len(fields))
    written = [fill(trained[i % len(trained)], with_synonyms(spec, f, draws[i]), name, where(i))
               for i, f in enumerate(fields)]
    return with_made_up_words(written, spec["made_up_words"]) if spec["made_up_words"] else written


MADE_UP_LETTERS = (3, 8)   # the length of a made-up word, in letters


def with_made_up_words(captions: list[str], share: float) -> list[str]:
    """``captions`` with one made-up word (MADE_UP_LETTERS random lowercase letters) put between two words,
    or first or last, in the items a fixed draw picks (about ``share`` of them). Fixed per item, as the
    synonyms, so the caption table is the same in every epoch and after a resume."""
    rng = np.random.default_rng(1)
    low, high = MADE_UP_LETTERS
    out = []
    for caption in captions:
        pick, place = rng.random(), rng.random()
        word = "".join(chr(ord("a") + int(c)) for c in rng.integers(0, 26, int(rng.integers(low, high + 1))))
        if pick >= share:
            out.append(caption)
            continue
        words = caption.split(" ")
        at = int(place * (len(words) + 1))
        out.append(" ".join(words[:at] + [word] + words[at:]))
    return out


def synonym_draws(n: int) -> np.ndarray:
    """One fixed random integer per item: item i always writes the same synonym, so the caption table is
    the same in every epoch and after a resume, and the synonyms spread over the items of each value
    independently of the template they take (i mod K)."""
    return np.random.default_rng(0).integers(0, 2**31, n)


def synonym_words(spec: dict, field: str, value: str, held_out: bool = False) -> list[str]:
    """The words a caption may write for ``field`` = ``value``: its trained synonyms (the value itself when
    it has none), or with ``held_out`` its held-out ones (none: [])."""
    words = spec["synonyms"].get(field, {}).get(value)
    held = spec["held_out_synonyms"].get(field, {}).get(value, [])
    if held_out:
        return list(held)
    return [value] if words is None else [w for w in words if w not in held]


def with_synonyms(spec: dict, fields: dict[str, str], draw: int, held_out: bool = False) -> dict[str, str]:
    """``fields`` with each field that has synonyms written as the word ``draw`` picks among its trained
    ones (with ``held_out``: among its held-out ones, where the value has some)."""
    out = dict(fields)
    for field in spec["synonyms"]:
        if field in fields:
            words = synonym_words(spec, field, fields[field], True) if held_out else []
            words = words or synonym_words(spec, field, fields[field])
            out[field] = words[int(draw) % len(words)]
    return out


def check_synonyms(spec: dict, fields: list[dict[str, str]], name: str) -> None:
    """Every field and value a synonym table names occurs in the data (else a typo would go unnoticed)."""
    for key in ("synonyms", "held_out_synonyms"):
        for field, values in spec[key].items():
            seen = {f[field] for f in fields if field in f}
            if not seen:
                raise UserError(f"conditions.{name}.{key} names field {field!r}, which no item has "
                                f"(fields: {', '.join(sorted({k for f in fields for k in f}))})")
            unknown = sorted(set(values) - seen)
            if unknown:
                raise UserError(f"conditions.{name}.{key}.{field} names value {unknown[0]!r}, which no item has "
                                f"(values: {', '.join(_sorted_values(seen))})")


def fill(template: str, fields: dict[str, str], name: str, where: str) -> str:
    try:
        return template.format(**fields)
    except KeyError as e:
        raise UserError(f"{where}: template {template!r} of condition {name!r} names field {e.args[0]!r}, "
                        f"which the item lacks (fields: {', '.join(sorted(fields))})") from None


def vectors(spec: dict, dataset, fields: list[dict[str, str]], name: str) -> torch.Tensor:
    """(N, dim) float32 from CSV columns or sidecar files; a UserError names a missing or misshapen one."""
    rows = []
    for i, f in enumerate(fields):
        where = _where(dataset, i)
        if spec["source"] == "columns":
            try:
                rows.append([float(_field(f, c, name, where)) for c in spec["columns"]])
            except ValueError:
                raise UserError(f"{where}: condition {name!r} reads columns {spec['columns']}, "
                                f"which must hold numbers") from None
        else:
            files = getattr(dataset, "files", None)
            if not files:
                raise UserError(f"condition {name!r} reads sidecar files, but this dataset does not read one file "
                                f"per item; use source = \"columns\"")
            rows.append(read_vector(Path(files[i]).with_suffix(spec["suffix"]), spec["dim"], name))
    return torch.tensor(np.asarray(rows, dtype=np.float32).reshape(len(fields), spec["dim"]))


def read_vector(path: Path, dim: int, name: str) -> np.ndarray:
    """One sidecar vector of ``dim`` numbers (a .npy or a text file of numbers)."""
    if not path.is_file():
        raise UserError(f"sidecar file not found: {path} (condition {name!r})")
    try:
        value = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",")
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: cannot read the vector of condition {name!r}: {e}") from None
    value = np.asarray(value, dtype=np.float32).reshape(-1)
    if value.size != dim:
        raise UserError(f"{path}: the vector of condition {name!r} has {value.size} numbers, expected {dim}")
    if not np.isfinite(value).all():
        raise UserError(f"{path}: the vector of condition {name!r} holds a value that is not finite")
    return value


def tensors(dataset, cfg: dict) -> dict[str, torch.Tensor]:
    """Every condition of every item of ``dataset`` as one tensor per condition (batch first)."""
    fields = item_fields(dataset, cfg)
    described = cfg["dataset"]["conditions"]
    out = {}
    for name, spec in cfg["conditions"].items():
        if spec["type"] == "categorical":
            values = described[name]["values"]
            index = {v: k for k, v in enumerate(values)}
            out[name] = torch.tensor([index[_field(f, spec["field"], name, _where(dataset, i))]
                                      for i, f in enumerate(fields)], dtype=torch.long)
        elif spec["type"] == "vector":
            out[name] = vectors(spec, dataset, fields, name)
        else:
            out[name] = text.tokenizer(spec)(captions(spec, fields, name, lambda i: _where(dataset, i)),
                                             f"condition {name!r}")
    out["dropped"] = torch.zeros(len(fields), len(out), dtype=torch.bool)
    return out


def trained_rows(dataset, cfg: dict) -> torch.Tensor:
    """The indices of the items that are not in a held-out combination (``spec.held_out_combinations``)."""
    combinations = specs.held_out_combinations(cfg)
    kept = [i for i, f in enumerate(item_fields(dataset, cfg)) if not specs.is_held_out(f, combinations)]
    if not kept:
        raise UserError("every training item is in a held-out combination of the conditions")
    return torch.tensor(kept, dtype=torch.long)


class ConditionedSet(torch.utils.data.Dataset):
    """The items ``rows`` of a dataset, each also carrying ``"cond"``: {name: tensor, "dropped": BoolTensor (K,)}.

    Every other attribute (``class_names``, the encoder's ``points``...) is the wrapped dataset's.
    """

    def __init__(self, base, table: dict[str, torch.Tensor], rows: torch.Tensor):
        self.base, self.table, self.rows = base, table, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        return {**self.base[row], "cond": {k: v[row] for k, v in self.table.items()}}

    def __getitems__(self, indices: list[int]):
        if not hasattr(self.base, "__getitems__"):
            return [self[i] for i in indices]
        index = self.rows[torch.as_tensor(indices)]
        return {**self.base.__getitems__(index.tolist()), "cond": {k: v[index] for k, v in self.table.items()}}

    def __getattr__(self, name: str):
        if name in ("base", "table", "rows"):
            raise AttributeError(name)
        return getattr(self.base, name)
