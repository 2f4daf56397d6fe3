"""One place resolves --cond KEY=VALUE: KEY is the recipe's data.cond_key (the modality's default
unless the recipe names its own), VALUE a class name or index."""
import pytest
import torch
from click.testing import CliRunner

from modalities.audio.synthetic import CLASS_NAMES
from multidiff.cli import main
from multidiff.engine.conditions import class_index, class_labels
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError


def tones_run_cfg():
    cfg = load_recipe("tones")
    cfg["dataset"] = {"class_names": list(CLASS_NAMES)}
    return cfg


def test_the_tones_recipe_takes_tone_not_digit():
    cfg = tones_run_cfg()
    assert cfg["data"]["cond_key"] == "tone"
    assert class_index(cfg, "tone=rising_chirp") == CLASS_NAMES.index("rising_chirp")
    assert class_index(cfg, " tone = 3 ") == 3
    assert class_index(cfg, "falling_chirp") == 3  # a bare name, as from Python
    with pytest.raises(UserError, match="--cond expects tone=VALUE"):
        class_index(cfg, "digit=rising_chirp")
    with pytest.raises(UserError, match="unknown class 'whistle'"):
        class_index(cfg, "tone=whistle")
    with pytest.raises(UserError, match="index 0..3"):
        class_index(cfg, "tone=4")


def test_labels_are_the_named_class_or_balanced_or_none():
    cfg = tones_run_cfg()
    assert class_labels(3, cfg, "tone=high_tone").tolist() == [1, 1, 1]
    assert torch.equal(class_labels(6, cfg), torch.tensor([0, 1, 2, 3, 0, 1]))
    cfg["dataset"]["class_names"] = []
    assert class_labels(2, cfg) is None
    with pytest.raises(UserError, match="without classes"):
        class_labels(2, cfg, "tone=high_tone")


TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.steps=4", "train.ckpt_every=100", "train.sample_every=0", "sample.n=8",
        "sample.steps=3", "data.cond_key=ring"]


def test_a_recipes_own_key_is_what_sample_takes_and_info_shows(tmp_path):
    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    run = tmp_path / "run"
    assert invoke("train", "toy2d", "--preset", "quick", *[a for s in TINY for a in ("--set", s)],
                  "--out", run).exit_code == 0
    assert "--cond ring=NAME" in invoke("info", run).output
    assert invoke("sample", run, "--n", 2, "--cond", "ring=5", "--out", tmp_path / "s").exit_code == 0
    refused = invoke("sample", run, "--n", 2, "--cond", "component=5", "--out", tmp_path / "t")
    assert refused.exit_code == 1 and "--cond expects ring=VALUE" in refused.output
    assert not (tmp_path / "t").exists()
