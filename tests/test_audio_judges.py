"""The audio judges: the temporal classifier for whole utterances, choosing it in a recipe, and `eval --set`."""
from __future__ import annotations

import json
import math

import pytest
import torch

from modalities.audio import AudioModality, data
from modalities.audio.classifier import ClipClassifier, TemporalClassifier, build_classifier
from multidiff.engine import trainer
from multidiff.engine.config import RECIPES_DIR as RECIPES
from multidiff.engine.config import load_recipe, with_defaults
from multidiff.engine.errors import UserError
from multidiff.metrics import accuracy, fit_classifier, predict
from tests.cli_helpers import invoke

RATE, LENGTH = 8000, 4096
FREQUENCIES = (300.0, 700.0, 1500.0, 3000.0)


def bursts(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, LENGTH) clips of silence holding one 80 ms tone burst of class frequency at a random place
    and level: the word may sit anywhere in a padded clip, as in whole FSDD utterances."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(FREQUENCIES), (n,), generator=gen)
    burst = int(0.08 * RATE)
    t = torch.arange(burst) / RATE
    window = torch.hann_window(burst)
    x = torch.zeros(n, 1, LENGTH)
    for i, c in enumerate(labels.tolist()):
        start = int(torch.randint(LENGTH - burst, (1,), generator=gen))
        level = 10 ** (-(6 + 20 * float(torch.rand(1, generator=gen))) / 20)
        x[i, 0, start:start + burst] = level * window * torch.sin(2 * math.pi * FREQUENCIES[c] * t)
    return x, labels


def test_the_temporal_judge_names_a_burst_wherever_it_sits_in_the_clip():
    x, y = bursts(256, seed=0)
    test_x, test_y = bursts(128, seed=1)
    torch.manual_seed(0)
    net = fit_classifier(TemporalClassifier(RATE, len(FREQUENCIES)), x, y, steps=120, batch_size=32, seed=0)
    assert accuracy(predict(net, test_x), test_y) >= 0.95  # chance 0.25
    assert net.embed(test_x[:3]).shape == (3, 64)
    # moving the burst in time barely changes the verdict: the features are pooled over frames
    moved = torch.roll(test_x, 800, dims=-1)
    assert accuracy(predict(net, moved), test_y) >= 0.9


def test_build_classifier_names_each_judge_and_refuses_an_unknown_one():
    assert isinstance(build_classifier("cnn", RATE, 3), ClipClassifier)
    assert isinstance(build_classifier("tcn", RATE, 3), TemporalClassifier)
    with pytest.raises(ValueError, match="unknown audio classifier 'rnn'; choose one of: cnn, tcn"):
        build_classifier("rnn", RATE, 3)


def test_a_recipe_with_an_unknown_judge_is_refused_before_training():
    with pytest.raises(UserError, match=r"unknown eval.classifier 'big'; choose one of: cnn, tcn"):
        load_recipe(RECIPES / "spoken_digits_latent.toml", "quick", ["eval.classifier=big"])
    assert load_recipe(RECIPES / "spoken_digits_latent.toml", "quick")["eval"]["classifier"] == "tcn"
    assert load_recipe(RECIPES / "spoken_digits.toml", "quick")["eval"]["classifier"] == "cnn"


def test_evaluation_trains_and_caches_the_judge_the_recipe_names(tmp_path):
    cfg = with_defaults({"modality": "audio",
                         "data": {"source": "synthetic", "num_train": 64, "num_test": 40, "seed": 5,
                                  "sample_rate": RATE, "length": LENGTH, "loudness": "rms", "target_db": -20.0},
                         "encoder": {"representation": "waveform"}, "eval": {"classifier_steps": 80}})
    test = data.load(cfg, "test")
    scores = {}
    for kind in ("cnn", "tcn"):
        cfg["eval"]["classifier"] = kind
        scores[kind] = AudioModality().evaluate(test.x, test.labels, cfg, tmp_path)
    assert len(list(tmp_path.glob("audio_classifier-*.safetensors"))) == 2  # one judge per kind, each kept
    for s in scores.values():
        assert s["classifier_accuracy"] == s["ceiling_classifier_accuracy"] > 0.75  # chance 0.25
    # each judge has its own embedding (64 features either way, so the distances differ, not their size)
    assert scores["cnn"]["ceiling_frechet_distance"] != scores["tcn"]["ceiling_frechet_distance"]


def test_eval_set_changes_only_the_eval_section_and_records_it(tmp_path):
    cfg = load_recipe(RECIPES / "tones.toml", "quick",
                      ["train.steps=4", "train.batch_size=8", "train.log_every=4", "train.ckpt_every=4",
                       "model.channels=16", "data.num_train=32", "data.num_test=8", "encoder.griffin_lim_iters=2",
                       "sample.steps=2", "eval.classifier_steps=3"])
    run = trainer.train(cfg, tmp_path / "run")
    out = tmp_path / "eval.json"
    result = invoke("eval", run, "--n", 4, "--set", "eval.classifier=tcn", "--set", "eval.classifier_steps=2",
                    "--out", out)
    assert result.exit_code == 0, result.output
    recorded = json.loads(out.read_text())["settings"]["eval"]
    assert (recorded["classifier"], recorded["classifier_steps"]) == ("tcn", 2)
    bad = invoke("eval", run, "--n", 4, "--set", "sample.steps=9")
    assert bad.exit_code != 0 and "changes only the [eval] section (eval.KEY=VALUE), got 'sample.steps=9'" in bad.output
    bad = invoke("eval", run, "--n", 4, "--set", "eval.classifier=big")
    assert bad.exit_code != 0 and "unknown eval.classifier 'big'" in bad.output
    bad = invoke("eval", run, "--n", 4, "--set", "eval.depth=3")
    assert bad.exit_code != 0 and "unknown config key 'eval.depth'" in bad.output
