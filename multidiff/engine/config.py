"""Recipes: TOML files resolved into one nested dict, the config of a run.

Resolution order: the engine's defaults, the recipe, the chosen preset (``[presets.NAME]``), then
``--set section.key=value`` overrides. The engine owns ``[diffusion]``, ``[train]`` and ``[sample]``
and knows every key in them; ``[data]``, ``[encoder]``, ``[model]`` and ``[eval]`` belong to the
modality and hold whatever keys the recipe writes. A preset or an override may only change a key
that already exists, and only to a value of the same type (an integer may stand for a float), so
a typo is an error that names the key rather than a setting silently ignored.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from multidiff.engine.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"

ENGINE_DEFAULTS = {
    "name": "",
    "modality": "",
    "description": "",
    "preset": "",
    "data": {},
    "encoder": {},
    "model": {},
    "diffusion": {
        "schedule": "cosine",
        "schedule_args": {},        # keyword arguments of multidiff.schedules.get
        "prediction": "eps",        # eps | x0 | v | edm
        "weighting": "uniform",     # uniform | min_snr | edm
        "min_snr_gamma": 5.0,
        "sigma_data": 0.5,
        "p_mean": -1.2,
        "p_std": 1.2,
        "cond_drop": 0.0,           # fraction of labels replaced by -1 (classifier-free guidance)
        "t_min": 1e-3,              # smallest training time; sampling never asks the network below it
    },
    "train": {
        "batch_size": 64,           # global: examples per optimizer step over all processes
        "steps": 1000,
        "lr": 2e-4,
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "lr_schedule": "cosine",    # cosine | constant
        "grad_clip": 1.0,           # max gradient norm; 0 = off
        "grad_accum": 1,            # micro-batches per step (shared among processes)
        "ema_decay": 0.999,         # 0 = no EMA
        "ema_warmup": 0,            # steps during which the EMA copies the weights
        "precision": "fp32",        # fp32 | bf16 | fp16
        "compile": False,
        "num_workers": 0,
        "seed": 0,
        "log_every": 50,
        "ckpt_every": 1000,
        "sample_every": 0,          # preview period in steps; 0 = only at the end
    },
    "sample": {
        "sampler": "dpmpp_2m",
        "steps": 25,
        "guidance": 1.0,
        "placement": "",            # a multidiff.steps name or "pilot"; "" = the sampler's own
        "eta": -1.0,                # ddim, euler_ancestral, dpmpp_2m_sde noise; < 0 = the sampler's own
        "churn": 0.0,               # heun's s_churn
        "n": 16,                    # samples in a preview
        "batch_size": 256,          # samples generated at once
    },
    "eval": {"n": 100},
}
ENGINE_SECTIONS = ("diffusion", "train", "sample")
CHOICES = {
    "train.lr_schedule": ("cosine", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "diffusion.weighting": ("uniform", "min_snr", "edm"),
}
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a table"}


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or a bare name of a file in the repository's recipes/."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise UserError(f"recipe file not found: {path}")
        return path
    path = RECIPES_DIR / f"{text}.toml"
    if not path.is_file():
        known = ", ".join(name for name, _ in list_recipes()) or "none"
        raise UserError(f"unknown recipe {text!r}; known recipes: {known}")
    return path


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every recipe in the repository's recipes/ folder."""
    return [(p.stem, _read_toml(p).get("description", "")) for p in sorted(RECIPES_DIR.glob("*.toml"))]


def load_recipe(path: str | Path, preset: str | None = None, overrides=()) -> dict:
    """The resolved config of recipe ``path`` (a file or a bare recipe name).

    ``overrides`` are strings ``"section.key=value"`` whose values are TOML literals
    (a bare word is taken as a string where the key holds a string).
    """
    path = find_recipe(path)
    recipe = _read_toml(path)
    presets = recipe.pop("presets", {})
    cfg = copy.deepcopy(ENGINE_DEFAULTS)
    for key, value in recipe.items():
        if key not in cfg:
            raise UserError(f"{path}: unknown top-level key {key!r}; known: {', '.join(cfg)}")
        if key in ENGINE_SECTIONS:
            _merge(cfg[key], value, key, f"recipe {path.name}")
        elif isinstance(cfg[key], dict) and isinstance(value, dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    if preset:
        if preset not in presets:
            raise UserError(f"recipe {path.name} has no preset {preset!r}; it has: {', '.join(presets) or 'none'}")
        _merge(cfg, presets[preset], "", f"preset {preset!r}")
        cfg["preset"] = preset
    for item in overrides:
        apply_override(cfg, item)
    if not cfg["modality"]:
        raise UserError(f"{path}: the recipe names no modality")
    cfg["name"] = cfg["name"] or path.stem
    _resolve_data_path(cfg, path.parent)
    validate(cfg)
    return cfg


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``"a.b.c=value"`` override in place."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects key=value, got {item!r}")
    *parents, last = key.split(".")
    table = cfg
    for i, part in enumerate(parents):
        table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            raise UserError(f"unknown config key {'.'.join(parents[:i + 1])!r} (in --set {item})")
    if last not in table:
        raise UserError(f"unknown config key {key!r}; {_known_keys(table, parents)}")
    table[last] = _checked(table[last], _parse_value(text.strip(), table[last], key), key)


def validate(cfg: dict) -> None:
    """Check names and numbers the engine depends on; raise UserError naming the bad key."""
    from multidiff import modality, parameterizations, schedules

    def choose(key, value, known):
        if value not in known:
            raise UserError(f"unknown {key} {value!r}; choose one of: {', '.join(known)}")

    for key, known in CHOICES.items():
        section, name = key.split(".")
        choose(key, cfg[section][name], known)
    choose("modality", cfg["modality"], modality.names())
    choose("diffusion.schedule", cfg["diffusion"]["schedule"], schedules.names())
    choose("diffusion.prediction", cfg["diffusion"]["prediction"], parameterizations.names())
    validate_sampler(cfg["sample"]["sampler"])
    validate_sampling_options(cfg["sample"])
    if not 0.0 <= cfg["diffusion"]["t_min"] < 1.0:
        raise UserError(f"diffusion.t_min must be in [0, 1), got {cfg['diffusion']['t_min']}")
    train = cfg["train"]
    for key in ("batch_size", "grad_accum", "log_every", "ckpt_every"):
        if train[key] < 1:
            raise UserError(f"train.{key} must be at least 1, got {train[key]}")
    if train["batch_size"] % train["grad_accum"]:
        raise UserError(f"train.batch_size ({train['batch_size']}) must be a multiple of "
                        f"train.grad_accum ({train['grad_accum']})")
    if not 0.0 <= train["ema_decay"] < 1.0:
        raise UserError(f"train.ema_decay must be in [0, 1), got {train['ema_decay']}")
    if not 0.0 <= cfg["diffusion"]["cond_drop"] <= 1.0:
        raise UserError(f"diffusion.cond_drop must be in [0, 1], got {cfg['diffusion']['cond_drop']}")


def validate_sampler(name: str) -> None:
    from multidiff import samplers

    if name not in samplers.names():
        raise UserError(f"unknown sampler {name!r}; choose one of: {', '.join(samplers.names())}")


def validate_sampling_options(sample: dict) -> None:
    """Check ``[sample]``'s placement, eta and churn against its sampler (keys missing in old runs: skipped)."""
    from multidiff.engine.sampling_options import check

    check(sample["sampler"], sample.get("placement", ""), sample.get("eta", -1.0), sample.get("churn", 0.0))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"recipe {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read recipe {path}: {e.strerror}") from None


def _merge(base: dict, update: dict, prefix: str, origin: str) -> None:
    """Deep-merge ``update`` into ``base``; every key must exist in ``base`` with a value of the same type."""
    for key, value in update.items():
        name = f"{prefix}.{key}" if prefix else key
        if key not in base:
            raise UserError(f"{origin} sets unknown key {name!r}; {_known_keys(base, prefix.split('.'))}")
        if isinstance(base[key], dict) and isinstance(value, dict) and not name.endswith("_args"):
            _merge(base[key], value, name, origin)
        else:
            base[key] = _checked(base[key], value, name)


def _parse_value(text: str, current, key: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if isinstance(current, str):
            return text
        raise UserError(f"{key} must be {_type_name(current)} (a TOML literal), got {text!r}") from None


def _checked(current, value, key: str):
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(current):
        raise UserError(f"{key} must be {_type_name(current)}, got {value!r}")
    return value


def _type_name(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _known_keys(table: dict, parents) -> str:
    where = ".".join(p for p in parents if p)
    keys = ", ".join(sorted(table)) or "none"
    return f"known keys{' in ' + where if where else ''}: {keys}"


def _resolve_data_path(cfg: dict, recipe_dir: Path) -> None:
    """Make a relative ``data.path`` absolute: against the current directory, else the recipe's folder."""
    path = cfg["data"].get("path")
    if not isinstance(path, str) or not path or Path(path).is_absolute():
        return
    for base in (Path.cwd(), recipe_dir):
        if (base / path).exists():
            cfg["data"]["path"] = str((base / path).resolve())
            return
    cfg["data"]["path"] = str((Path.cwd() / path).resolve())
