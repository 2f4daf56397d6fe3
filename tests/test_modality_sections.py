"""Every modality declares its recipe sections: a typo or a wrong type is one error line naming the
key and the keys allowed, any declared option can be set with --set, and a checkpoint whose config
predates a key reads that key as its default."""
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from modalities.audio.encoders import build_encoder
from multidiff import modality as registry
from multidiff.cli import main
from multidiff.engine import checkpoint, generate, trainer
from multidiff.engine.config import ENGINE_DEFAULTS, defaults, load_recipe, with_defaults
from multidiff.engine.errors import UserError

BUILTIN = ("audio", "image", "points", "toy2d")
RECIPE_OF = {"audio": "tones", "image": "shapes", "points": "primitives", "toy2d": "toy2d"}


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("section", ["data", "encoder", "model", "eval"])
def test_a_typo_in_any_section_is_one_line_naming_the_key_and_the_allowed_ones(tmp_path, name, section):
    recipe = tmp_path / "typo.toml"
    recipe.write_text(f'modality = "{name}"\n[{section}]\nsteplength = 3\n')
    allowed = sorted(defaults(name)[section])
    with pytest.raises(UserError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert "\n" not in message and f"{section}.steplength" in message
    assert f"known keys in {section}: {', '.join(allowed) or 'none'}" in message
    result = CliRunner().invoke(main, ["train", RECIPE_OF[name], "--set", f"{section}.steplength=3",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and f"{section}.steplength" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe, override, words", [
    ("tones", "model.channel_mult=2", ["model.channel_mult", "a list"]),
    ("tones", "data.sample_rate=8k", ["data.sample_rate", "an integer"]),
    ("shapes", "eval.classifier_steps=0.5", ["eval.classifier_steps", "an integer"]),
    ("primitives", "data.conditional=1", ["data.conditional", "true or false"]),
    ("toy2d", "data.radius=wide", ["data.radius", "a number"]),
])
def test_modality_values_are_type_checked_like_the_engines(recipe, override, words):
    with pytest.raises(UserError) as info:
        load_recipe(recipe, overrides=[override])
    for word in words:
        assert word in str(info.value)


def test_an_option_the_recipe_does_not_list_can_be_set():
    raw = load_recipe("tones")
    assert raw["encoder"]["f_max"] == 0.0  # declared by the modality though tones.toml does not list it
    cfg = load_recipe("tones", overrides=["encoder.f_max=3000", "encoder.n_mels=24", "model.num_heads=2"])
    assert cfg["encoder"]["f_max"] == 3000.0 and cfg["model"]["num_heads"] == 2
    mel = build_encoder(cfg).mel.mel_scale
    assert (mel.f_max, mel.n_mels) == (3000.0, 24)
    assert build_encoder(raw).mel.mel_scale.f_max == 4000.0  # 0 = the Nyquist frequency of 8 kHz


@pytest.mark.parametrize("name", BUILTIN)
def test_the_defaults_hold_engine_and_modality_keys(name):
    declared = registry.get(name).sections
    cfg = defaults(name)
    for section, keys in declared.items():
        assert keys.items() <= cfg[section].items()
    assert cfg["eval"]["n"] == ENGINE_DEFAULTS["eval"]["n"]
    assert cfg["data"]["cond_key"] == registry.get(name).cond_key
    assert cfg["train"] == ENGINE_DEFAULTS["train"]


def test_a_recipe_for_a_modality_without_declared_sections_keeps_its_own_keys(tmp_path, monkeypatch):
    class Undeclared(registry.Modality):
        name = "undeclared"

    monkeypatch.setitem(registry._registered, "undeclared", Undeclared)
    recipe = tmp_path / "r.toml"
    recipe.write_text('modality = "undeclared"\n[model]\nwidth = 3\n')
    assert load_recipe(recipe, overrides=["model.width=4"])["model"] == {"width": 4}
    with pytest.raises(UserError, match="model.depth"):
        load_recipe(recipe, overrides=["model.depth=4"])


TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.steps=4", "train.ckpt_every=100", "train.sample_every=0", "sample.n=8",
        "sample.steps=3"]


def test_a_checkpoint_whose_config_predates_the_sections_still_loads_and_samples(tmp_path):
    run = trainer.train(load_recipe("toy2d", "quick", TINY), tmp_path / "run", device="cpu")
    path = checkpoint.weights_path(run)
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    metadata = header["__metadata__"]
    old = json.loads(metadata["config"])
    del old["data"]["cond_key"], old["data"]["std"], old["eval"]["n"], old["train"]["weight_decay"]
    save_file(load_file(path), str(path), {**metadata, "config": json.dumps(old)})  # as an older version wrote it

    loaded = generate.load_run(run)
    assert loaded.cfg["data"]["cond_key"] == "component" and loaded.cfg["data"]["std"] == 0.15
    assert loaded.cfg["eval"]["n"] == ENGINE_DEFAULTS["eval"]["n"]
    assert with_defaults(old)["model"] == old["model"]  # what the checkpoint holds is kept
    out = generate.generate(run, 3, cond="component=5", steps=2, seed=0)
    assert out["labels"].tolist() == [5, 5, 5] and torch.isfinite(out["x"]).all()
