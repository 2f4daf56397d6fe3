"""Points end to end through the engine API on the synthetic primitives, and the points evaluation."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from modalities.points import PointsModality
from modalities.points.modality import _draw
from modalities.points.synthetic import PRIMITIVES
from multidiff.engine import generate, trainer
from multidiff.engine.config import RECIPES_DIR as RECIPES
from multidiff.engine.config import load_recipe, with_defaults

TINY = ["train.steps=12", "train.batch_size=8", "train.log_every=4", "train.ckpt_every=12", "data.n_points=48",
        "data.train_per_class=4", "data.test_per_class=4", "model.width=16", "model.depth=1", "model.heads=2",
        "sample.steps=3", "sample.n=4", "eval.n=10"]


def test_train_sample_write_and_evaluate_primitives(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    cfg = load_recipe(RECIPES / "primitives.toml", "quick", TINY)
    run = trainer.train(cfg, tmp_path / "run", device="cpu")
    out = generate.generate(run, 3, cond="torus", seed=0, out_dir=tmp_path / "samples", device="cpu")
    assert out["x"].shape == (3, 48, 3) and torch.isfinite(out["x"]).all()
    assert out["labels"].tolist() == [PRIMITIVES.index("torus")] * 3
    plys = [p for p in out["paths"] if p.suffix == ".ply"]
    assert [p.name for p in plys] == [f"sample_{i:04d}_torus.ply" for i in range(3)]
    for ply, cloud in zip(plys, out["x"]):
        np.testing.assert_array_equal(np.asarray(trimesh.load(ply).vertices, dtype=np.float32), cloud.numpy())
        np.testing.assert_array_equal(np.load(ply.with_suffix(".npy")), cloud.numpy())
    with Image.open(tmp_path / "samples" / "preview.png") as im:
        assert im.size[0] > 100 and im.size[1] > 100
    again = generate.generate(run, 3, cond="torus", seed=0, out_dir=tmp_path / "samples", device="cpu")
    torch.testing.assert_close(again["x"], out["x"])                           # a seed fixes the samples
    assert again["paths"][0].name == "sample_0003_torus.ply"                  # nothing overwritten

    scores = generate.evaluate(run, device="cpu")
    for d in ("cd", "emd"):
        for prefix in ("", "ceiling_"):
            assert scores[f"{prefix}mmd_{d}"] > 0
            assert 0 < scores[f"{prefix}cov_{d}"] <= 1 and 0 <= scores[f"{prefix}1nna_{d}"] <= 1
    assert len(list((tmp_path / "cache" / "points" / "reference").iterdir())) == 1


@pytest.fixture
def primitives_cfg():
    return with_defaults({"modality": "points",
                          "data": {"path": "", "n_points": 32, "train_per_class": 6, "test_per_class": 6, "seed": 1},
                          "eval": {"seed": 0, "emd": True}})


def test_training_clouds_score_exactly_the_reference_and_noise_scores_far_worse(tmp_path, primitives_cfg):
    points = PointsModality()
    train = points.dataset(primitives_cfg, "train")
    labels = torch.arange(5).repeat(2)
    counts = {c: 2 for c in range(5)}
    same_as_reference = train.clouds[_draw(train, counts, 0, "train")]
    real = points.evaluate(same_as_reference, labels.sort().values, primitives_cfg, tmp_path)
    for key in ("mmd_cd", "cov_cd", "1nna_cd", "mmd_emd", "cov_emd", "1nna_emd"):
        assert real[key] == pytest.approx(real[f"ceiling_{key}"])
    noise = 3.0 * torch.randn(10, 32, 3, generator=torch.Generator().manual_seed(0))
    judged = points.evaluate(noise, labels, primitives_cfg, tmp_path)
    assert judged["1nna_cd"] == 1.0 and judged["mmd_emd"] > 2 * real["mmd_emd"]
    with pytest.raises(ValueError, match="needs 7 test clouds of sphere"):
        points.evaluate(noise[:7], torch.zeros(7, dtype=torch.long), primitives_cfg, tmp_path)
