"""The multidiff command line on the toy modality: train, info, sample, eval, recipes, and
one-line errors with a non-zero exit status for user mistakes."""
import json
import runpy
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from multidiff.cli import main
from multidiff.engine.config import load_recipe
from multidiff.engine.generate import build_model
from multidiff.modality import get

TINY = ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
        "train.batch_size=32", "train.steps=30", "train.ckpt_every=100", "train.sample_every=0", "sample.n=8",
        "sample.steps=4"]
SETS = [arg for item in TINY for arg in ("--set", item)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", "toy2d", "--preset", "quick", *SETS, "--out", out)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    return out


def test_info_reports_step_parameters_and_data(run):
    cfg = load_recipe("toy2d", "quick", TINY)
    cfg["dataset"] = {"encoded_shape": [2], "class_names": [str(c) for c in range(8)]}
    params = sum(p.numel() for p in build_model(get("toy2d"), cfg).parameters())
    out = invoke("info", run).output
    assert "step:       30 of 30" in out
    assert f"parameters: {params:,}" in out
    assert "256 examples of shape (2,)" in out and "classes:    8" in out


def test_sample_with_a_condition_writes_files_and_a_preview(run, tmp_path):
    result = invoke("sample", run, "--n", 6, "--cond", "component=3", "--steps", 3, "--sampler", "ddim",
                    "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    table = np.loadtxt(tmp_path / "s" / "samples.csv", delimiter=",", skiprows=1)
    assert table.shape == (6, 3) and (table[:, 2] == 3).all()
    assert np.load(tmp_path / "s" / "samples.npy").shape == (6, 2)
    assert (tmp_path / "s" / "preview.png").stat().st_size > 0
    assert invoke("sample", run, "--n", 10, "--out", tmp_path / "b").exit_code == 0
    labels = np.loadtxt(tmp_path / "b" / "samples.csv", delimiter=",", skiprows=1)[:, 2]
    assert labels.tolist() == [i % 8 for i in range(10)]  # balanced over the classes by default


def test_same_seed_same_samples(run, tmp_path):
    for name in ("a", "b"):
        assert invoke("sample", run, "--n", 4, "--seed", 7, "--out", tmp_path / name).exit_code == 0
    assert invoke("sample", run, "--n", 4, "--seed", 8, "--out", tmp_path / "c").exit_code == 0
    a, b, c = (np.load(tmp_path / n / "samples.npy") for n in "abc")
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_eval_prints_and_writes_metrics(run):
    result = invoke("eval", run, "--n", 64)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "eval.json").read_text())
    assert saved["n"] == 64 and saved["step"] == 30
    assert f"frechet: {saved['frechet']:.6g}" in result.output


def test_recipes_and_help():
    assert "toy2d" in invoke("recipes").output
    for command in ([], ["train"], ["sample"], ["eval"], ["info"], ["recipes"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_python_dash_m_multidiff(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["multidiff", "recipes"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("multidiff", run_name="__main__")
    assert info.value.code == 0 and "toy2d" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["train", "no_such_recipe"], ["unknown recipe 'no_such_recipe'"]),
    (["train", "toy2d", "--set", "train.stepz=3"], ["train.stepz"]),
    (["train", "toy2d", "--set", "train.steps=many"], ["train.steps", "integer"]),
    (["train", "toy2d", "--set", "sample.sampler=nope"], ["unknown sampler 'nope'"]),
    (["train", "toy2d", "--preset", "huge"], ["preset 'huge'"]),
    (["train", "toy2d", "--data", "/no/such/points.csv"], ["not found", "/no/such/points.csv"]),
    (["train", "toy2d", "--data", "{empty}"], ["no points", "empty.csv"]),
    (["sample", "{run}", "--n", "2", "--sampler", "nope", "--out", "{tmp}/x"], ["unknown sampler 'nope'"]),
    (["sample", "{run}", "--n", "2", "--cond", "digit=3", "--out", "{tmp}/x"], ["component=VALUE"]),
    (["sample", "{run}", "--n", "2", "--cond", "component=9", "--out", "{tmp}/x"], ["unknown class '9'"]),
    (["sample", "{tmp}", "--n", "2", "--out", "{tmp}/x"], ["no checkpoint"]),
    (["info", "{junk}"], ["not a multidiff checkpoint"]),
    (["train", "toy2d", "--out", "{run}", *SETS], ["--resume"]),
])
def test_user_errors_are_one_line_and_exit_non_zero(args, words, run, tmp_path):
    (tmp_path / "empty.csv").write_text("x,y\n")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    paths = {"run": run, "tmp": tmp_path, "empty": tmp_path / "empty.csv", "junk": tmp_path / "junk.safetensors"}
    result = invoke(*[a.format(**paths) for a in args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
    for word in words:
        assert word in lines[0]
