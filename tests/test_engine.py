"""The training engine on the toy 2-D modality: EMA, LR schedule, data order, end-to-end training,
gradient accumulation, NaN detection, and the toy modality's own closed forms."""
import functools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from modalities.toy2d import Toy2DModality
from modalities.toy2d.data import load_split, mixture_centres, sample_mixture
from multidiff import modality as registry
from multidiff.engine import checkpoint, trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.data import GlobalBatches
from multidiff.engine.ema import EMA
from multidiff.engine.errors import UserError
from multidiff.engine.generate import evaluate, load_run
from multidiff.engine.trainer import lr_factor

train = functools.partial(trainer.train, device="cpu")  # exact comparisons and forks need the CPU
TINY = ["model.hidden=32", "model.depth=2", "model.time_dim=16", "data.n_train=512", "data.n_test=512",
        "train.batch_size=64", "train.steps=20", "train.warmup_steps=0", "train.log_every=1", "train.ckpt_every=10",
        "train.sample_every=0", "sample.n=32", "sample.steps=8", "eval.n=512"]


def tiny(*overrides, modality="toy2d"):
    return load_recipe("toy2d", "quick", [*TINY, f"modality={modality}", *overrides])


def test_ema_copies_during_warmup_then_averages():
    net = nn.Linear(1, 1, bias=False)
    ema = EMA(net, decay=0.75, warmup=2)
    weights = [1.0, 2.0, 4.0, 8.0]
    expected, shadow = [], None
    for n, w in enumerate(weights, start=1):
        shadow = w if n <= 2 else 0.75 * shadow + 0.25 * w
        expected.append(shadow)
    for n, w in enumerate(weights, start=1):
        net.weight.data.fill_(w)
        ema.update(n)
        assert ema.state_dict()["weight"].item() == pytest.approx(expected[n - 1], rel=1e-7)


def test_lr_warmup_then_cosine_or_constant():
    tc = {"warmup_steps": 10, "steps": 110, "lr_schedule": "cosine"}
    assert lr_factor(0, tc) == pytest.approx(0.1)
    assert lr_factor(9, tc) == pytest.approx(1.0)
    assert lr_factor(10, tc) == pytest.approx(1.0)
    assert lr_factor(60, tc) == pytest.approx(0.5)
    assert lr_factor(35, tc) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(110, tc) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50, {**tc, "lr_schedule": "constant"}) == 1.0


def test_data_order_is_a_function_of_seed_and_step():
    def steps(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    run = steps(GlobalBatches(10, 4, seed=3), 6)  # 2 batches per epoch, 2 examples dropped
    for epoch in range(3):
        seen = run[2 * epoch] + run[2 * epoch + 1]
        assert len(set(seen)) == 8  # no repeats within an epoch
    assert run[:2] != run[2:4]  # a new order each epoch
    assert steps(GlobalBatches(10, 4, seed=3, start=3), 3) == run[3:]
    halves = [steps(GlobalBatches(10, 4, seed=3, rank=r, world=2), 6) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == run
    with pytest.raises(UserError, match="fewer than train.batch_size"):
        GlobalBatches(3, 4, seed=0)


def test_training_end_to_end(tmp_path):
    cfg = tiny("train.steps=300", "train.log_every=50", "train.ckpt_every=100", "train.lr=3e-3")
    run = train(cfg, tmp_path / "run")
    saved = json.loads((run / "config.json").read_text())
    assert saved["dataset"]["shape"] == [2] and saved["dataset"]["class_names"] == [str(c) for c in range(8)]
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 300 // 50
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert losses[-1] < 0.6 * losses[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["steps_per_s"] > 0 and summary["peak_rss_mib"] > 0
    for name in ("loss.png", "previews/step_000300.png"):
        assert (run / name).stat().st_size > 0
    # The checkpoint alone rebuilds the network with its EMA weights and fitted encoder.
    loaded = load_run(run)  # on the CPU
    _, _, step = checkpoint.load_weights(run)
    assert step == 300
    train_set = load_split(cfg["data"], "train")
    assert torch.allclose(loaded.encoder.mean, train_set.points.mean(0), atol=1e-6)
    metrics = evaluate(run, device="cpu")
    # A model that ignored its class would put every class mean at the origin: an error of one radius.
    assert metrics["class_mean_error"] < 0.25 * cfg["data"]["radius"]
    assert json.loads((run / "eval.json").read_text())["frechet"] == pytest.approx(metrics["frechet"])


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    runs = [train(tiny("train.steps=6", f"train.grad_accum={k}", "train.ema_decay=0"), tmp_path / f"accum{k}")
            for k in (1, 4)]
    full, accumulated = (checkpoint.load_weights(r)[0]["model"] for r in runs)
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-5, atol=1e-6)


class NaNAfterSixCalls(Toy2DModality):
    """Toy modality whose network starts returning NaN on its sixth training step."""

    def backbone(self, cfg, shape, num_classes):
        net = super().backbone(cfg, shape, num_classes)
        calls = [0]

        def poison(module, args, out):
            calls[0] += 1
            return out * float("nan") if calls[0] >= 6 else out

        net.register_forward_hook(poison)
        return net


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    registry.register("toy2d_nan", NaNAfterSixCalls)
    with pytest.raises(UserError, match="loss is nan at step 6"):
        train(tiny("train.ckpt_every=2", modality="toy2d_nan"), tmp_path / "run")
    parts, _, step = checkpoint.load_weights(tmp_path / "run")
    assert step == 4
    assert all(torch.isfinite(v).all() for v in parts["model"].values())


def test_toy2d_metric_matches_closed_form(tmp_path):
    cfg = tiny()
    test = load_split(cfg["data"], "test")
    same = Toy2DModality().evaluate(test.points, test.labels, cfg, tmp_path)
    assert same["frechet"] == pytest.approx(0.0, abs=1e-9) and same["class_mean_error"] == pytest.approx(0.0, abs=1e-6)
    # A shift by d moves every mean by d and leaves the covariances: Frechet distance |d|^2.
    shifted = Toy2DModality().evaluate(test.points + torch.tensor([0.3, -0.4]), test.labels, cfg, tmp_path)
    assert shifted["frechet"] == pytest.approx(0.25, rel=1e-6)
    assert shifted["class_mean_error"] == pytest.approx(0.5, rel=1e-5)


def test_mixture_moments_match_closed_form():
    points, labels = sample_mixture(200_000, components=8, radius=2.0, std=0.3, seed=1)
    assert np.abs(points.mean(0)).max() < 0.02
    np.testing.assert_allclose(np.cov(points, rowvar=False), (2.0**2 / 2 + 0.3**2) * np.eye(2), atol=0.03)
    centre_error = [np.linalg.norm(points[labels == k].mean(0) - mixture_centres(8, 2.0)[k]) for k in range(8)]
    assert max(centre_error) < 0.01


def test_point_files_split_and_bad_files(tmp_path):
    table = np.column_stack([np.arange(10.0), -np.arange(10.0), np.arange(10) % 2])
    np.savetxt(tmp_path / "p.csv", table, delimiter=",", header="x,y,label", comments="")
    data = {"path": str(tmp_path / "p.csv"), "conditional": True}
    test = load_split(data, "test")
    assert test.points[:, 0].tolist() == [4.0, 9.0] and test.labels.tolist() == [0, 1]
    assert len(load_split(data, "train")) == 8 and load_split(data, "train").class_names == ["0", "1"]
    (tmp_path / "empty.csv").write_text("x,y\n")
    with pytest.raises(ValueError, match="no points"):
        load_split({**data, "path": str(tmp_path / "empty.csv")}, "train")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_split({**data, "path": str(tmp_path / "nope.npy")}, "train")
    np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        load_split({**data, "path": str(tmp_path / "bad.npy")}, "train")
