"""--placement (pilot included), --eta and --churn on the command line and in recipes' [sample]."""

import pytest
import torch

import multidiff.sampling
from multidiff import steps
from multidiff.engine import checkpoint
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.pilot_steps import Pilot

from cli_helpers import invoke, train_toy2d

TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.steps=20", "train.ckpt_every=100", "train.sample_every=0", "sample.n=8",
        "sample.steps=4", "sample.sampler=ddim", "sample.placement=karras", "sample.eta=0.3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_toy2d(tmp_path_factory.mktemp("pilot_cli") / "run", TINY)


@pytest.fixture
def calls(monkeypatch):
    """The keyword arguments of every multidiff.sample call the command line makes."""
    seen = []
    real = multidiff.sampling.sample

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(multidiff.sampling, "sample", recording)
    return seen


def test_recipe_sample_section_reaches_the_sampler(run, tmp_path, calls):
    assert invoke("sample", run, "--n", 3, "--out", tmp_path / "s").exit_code == 0
    assert calls[-1]["sampler"] == "ddim" and calls[-1]["placement"] == "karras" and calls[-1]["eta"] == 0.3
    assert calls[-1]["t_min"] == steps.T_MIN
    assert invoke("eval", run, "--n", 8).exit_code == 0
    assert calls[-1]["placement"] == "karras" and calls[-1]["eta"] == 0.3


def test_flags_override_the_recipe(run, tmp_path, calls):
    result = invoke("sample", run, "--n", 3, "--placement", "trailing", "--eta", 0.0, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert calls[-1]["placement"] == "trailing" and calls[-1]["eta"] == 0.0
    result = invoke("sample", run, "--n", 3, "--sampler", "heun", "--churn", 2.5, "--eta", -1, "--out", tmp_path / "b")
    assert result.exit_code != 0 and "--eta" in result.output               # eta is a non-negative number
    result = invoke("sample", run, "--n", 3, "--sampler", "heun", "--churn", 2.5, "--out", tmp_path / "b")
    assert result.exit_code != 0 and "sampler 'heun' takes no eta" in result.output   # the recipe's eta = 0.3
    result = invoke("eval", run, "--n", 8, "--placement", "linspace", "--eta", 1.0)
    assert result.exit_code == 0 and calls[-1]["placement"] == "linspace" and calls[-1]["eta"] == 1.0


@pytest.mark.parametrize("args,words", [
    (["--placement", "nope"], "unknown placement 'nope'; choose one of: karras, leading"),
    (["--sampler", "dpmpp_2m", "--eta", "0.5"], "sampler 'dpmpp_2m' takes no eta"),
    (["--churn", "1"], "sampler 'ddim' takes no churn; only heun does"),
])
def test_bad_sampling_options_are_one_line_errors(run, tmp_path, args, words):
    result = invoke("sample", run, "--n", 2, *args, "--out", tmp_path / "s")
    assert result.exit_code == 1 and words in result.output and len(result.output.strip().splitlines()) == 1


def test_recipes_validate_their_sample_section():
    with pytest.raises(UserError, match="unknown placement 'uniform'"):
        load_recipe("toy2d", "quick", ["sample.placement=uniform"])
    with pytest.raises(UserError, match="sampler 'dpmpp_2m' takes no eta"):
        load_recipe("toy2d", "quick", ["sample.sampler=dpmpp_2m", "sample.eta=0.5"])
    assert load_recipe("toy2d", "quick", ["sample.placement=pilot"])["sample"]["placement"] == "pilot"


def test_pilot_is_fitted_once_cached_and_refitted_for_new_weights(run, tmp_path, calls):
    run_copy = tmp_path / "run"
    run_copy.mkdir()
    (run_copy / "checkpoints").mkdir()
    weights = run_copy / "checkpoints" / "last.safetensors"
    weights.write_bytes((run / "checkpoints" / "last.safetensors").read_bytes())
    run_ddim = ["sample", run_copy, "--n", 3, "--placement", "pilot", "--steps", 2, "--out", tmp_path / "s"]
    fitted = invoke(*run_ddim)
    assert fitted.exit_code == 0, fitted.output
    assert "pilot: reference solve, 400 network calls" in fitted.output and "fitted in" in fitted.output
    cache = run_copy / "pilots" / "ddim-2steps-guidance1.json"
    pilot = Pilot.load(cache)
    assert calls[-1]["placement"].tuned == pilot.tuned and pilot.fitted_for["sampler"] == "ddim"

    reused = invoke(*run_ddim)
    assert reused.exit_code == 0 and "using" in reused.output and "reference solve" not in reused.output
    assert torch.equal(calls[-1]["placement"](calls[-1]["schedule"], 2), pilot(calls[-1]["schedule"], 2))

    parts, cfg, step = checkpoint.load_weights(weights)     # new weights, saved as training saves them
    part = "ema" if parts["ema"] else "model"
    name = next(iter(parts[part]))
    parts[part][name] = parts[part][name] + 0.01
    checkpoint.write_weights(weights, step=step, cfg=cfg, parts=parts)
    refitted = invoke(*run_ddim)
    assert refitted.exit_code == 0 and "fitted for other weights; fitting again" in refitted.output
    assert Pilot.load(cache).fitted_for["checkpoint_sha256"] != pilot.fitted_for["checkpoint_sha256"]
