"""A run with named conditions resumes exactly: its per-condition dropout draws are keyed by (seed, step)
like every other draw, so 20 steps, then 20 more after --resume, equal 40 straight (bit for bit)."""
from safetensors.torch import load_file

from multidiff.engine.config import load_recipe
from multidiff.engine.trainer import train
from tests.conditions_helpers import write_recipe

SETTINGS = ["train.lr_schedule=constant", "train.ckpt_every=10", "model.hidden=16", "model.depth=1"]


def test_a_resumed_run_repeats_an_uninterrupted_one(tmp_path):
    recipe = write_recipe(tmp_path, steps=20)
    train(load_recipe(recipe, overrides=SETTINGS), tmp_path / "resumed", device="cpu")
    longer = load_recipe(recipe, overrides=[*SETTINGS, "train.steps=40"])
    train(longer, tmp_path / "resumed", resume=True, device="cpu")
    train(longer, tmp_path / "straight", device="cpu")
    resumed, straight = (load_file(tmp_path / r / "checkpoints" / "last.safetensors") for r in ("resumed", "straight"))
    assert resumed.keys() == straight.keys() and any("conditioner" in k for k in resumed)
    assert all((resumed[k] == straight[k]).all() for k in resumed)
