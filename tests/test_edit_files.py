"""Editing trained runs from files: readers, mask specs, mask-conditioned training, the `edit` command."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from PIL import Image

from modalities.audio.edit import continuation, read_clip, time_mask
from modalities.image.edit import image_mask, read_image
from modalities.points.edit import half_space, read_partial, seen_from
from modalities.points.normalize import unit_sphere
from multidiff.cli import main
from multidiff.engine import trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.edit import edit, edit_files
from multidiff.engine.generate import load_run
from multidiff.mask_conditioning import MaskConditioned, random_masks

RECIPES = Path(__file__).resolve().parents[1] / "multidiff" / "recipes"
IMAGE_TINY = ["train.steps=4", "train.batch_size=4", "train.log_every=2", "train.ckpt_every=4", "model.channels=8",
              "data.n_train=16", "data.n_test=4", "sample.steps=3", "sample.n=2"]
POINTS_TINY = ["train.steps=4", "train.batch_size=4", "train.log_every=2", "train.ckpt_every=4", "data.n_points=32",
               "data.train_per_class=2", "data.test_per_class=2", "model.width=16", "model.depth=1", "model.heads=2",
               "sample.steps=3", "sample.n=2"]
AUDIO_CFG = {"data": {"sample_rate": 8000, "length": 1024, "loudness": "none"}}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny mask-conditioned image run (shapes, 16x16 RGB)."""
    cfg = load_recipe(RECIPES / "shapes.toml", "quick", [*IMAGE_TINY, "edit.mask_conditioned=true"])
    return trainer.train(cfg, tmp_path_factory.mktemp("image") / "run", device="cpu")


def write_png(path, size, value=200):
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)
    return path


def test_a_mask_conditioned_run_sees_the_mask_and_keeps_the_known_pixels(image_run):
    run = load_run(image_run, "cpu")
    assert isinstance(run.model, MaskConditioned) and run.model.backbone.in_channels == 2 * 3 + 1
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    keep = torch.zeros(1, 1, 16, 16)
    keep[..., :8] = 1
    out = edit(run, x, known_mask=keep, labels=torch.full((2,), -1), sampler="ddpm", steps=3, guidance=1.0, seed=0)
    assert torch.allclose(out[..., :8], x[..., :8], atol=1e-6) and not torch.allclose(out[..., 8:], x[..., 8:])


def test_random_training_masks_cover_boxes_planes_and_empty_masks():
    torch.manual_seed(0)
    grid = random_masks(torch.zeros(400, 3, 8, 16), 1)
    assert grid.shape == (400, 1, 8, 16) and set(grid.unique().tolist()) == {0.0, 1.0}
    known = grid.flatten(1).mean(1)
    assert 0.1 < float((known == 0).double().mean()) < 0.35                  # EMPTY_SHARE = 0.2 (+ no box)
    assert float(((known > 0) & (known < 1)).double().mean()) > 0.6
    torch.manual_seed(0)
    clouds = torch.randn(200, 64, 3)
    points = random_masks(clouds, -1)
    assert points.shape == (200, 64, 1)
    kept = points[..., 0].mean(1)
    partial = kept[kept > 0]
    assert float(partial.min()) >= 0.15 and float(partial.max()) <= 0.85      # cut at the 20-80% quantile


def test_half_masks_keep_one_side_of_a_cut_across_one_axis():
    from multidiff.mask_conditioning import EMPTY_SHARE, HALF_SHARE, half_masks

    torch.manual_seed(0)
    masks = half_masks(2000, (8, 16), "cpu").long()
    for m in masks:
        rows_equal, cols_equal = bool((m == m[:1]).all()), bool((m == m[:, :1]).all())
        assert rows_equal != cols_equal                       # a cut across exactly one axis
        line = m[0] if rows_equal else m[:, 0]
        steps = (line[1:] != line[:-1]).sum()
        assert steps == 1 and 0.15 <= float(line.float().mean()) <= 0.85  # one side, cut at 20-80%
    assert 0.45 < float((masks[:, 0, 0] == 1).float().mean()) < 0.55     # either side kept
    torch.manual_seed(1)
    grid = random_masks(torch.zeros(4000, 1, 6, 10), 1)[:, 0]
    halves = [(m == m[:1]).all() or (m == m[:, :1]).all() for m in grid if 0 < m.mean() < 1]
    share = float(torch.tensor(halves).float().mean())
    # boxes touching two opposite sides also look like halves (a box covers 20-80% per axis; rare)
    assert HALF_SHARE <= share < HALF_SHARE + 0.1, share
    assert abs(float((grid.flatten(1).sum(1) == 0).float().mean()) - EMPTY_SHARE) < 0.03


def test_image_specs_and_files(tmp_path):
    cfg = {"data": {"resolution": 4, "channels": 3}}
    x = read_image(write_png(tmp_path / "a.png", 4, 255), cfg)
    assert x.shape == (3, 4, 4) and torch.allclose(x, torch.ones_like(x))
    assert image_mask("left-half", x)[0].tolist() == [[0, 0, 1, 1]] * 4           # left half regenerated
    assert image_mask("keep=box=1,0,2,1", x)[0].tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    mask_file = tmp_path / "m.png"
    Image.fromarray(np.array([[255, 0, 0, 0]] * 4, dtype=np.uint8)).save(mask_file)
    assert image_mask(str(mask_file), x)[0, :, 0].tolist() == [0, 0, 0, 0]        # white = regenerate
    with pytest.raises(ValueError, match="the image is 8x8 pixels, the model's are 4x4"):
        read_image(write_png(tmp_path / "b.png", 8), cfg)
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(mask_file.with_suffix(".txt").write_text("x") and mask_file.with_suffix(".txt"), cfg)


def test_audio_spans_rates_and_continuation(tmp_path):
    wave = np.sin(np.arange(1500) / 5).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", wave, 8000)
    sf.write(tmp_path / "b.wav", wave, 16000)
    clip = read_clip(tmp_path / "a.wav", AUDIO_CFG)
    assert clip.shape == (1, 1024)
    mask = time_mask("time=0.025-0.05", clip, AUDIO_CFG)
    assert mask.sum() == 1024 - 200 and mask[0, 200:400].sum() == 0
    with pytest.raises(ValueError, match="sample rate 16000 Hz, the model's is 8000 Hz"):
        read_clip(tmp_path / "b.wav", AUDIO_CFG)
    with pytest.raises(ValueError, match="within the clip's 0.128 s"):
        time_mask("time=0.1-0.2", clip, AUDIO_CFG)
    window, keep, head = continuation(tmp_path / "a.wav", 0.032, AUDIO_CFG)     # 256 new samples
    assert keep.sum() == 768 and head.shape == (1, 1500 - 768)
    assert torch.allclose(torch.cat([head, window[:, :768]], -1)[0], torch.from_numpy(wave), atol=1e-4)


def test_points_cuts_and_partial_files(tmp_path):
    gen = torch.Generator().manual_seed(0)
    sphere = torch.nn.functional.normalize(torch.randn(400, 3, generator=gen), dim=1)
    assert torch.equal(half_space(sphere, "z", ">", 0.0)[:, 0], (sphere[:, 2] > 0).float())
    seen = seen_from(sphere, 0.0, 0.0)[:, 0] > 0                               # the camera looks from +x
    facing = sphere[:, 0]
    assert bool((facing[seen] > 0).all()) and float(seen[facing > 0.5].float().mean()) > 0.9   # the near cap
    np.save(tmp_path / "part.npy", sphere[:10].numpy())
    cloud, mask = read_partial(tmp_path / "part.npy", {"data": {"n_points": 32, "normalize": "global"}})
    assert torch.equal(cloud[:10], sphere[:10]) and mask[:, 0].tolist() == [1.0] * 10 + [0.0] * 22
    with pytest.raises(ValueError, match="completion needs between 1 and 9"):
        read_partial(tmp_path / "part.npy", {"data": {"n_points": 10, "normalize": "global"}})


def test_completing_a_partial_cloud_keeps_its_points(tmp_path):
    cfg = load_recipe(RECIPES / "primitives.toml", "quick", [*POINTS_TINY, "edit.mask_conditioned=true"])
    run_dir = trainer.train(cfg, tmp_path / "run", device="cpu")
    partial = torch.randn(12, 3)
    np.save(tmp_path / "part.npy", partial.numpy())
    paths = edit_files(run_dir, tmp_path / "out", partial=tmp_path / "part.npy", cond="torus", device="cpu")
    done = np.load([p for p in paths if p.suffix == ".npy"][0])
    expected = unit_sphere(partial.numpy()).apply(partial.numpy())       # the recipe's per-cloud normalisation
    assert done.shape == (32, 3) and np.allclose(done[:12], expected, atol=1e-5)

    whole = torch.randn(32, 3)                                            # a cloud file edited through the CLI
    np.save(tmp_path / "whole.npy", whole.numpy())
    result = CliRunner().invoke(main, ["edit", str(run_dir), "--input", str(tmp_path / "whole.npy"), "--mask",
                                       "keep=plane:z>0", "--cond", "category=torus", "--out", str(tmp_path / "cut")])
    assert result.exit_code == 0, result.output
    edited = np.load(next((tmp_path / "cut").glob("*.npy")))
    normalised = unit_sphere(whole.numpy()).apply(whole.numpy())
    kept = normalised[:, 2] > 0                                           # same order: 32 points, none dropped
    assert edited.shape == (32, 3) and np.allclose(edited[kept], normalised[kept], atol=1e-5)


def test_the_edit_command_writes_files_and_refuses_bad_input_in_one_line(image_run, tmp_path):
    image = write_png(tmp_path / "a.png", 16)
    runner = CliRunner()
    ok = runner.invoke(main, ["edit", str(image_run), "--input", str(image), "--mask", "top-half", "--resample", "2",
                              "--out", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:1] == ["0000_sample.png"]
    guided = runner.invoke(main, ["edit", str(image_run), "--input", str(image), "--mask", "top-half",
                                  "--known-guidance", "2", "--out", str(tmp_path / "guided")])
    assert guided.exit_code == 0, guided.output
    bad = {("--input", str(write_png(tmp_path / "big.png", 32)), "--mask", "top-half"): "the image is 32x32",
           ("--input", str(image), "--strength", "1.5"): "strength must be a number in (0, 1]",
           ("--input", str(image), "--strength", "0"): "strength must be a number in (0, 1]",
           ("--input", str(image), "--mask", "keep=box=0,0,0,0"): "the box must lie within",
           ("--input", str(image), "--mask", str(write_png(tmp_path / "m.png", 8))): "the mask is 8x8 pixels",
           ("--input", str(image), "--mask", "keep=" + str(write_png(tmp_path / "black.png", 16, 0))): "keeps nothing",
           ("--input", str(image)): "nothing to edit",
           ("--input", str(image), "--strength", "0.5", "--known-guidance", "2"): "--known-guidance needs a mask",
           ("--complete", str(image)): "--complete needs a point-cloud model"}
    for args, message in bad.items():
        result = runner.invoke(main, ["edit", str(image_run), *args, "--out", str(tmp_path / "bad")])
        assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "bad").exists()
