"""Point-cloud latent diffusion: the set autoencoder (permutation invariance, any number of points),
its losses against brute-force references, the autoencoder stage's resume, and latent runs on the
synthetic primitives: self-describing checkpoints, sampling at any number of points, train -> sample -> eval."""
from __future__ import annotations

import functools
import itertools
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from modalities.points.autoencoder import PointSetAutoencoder, fibonacci_sphere
from modalities.points.metrics import chamfer as reference_chamfer
from modalities.points.metrics import emd_exact
from modalities.points.set_losses import chamfer, matched_emd, reconstruction_error
from multidiff.cli import main
from multidiff.engine import checkpoint, trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import evaluate, generate

train = functools.partial(trainer.train, device="cpu")
RECIPES = Path(__file__).resolve().parents[1] / "multidiff" / "recipes"
TINY_DATA = ["data.path=''", "data.categories=[]", "data.n_points=32", "data.train_per_class=4",
             "data.test_per_class=2", "eval.n=6", "eval.emd=true", "train.batch_size=8", "train.log_every=1",
             "train.lr_schedule=constant", "train.warmup_steps=0", "sample.n=4"]
TINY_AE = [*TINY_DATA, "model.latent_dim=8", "model.width=16", "model.depth=1"]
TINY_LATENT = [*TINY_DATA, "latent.recipe=''", "latent.cache=false", "model.width=16", "model.depth=1",
               "sample.steps=2", "train.steps=3", "train.ema_warmup=0"]


def tiny_ae(*overrides):
    return load_recipe(RECIPES / "modelnet10_chair_ae.toml", "quick", [*TINY_AE, *overrides])


def tiny_latent(autoencoder: Path, *overrides):
    return load_recipe(RECIPES / "modelnet10_chair_latent.toml", "quick",
                       [*TINY_LATENT, f"latent.autoencoder={str(autoencoder)!r}", *overrides])


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("points_ae") / "ae"
    train(tiny_ae("train.steps=3"), run)
    return run


@pytest.fixture(scope="module")
def latent_run(ae_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("points_latent") / "latent"
    train(tiny_latent(ae_run), run)
    return run


def test_encoder_is_permutation_invariant_and_sees_every_point():
    torch.manual_seed(0)
    net = PointSetAutoencoder(50, latent_dim=6, width=16, depth=1)
    x = torch.randn(3, 50, 3)
    mean, logvar = net.encode(x)
    permuted = net.encode(x[:, torch.randperm(50)])
    torch.testing.assert_close(permuted[0], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(permuted[1], logvar, rtol=1e-5, atol=1e-6)
    moved = x.clone()
    moved[:, 7] += 1.0  # one point moved: a different code
    assert not torch.allclose(net.encode(moved)[0], mean, atol=1e-4)


def test_decoder_emits_any_number_of_points_each_from_its_own_base_point():
    torch.manual_seed(0)
    net = PointSetAutoencoder(32, latent_dim=6, width=16, depth=2).eval()
    z = torch.randn(2, 6)
    for n in (1, 7, 32, 1000):
        assert net.decode(z, n).shape == (2, n, 3)
    assert net.decode(z).shape == (2, 32, 3)                         # as many as it was trained on
    torch.testing.assert_close(net.decode(z, 7), net.decode(z, 7))    # eval mode: no random rotation
    # Points never interact (so the cost is linear in n): a point depends on its base point only.
    base = fibonacci_sphere(9).expand(2, 9, 3)
    folded = net.fold(z, base)
    torch.testing.assert_close(net.fold(z, base[:, 2:5]), folded[:, 2:5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.decode(z, 9), folded)


def test_training_may_decode_fewer_points_than_the_clouds_hold():
    torch.manual_seed(0)
    net = PointSetAutoencoder(40, latent_dim=6, width=16, depth=1, train_points=10)
    x_hat, mean, _ = net(torch.randn(2, 40, 3), torch.zeros(2, 6))
    assert x_hat.shape == (2, 10, 3) and net.eval().decode(mean).shape == (2, 40, 3)
    # Training decodes a randomly rotated lattice: two passes differ; eval mode is deterministic.
    net.train()
    assert not torch.equal(net.decode(mean, 10), net.decode(mean, 10))


def test_fibonacci_lattice_lies_on_the_sphere_and_spreads_evenly():
    points = fibonacci_sphere(500)
    torch.testing.assert_close(points.norm(dim=1), torch.ones(500))
    torch.testing.assert_close(points.mean(0), torch.zeros(3), atol=5e-3, rtol=0)  # no pole favoured
    gaps = torch.cdist(points, points).fill_diagonal_(9).amin(1)
    assert gaps.max() / gaps.min() < 2.0  # nearest-neighbour gaps nearly equal everywhere


def test_chamfer_loss_matches_the_evaluation_metric_value_and_gradient():
    torch.manual_seed(0)
    a, b = torch.randn(3, 40, 3, requires_grad=True), torch.randn(3, 25, 3)
    value = chamfer(a, b)
    brute = torch.stack([(torch.stack([((p - b[i]) ** 2).sum(1).min() for p in a[i]]).mean()
                          + torch.stack([((q - a[i]) ** 2).sum(1).min() for q in b[i]]).mean()) for i in range(3)])
    torch.testing.assert_close(value, brute, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(value, reference_chamfer(a, b), rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(value.sum(), a)
    (expected,) = torch.autograd.grad(brute.sum(), a)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)


def test_matched_emd_is_the_best_bijection_over_every_permutation():
    torch.manual_seed(1)
    a, b = torch.randn(2, 6, 3, requires_grad=True), torch.randn(2, 6, 3)
    value = matched_emd(a, b)
    for i in range(2):  # brute force: all 720 bijections
        costs = [torch.stack([(a[i, k] - b[i, p]).norm() for k, p in enumerate(perm)]).mean()
                 for perm in itertools.permutations(range(6))]
        best = torch.stack(costs).min()
        torch.testing.assert_close(value[i], best, rtol=1e-5, atol=1e-6)
        (grad,) = torch.autograd.grad(value[i], a, retain_graph=True)
        (expected,) = torch.autograd.grad(best, a, retain_graph=True)
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)
    x, y = torch.randn(1, 300, 3), torch.randn(1, 300, 3)
    assert matched_emd(x, y).item() == pytest.approx(emd_exact(x[0], y[0]), rel=1e-5)


def test_reconstruction_loss_adds_the_emd_to_the_chamfer_distance():
    a, b = torch.randn(2, 30, 3), torch.randn(2, 30, 3)
    torch.testing.assert_close(reconstruction_error(a, b, "chamfer"), chamfer(a, b))
    # Up to EMD_POINTS points the EMD term matches whole clouds (no subset drawn).
    torch.testing.assert_close(reconstruction_error(a, b, "chamfer_emd"), chamfer(a, b) + matched_emd(a, b))
    with pytest.raises(UserError, match="unknown autoencoder.reconstruction 'l1'; choose one of: chamfer_emd"):
        tiny_ae("autoencoder.reconstruction=l1")


def test_autoencoder_stage_resumes_bit_exact(tmp_path):
    torch.set_num_threads(1)
    common = ("train.ckpt_every=100", "data.n_points=300")  # > EMD_POINTS: random subsets are drawn too
    train(tiny_ae("train.steps=2", *common), tmp_path / "resumed")
    train(tiny_ae("train.steps=4", *common), tmp_path / "resumed", resume=True)
    train(tiny_ae("train.steps=4", *common), tmp_path / "straight")
    (a, _, step_a), (b, _, step_b) = (checkpoint.load_weights(tmp_path / r) for r in ("resumed", "straight"))
    assert step_a == step_b == 4
    for part in ("model", "ema"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


def test_latent_run_samples_from_its_directory_alone_at_any_number_of_points(ae_run, latent_run, tmp_path):
    expected = generate(latent_run, 3, seed=4, device="cpu")["x"]
    assert expected.shape == (3, 32, 3) and torch.isfinite(expected).all()
    assert checkpoint.read_metadata(latent_run)[0]["dataset"]["encoded_shape"] == [8]
    moved = shutil.copytree(latent_run, tmp_path / "moved")
    hidden = shutil.move(ae_run, tmp_path / "hidden")  # the autoencoder run is gone
    try:
        assert torch.equal(generate(moved, 3, seed=4, device="cpu")["x"], expected)
        assert generate(moved, 3, seed=4, device="cpu", points=100)["x"].shape == (3, 100, 3)
        assert torch.equal(generate(moved, 3, seed=4, device="cpu", points=32)["x"], expected)
    finally:
        shutil.move(hidden, ae_run)


def test_a_changed_autoencoder_run_does_not_change_a_trained_latent_run(ae_run, latent_run, tmp_path):
    expected = generate(latent_run, 2, seed=1, device="cpu")["x"]
    changed = shutil.copytree(ae_run, tmp_path / "ae")
    train(tiny_ae("train.steps=5"), changed, resume=True)  # the autoencoder run trains on
    assert torch.equal(generate(latent_run, 2, seed=1, device="cpu")["x"], expected)


def test_missing_wrong_or_fixed_size_autoencoders_are_one_clear_line(latent_run, tmp_path):
    with pytest.raises(UserError, match="autoencoder run not found: .*nowhere"):
        train(tiny_latent(tmp_path / "nowhere"), tmp_path / "run")
    with pytest.raises(UserError, match="is not an autoencoder run"):
        train(tiny_latent(latent_run), tmp_path / "run2")
    result = CliRunner().invoke(main, ["sample", str(latent_run), "--n", "2", "--points", "64",
                                       "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s").glob("*.ply"))) == 2
    plain = load_recipe(RECIPES / "primitives.toml", "quick", ["train.steps=1", "data.n_points=16", "model.width=8",
                                                               "model.depth=1", "model.heads=2", "train.batch_size=4",
                                                               "sample.steps=2", "sample.n=2"])
    train(plain, tmp_path / "plain")
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "plain"), "--n", "2", "--points", "64",
                                       "--out", str(tmp_path / "s2")])
    assert result.exit_code == 1 and "needs a latent point-cloud run" in result.output
    assert result.output.count("\n") == 1


def test_end_to_end_the_latent_recipe_trains_its_autoencoder_then_samples_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    ae_recipe = tmp_path / "tiny_ae.toml"
    text = (RECIPES / "modelnet10_chair_ae.toml").read_text().split("[presets.quick]")[0]
    ae_recipe.write_text(text + "[presets.quick]\n"
                         "data = { path = '', categories = [], n_points = 32, train_per_class = 4, test_per_class = 2 }\n"
                         "model = { latent_dim = 8, width = 16, depth = 1 }\n"
                         "train = { steps = 3, batch_size = 8 }\n")
    cfg = tiny_latent(tmp_path / "ae", f"latent.recipe={str(ae_recipe)!r}", "latent.cache=true")
    train(cfg, tmp_path / "latent")
    assert checkpoint.read_metadata(tmp_path / "ae")[0]["kind"] == "autoencoder"
    result = generate(tmp_path / "latent", 4, out_dir=tmp_path / "samples", device="cpu")
    assert result["x"].shape == (4, 32, 3) and all(p.is_file() for p in result["paths"])
    metrics = evaluate(tmp_path / "latent", device="cpu")
    for name in ("1nna_cd", "autoencoder_1nna_cd", "autoencoder_mmd_emd", "ceiling_1nna_cd"):
        assert 0 <= metrics[name] < 10, name
    ae_metrics = evaluate(tmp_path / "ae", 6, device="cpu")
    assert ae_metrics["autoencoder_1nna_cd"] == pytest.approx(metrics["autoencoder_1nna_cd"])
