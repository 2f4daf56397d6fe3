"""Recipes: TOML files resolved into one nested dict, the config of a run.

Resolution order: the defaults, the recipe, the chosen preset (``[presets.NAME]``), then
``--set section.key=value`` overrides. The defaults are the engine's, for ``[diffusion]``,
``[train]``, ``[sample]``, ``[latent]``, ``[autoencoder]`` and (when a recipe asks for it) ``[edit]``,
and the modality's, for ``[data]``, ``[encoder]``, ``[model]`` and ``[eval]`` (``Modality.sections``;
the engine adds ``eval.n`` and ``data.cond_key``). A recipe, a
preset or an override may only set a key that the defaults hold, and only to a value of the same
type (an integer may stand for a float), so a typo is an error that names the key rather than a
setting silently ignored, and any option a modality reads can be set with ``--set``.
"""
from __future__ import annotations

import copy
import math
import tomllib
from importlib import resources
from pathlib import Path

from multidiff.conditioning import spec as conditioning_spec
from multidiff.engine.errors import UserError

#: The built-in recipes: package data, so an installed multidiff (wheel or not) has them.
RECIPES_DIR = Path(str(resources.files("multidiff") / "recipes"))

ENGINE_DEFAULTS = {
    "name": "",
    "modality": "",
    "description": "",
    "preset": "",
    "kind": "diffusion",            # diffusion | autoencoder (multidiff.engine.objectives)
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
        "eval_every": 0,            # period in steps of the modality's metrics on eval_n samples; 0 = off
        "eval_n": 64,
        "best_metric": "",          # a metric of those evaluations: keep checkpoints/best.safetensors by it
        "best_mode": "min",         # min | max: whether lower or higher best_metric is better
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
    "conditions": {},               # [conditions.NAME] tables: multidiff.conditioning.spec
    "latent": {                     # diffusion in the latents of an autoencoder run (multidiff.latent)
        "autoencoder": "",          # its run directory; relative: to the current folder, then the recipe's
        "recipe": "",               # the recipe that trains it (same preset) when the run is missing
        "cache": False,             # keep the encoded training set on disk (MULTIDIFF_CACHE/latents)
    },
    "autoencoder": {                # the loss of a kind = "autoencoder" recipe
        "reconstruction": "l1",     # l1 | l2, or one of the modality's (Modality.reconstructions)
        "kl_weight": 1e-6,          # weight of the latent's KL divergence from N(0, I), both per data entry
        "stft_weight": 0.0,         # weight of a multi-resolution STFT distance (1D signals: multidiff.nn.stft_loss)
    },
}
# Present only in configs that use it, so that runs saved before it existed resume unchanged.
EDIT_DEFAULTS = {"mask_conditioned": False}    # see multidiff.mask_conditioning
MODALITY_SECTIONS = ("data", "encoder", "model", "eval")
CHOICES = {
    "train.lr_schedule": ("cosine", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.best_mode": ("min", "max"),
}
MAX_GUIDANCE = 1e6
MAX_SEED = 2**63 - 1
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a table"}


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or the bare name of a built-in recipe (``RECIPES_DIR``)."""
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
    """(name, description) of every built-in recipe."""
    return [(p.stem, _read_toml(p).get("description", "")) for p in sorted(RECIPES_DIR.glob("*.toml"))]


def load_recipe(path: str | Path, preset: str | None = None, overrides=()) -> dict:
    """The resolved config of recipe ``path`` (a file or a bare recipe name).

    ``overrides`` are strings ``"section.key=value"`` whose values are TOML literals
    (a bare word is taken as a string where the key holds a string).
    """
    path = find_recipe(path)
    recipe = _read_toml(path)
    presets = recipe.pop("presets", {})
    cfg = defaults(_modality_of(recipe, overrides, path), _kind_of(recipe, overrides))
    asked = "edit" in recipe or "edit" in presets.get(preset or "", {})
    if asked or any(item.strip().startswith("edit.") for item in overrides):
        cfg["edit"] = dict(EDIT_DEFAULTS)
    for section in MODALITY_SECTIONS:
        if section not in _declared_sections(cfg["modality"]) and isinstance(recipe.get(section), dict):
            cfg[section].update(recipe[section])
    _merge(cfg, recipe, "", f"recipe {path.name}")
    if preset:
        if preset not in presets:
            raise UserError(f"recipe {path.name} has no preset {preset!r}; it has: {', '.join(presets) or 'none'}")
        _merge(cfg, presets[preset], "", f"preset {preset!r}")
        cfg["preset"] = preset
    cfg["conditions"] = conditioning_spec.resolve(cfg["conditions"])  # every key present, so --set may set it
    for item in overrides:
        apply_override(cfg, item)
    cfg["name"] = cfg["name"] or path.stem
    cfg["conditions"] = conditioning_spec.resolve(cfg["conditions"])
    _resolve_path(cfg["data"], "path", path.parent)
    _resolve_path(cfg["latent"], "autoencoder", path.parent)
    validate(cfg)
    return cfg


def defaults(modality_name: str, kind: str = "diffusion") -> dict:
    """The engine's defaults with the sections of modality ``modality_name`` merged in; for
    ``kind = "autoencoder"`` its ``[model]`` is the modality's autoencoder's."""
    from multidiff import modality

    chosen = modality.get(modality_name)
    cfg = copy.deepcopy(ENGINE_DEFAULTS)
    cfg["modality"], cfg["kind"] = modality_name, kind
    cfg["data"]["cond_key"] = chosen.cond_key
    sections = {**chosen.sections, "model": chosen.autoencoder_model} if kind == "autoencoder" else chosen.sections
    for section, keys in sections.items():
        cfg[section].update(copy.deepcopy(keys))
    return cfg


def with_defaults(cfg: dict) -> dict:
    """``cfg`` with every key missing from its sections filled from the current defaults: a
    config saved before a key existed (a checkpoint of an older version) reads as today's."""
    from multidiff import modality

    known = cfg.get("modality") in modality.names()
    base = defaults(cfg["modality"], cfg.get("kind", "diffusion")) if known else copy.deepcopy(ENGINE_DEFAULTS)
    filled = {**base, **cfg}
    for key, value in base.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            filled[key] = {**value, **cfg[key]}
    filled["conditions"] = conditioning_spec.with_defaults(filled["conditions"])
    return filled


def _declared_sections(modality_name: str) -> set[str]:
    from multidiff import modality

    return set(modality.get(modality_name).sections)


def _top_level(recipe: dict, overrides, key: str, default: str) -> str:
    """A recipe's top-level ``key`` (``modality``, ``kind``): its own, or the one a ``key=`` override names."""
    value = recipe.get(key, default)
    for item in overrides:
        name, _, text = item.partition("=")
        if name.strip() == key:
            value = _parse_value(text.strip(), "", key)
    return value


def _kind_of(recipe: dict, overrides) -> str:
    """What a recipe trains (``kind``)."""
    from multidiff.engine.objectives import KINDS

    kind = _top_level(recipe, overrides, "kind", "diffusion")
    if kind not in KINDS:
        raise UserError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


def _modality_of(recipe: dict, overrides, path: Path) -> str:
    """The modality a recipe resolves to."""
    from multidiff import modality

    name = _top_level(recipe, overrides, "modality", "")
    if not name:
        raise UserError(f"{path}: the recipe names no modality")
    if name not in modality.names():
        raise UserError(f"unknown modality {name!r}; choose one of: {', '.join(modality.names())}")
    return name


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
    from multidiff import modality, parameterizations, schedules, weightings
    from multidiff.engine import diffusion, objectives

    def choose(key, value, known):
        if value not in known:
            raise UserError(f"unknown {key} {value!r}; choose one of: {', '.join(known)}")

    choose("modality", cfg["modality"], modality.names())
    for key, known in {**CHOICES, **modality.get(cfg["modality"]).choices}.items():
        section, name = key.split(".")
        choose(key, cfg[section][name], known)
    choose("kind", cfg["kind"], objectives.KINDS)
    if cfg["kind"] == "autoencoder" and cfg["latent"]["autoencoder"]:
        raise UserError("an autoencoder recipe cannot itself be latent: drop latent.autoencoder")
    if cfg["kind"] == "autoencoder":
        choose("autoencoder.reconstruction", cfg["autoencoder"]["reconstruction"],
               modality.get(cfg["modality"]).reconstructions)
    for key in ("kl_weight", "stft_weight"):
        if cfg["autoencoder"][key] < 0:
            raise UserError(f"autoencoder.{key} must be >= 0, got {cfg['autoencoder'][key]}")
    choose("diffusion.schedule", cfg["diffusion"]["schedule"], schedules.names())
    choose("diffusion.prediction", cfg["diffusion"]["prediction"], parameterizations.names())
    choose("diffusion.weighting", cfg["diffusion"]["weighting"], weightings.names())
    try:
        diffusion.from_config(cfg["diffusion"])
    except ValueError as err:
        raise UserError(f"[diffusion]: {err}") from None
    validate_sampler(cfg["sample"]["sampler"])
    validate_sampling_options(cfg["sample"])
    if not 0.0 <= cfg["diffusion"]["t_min"] < 1.0:
        raise UserError(f"diffusion.t_min must be in [0, 1), got {cfg['diffusion']['t_min']}")
    train = cfg["train"]
    for key in ("train.steps", "train.batch_size", "train.grad_accum", "train.log_every", "train.ckpt_every",
                "sample.steps", "sample.n", "sample.batch_size"):
        section, name = key.split(".")
        if cfg[section][name] < 1:
            raise UserError(f"{key} must be at least 1, got {cfg[section][name]}")
    for key in ("warmup_steps", "ema_warmup", "num_workers", "sample_every"):
        if train[key] < 0:
            raise UserError(f"train.{key} must be at least 0, got {train[key]}")
    for key in ("weight_decay", "grad_clip"):
        if not 0.0 <= train[key] < math.inf:
            raise UserError(f"train.{key} must be a finite number at least 0, got {train[key]}")
    if not 0.0 < train["lr"] <= 1.0:
        raise UserError(f"train.lr must be in (0, 1], got {train['lr']}")
    check_seed(train["seed"], "train.seed")
    check_guidance(cfg["sample"]["guidance"], "sample.guidance")
    _check_model_sizes(cfg["model"])
    if train["eval_every"] < 0 or train["eval_n"] < 2:
        raise UserError(f"train.eval_every must be at least 0 and train.eval_n at least 2, got "
                        f"{train['eval_every']} and {train['eval_n']}")
    if train["best_metric"] and not train["eval_every"]:
        raise UserError("train.best_metric needs evaluations during training: set train.eval_every")
    if train["batch_size"] % train["grad_accum"]:
        raise UserError(f"train.batch_size ({train['batch_size']}) must be a multiple of "
                        f"train.grad_accum ({train['grad_accum']})")
    if not 0.0 <= train["ema_decay"] < 1.0:
        raise UserError(f"train.ema_decay must be in [0, 1), got {train['ema_decay']}")
    if not 0.0 <= cfg["diffusion"]["cond_drop"] <= 1.0:
        raise UserError(f"diffusion.cond_drop must be in [0, 1], got {cfg['diffusion']['cond_drop']}")


def _check_model_sizes(model: dict) -> None:
    """Network sizes are whole numbers of at least 1 (widths, depths, heads, channel multipliers);
    level indices (``attn_levels``) and rates are checked where they are read."""
    for key, value in model.items():
        sizes = value if key == "channel_mult" else [value]
        if key != "attn_levels" and any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in sizes):
            raise UserError(f"model.{key} must be at least 1, got {value}")


def validate_sampler(name: str) -> None:
    from multidiff import samplers

    if name not in samplers.names():
        raise UserError(f"unknown sampler {name!r}; choose one of: {', '.join(samplers.names())}")


def check_guidance(value: float, name: str) -> None:
    """A classifier-free guidance scale: 0 (unconditional) to MAX_GUIDANCE (far beyond any useful one)."""
    if not 0.0 <= value <= MAX_GUIDANCE:
        raise UserError(f"{name} must be in [0, {MAX_GUIDANCE:g}], got {value}")


def check_seed(value: int, name: str) -> None:
    """A seed must fit torch's generators and multidiff's derived seeds: 0 to 2**63 - 1."""
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"{name} must be an integer in [0, 2**63 - 1], got {value}")


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
        if name == "conditions":  # named by the recipe: checked per condition type (conditioning.spec)
            base[key] = conditioning_spec.merge(base[key], value, origin)
        elif isinstance(base[key], dict) and isinstance(value, dict) and not is_argument_table(name):
            _merge(base[key], value, name, origin)
        else:
            base[key] = _checked(base[key], value, name)


def is_argument_table(key: str) -> bool:
    """A key ending in ``_args`` (``schedule_args``) holds keyword arguments for a constructor: one value,
    replaced whole by a preset or override and compared whole on resume, never merged key by key."""
    return key.endswith("_args")


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


def _resolve_path(table: dict, key: str, recipe_dir: Path) -> None:
    """Make a relative path (``data.path``, ``latent.autoencoder``) absolute: against the current
    directory, else the recipe's folder; against the current directory when it exists in neither."""
    path = table.get(key)
    if not isinstance(path, str) or not path or Path(path).is_absolute():
        return
    for base in (Path.cwd(), recipe_dir):
        if (base / path).exists():
            table[key] = str((base / path).resolve())
            return
    table[key] = str((Path.cwd() / path).resolve())
