"""Recipes: defaults, presets, --set overrides with type checks, data paths, clear errors."""
import tomllib
from pathlib import Path

import pytest

from multidiff.engine.config import ENGINE_DEFAULTS, RECIPES_DIR, find_recipe, list_recipes, load_recipe
from multidiff.engine.errors import UserError

TOY = RECIPES_DIR / "toy2d.toml"


def toy_recipe():
    with open(TOY, "rb") as f:
        return tomllib.load(f)


def write_recipe(folder: Path, text: str) -> Path:
    path = folder / "r.toml"
    path.write_text('modality = "toy2d"\n' + text)
    return path


def test_recipe_values_then_preset_then_overrides():
    raw = toy_recipe()
    cfg = load_recipe("toy2d")
    assert cfg["train"]["lr"] == raw["train"]["lr"]
    assert cfg["model"] == raw["model"]
    assert cfg["train"]["weight_decay"] == ENGINE_DEFAULTS["train"]["weight_decay"]  # not in the recipe
    quick = load_recipe("toy2d", "quick")
    assert quick["preset"] == "quick"
    assert quick["train"]["steps"] == raw["presets"]["quick"]["train"]["steps"]
    assert quick["model"]["hidden"] == raw["presets"]["quick"]["model"]["hidden"]
    assert quick["model"]["depth"] == raw["model"]["depth"]  # a preset changes only what it names
    over = load_recipe(TOY, "quick", ["train.steps=7", "diffusion.schedule=linear", "sample.guidance=2",
                                      "diffusion.schedule_args={logsnr_shift=1.0}", "train.compile=true"])
    assert over["train"]["steps"] == 7
    assert over["diffusion"]["schedule"] == "linear"  # a bare word for a string key
    assert over["sample"]["guidance"] == 2.0 and isinstance(over["sample"]["guidance"], float)
    assert over["diffusion"]["schedule_args"] == {"logsnr_shift": 1.0}
    assert over["train"]["compile"] is True
    assert "presets" not in over


@pytest.mark.parametrize("override, words", [
    ("train.stepz=3", ["train.stepz", "steps"]),
    ("nosuch.key=3", ["nosuch"]),
    ("train.steps=abc", ["train.steps", "integer"]),
    ("train.steps=1.5", ["train.steps", "integer"]),
    ("train.compile=1", ["train.compile", "true or false"]),
    ("train.lr=fast", ["train.lr", "number"]),
    ("train.steps", ["key=value"]),
    ("diffusion.prediction=eta", ["eta", "eps"]),
    ("sample.sampler=fancy", ["fancy", "dpmpp_2m"]),
    ("diffusion.schedule=wobbly", ["wobbly", "cosine"]),
    ("train.precision=fp8", ["fp8", "bf16"]),
    ("train.grad_accum=3", ["grad_accum"]),
])
def test_bad_override_names_the_problem(override, words):
    with pytest.raises(UserError) as info:
        load_recipe("toy2d", overrides=[override])
    for word in words:
        assert word in str(info.value)


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(UserError, match="toy2d"):
        find_recipe("no_such_recipe")
    assert ("toy2d", toy_recipe()["description"]) in list_recipes()


def test_recipe_file_errors(tmp_path):
    with pytest.raises(UserError, match="preset 'huge'"):
        load_recipe("toy2d", "huge")
    with pytest.raises(UserError, match="not found"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(write_recipe(tmp_path, "[train\n"))
    with pytest.raises(UserError, match="'trian'"):
        load_recipe(write_recipe(tmp_path, "[trian]\nsteps = 3\n"))
    with pytest.raises(UserError, match="train.setps"):
        load_recipe(write_recipe(tmp_path, "[train]\nsetps = 3\n"))
    with pytest.raises(UserError, match="model.width"):
        load_recipe(write_recipe(tmp_path, "[model]\nhidden = 3\n[presets.quick]\nmodel = { width = 2 }\n"), "quick")
    no_modality, unknown_modality = tmp_path / "a.toml", tmp_path / "b.toml"
    no_modality.write_text("[train]\nsteps = 3\n")
    unknown_modality.write_text('modality = "sound"\n')
    with pytest.raises(UserError, match="names no modality"):
        load_recipe(no_modality)
    with pytest.raises(UserError, match="unknown modality 'sound'"):
        load_recipe(unknown_modality)


def test_relative_data_path_found_from_cwd_then_recipe_folder(tmp_path, monkeypatch):
    recipes, elsewhere = tmp_path / "recipes", tmp_path / "elsewhere"
    recipes.mkdir()
    (elsewhere / "pts").mkdir(parents=True)
    (recipes / "pts").mkdir()
    recipe = write_recipe(recipes, '[data]\npath = "pts"\n')
    monkeypatch.chdir(tmp_path)  # no ./pts here: falls back to the recipe's folder
    assert load_recipe(recipe)["data"]["path"] == str(recipes / "pts")
    monkeypatch.chdir(elsewhere)  # ./pts exists: the current directory wins
    assert load_recipe(recipe)["data"]["path"] == str(elsewhere / "pts")
    assert load_recipe(recipe, overrides=['data.path="/abs/x"'])["data"]["path"] == "/abs/x"
