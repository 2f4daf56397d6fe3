"""Completion by a latent point run (modalities/points/completion.py): the shape code sampled with
reconstruction guidance (multidiff.sample's ``fit``), the partial kept, the requested size, per-seed
determinism, and the edit command's clear lines. Tiny untrained networks: the guidance must fit the
partial whatever the prior."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import multidiff
from modalities.points.autoencoder import PointSetAutoencoder
from modalities.points.completion import assemble, complete, fitted_codes, one_sided_chamfer, padded
from modalities.points.modality import PointsEncoder
from multidiff import samplers, schedules
from multidiff.analytic import GaussianMixture
from multidiff.cli import main
from multidiff.engine import trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import Run
from multidiff.latent import LatentEncoder
from multidiff.modality import get as modality
from multidiff.nn.vector_denoiser import VectorDenoiser

RECIPES = Path(__file__).resolve().parents[1] / "multidiff" / "recipes"
COSINE = schedules.get("cosine")
complete_fast = functools.partial(complete, sampler="ddim", steps=8)


@pytest.fixture(scope="module")
def run():
    """An untrained latent point run: 8-number codes, a folding decoder, a code denoiser (predicting 0)."""
    torch.manual_seed(0)
    cfg = load_recipe(RECIPES / "modelnet10_chair_latent.toml", "quick", ["data.n_points=64", "sample.batch_size=5"])
    cfg["dataset"] = {"shape": [64, 3], "encoded_shape": [8], "class_names": []}
    autoencoder = PointSetAutoencoder(64, latent_dim=8, width=32, depth=2)
    encoder = LatentEncoder(PointsEncoder("none"), autoencoder, {"path": "untrained"})
    return Run(cfg, 0, modality("points"), VectorDenoiser(8, width=32, depth=1).eval(), encoder.eval())


def partials_of(run, count=6, seed=1):
    """Half-space cuts (z above the median) of shapes the decoder makes from random codes."""
    codes = torch.randn(count, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        shapes = run.encoder.decode(codes, 64)
    return [s[s[:, 2] > s[:, 2].median()] for s in shapes]


def test_guidance_on_a_mixture_pulls_the_samples_to_the_fitted_coordinate():
    mix = GaussianMixture([0.3, 0.7], [[-1.0, -1.5], [1.0, 1.5]], [0.6, 0.6])
    common = dict(schedule=COSINE, sampler="dpmpp_2m", steps=20, prediction="v")

    def fit(x0):
        return (x0[:, 0] + 1.0) ** 2                       # the first coordinate of the smaller mode

    plain = multidiff.sample(mix.model("v", COSINE), (1000, 2), generator=torch.Generator(), **common)
    guided = multidiff.sample(mix.model("v", COSINE), (1000, 2), fit=fit, fit_scale=0.2, generator=torch.Generator(),
                              **common)
    assert float(fit(plain).mean()) > 2.0 and float((plain[:, 0] < 0).float().mean()) < 0.4   # the prior: 30%
    assert float(fit(guided).mean()) < 0.05 and bool((guided[:, 0] < 0).all())
    unscaled = multidiff.sample(mix.model("v", COSINE), (1000, 2), fit=fit, fit_scale=0.0,
                                generator=torch.Generator(), **common)
    assert torch.equal(unscaled, plain)


@pytest.mark.parametrize("sampler", samplers.names())
def test_every_sampler_takes_a_fit(sampler):
    model = GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.5, 0.5]).model("v", COSINE)
    x = multidiff.sample(model, (4, 3), schedule=COSINE, sampler=sampler, steps=4, prediction="v",
                         fit=lambda x0: x0.square().sum(1), fit_scale=0.1, generator=torch.Generator())
    assert x.shape == (4, 3) and torch.isfinite(x).all()


@pytest.mark.parametrize("options, message", [
    ({"fit": 3.0}, "fit must be a function"),
    ({"fit_scale": 1.0}, "pass fit= too"),
    ({"fit": lambda x0: x0.sum(), "fit_scale": -1.0}, "fit_scale must be a finite number >= 0"),
    ({"fit": lambda x0: x0.sum()}, "fit must return one loss per sample"),
])
def test_bad_fit_requests_get_one_clear_line(options, message):
    mix = GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError) as caught:
        multidiff.sample(mix.model("eps", COSINE), (2, 2), schedule=COSINE, steps=3, **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_one_sided_chamfer_and_assembly_against_brute_force():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=gen), torch.randn(11, 3, generator=gen)
    points, weights = padded([a, a[:3]])
    got = one_sided_chamfer(points, weights, torch.stack([b, b]))
    brute = [min(float(((p - q) ** 2).sum()) for q in b) for p in a]
    torch.testing.assert_close(got, torch.tensor([np.mean(brute), np.mean(brute[:3])], dtype=torch.float32))
    done = assemble(a, b, 12)                               # the 5 points of b farthest from a follow a
    far = sorted(range(11), key=lambda j: -min(float(((p - b[j]) ** 2).sum()) for p in a))[:5]
    assert torch.equal(done[:7], a) and {tuple(p.tolist()) for p in done[7:]} == {tuple(b[j].tolist()) for j in far}


def test_completion_keeps_the_partial_has_n_points_and_a_seed_fixes_it(run):
    partials = partials_of(run)
    out = complete_fast(run, partials, 100, seed=3)
    assert out.shape == (6, 100, 3)
    for p, o in zip(partials, out):
        assert torch.equal(o[: len(p)], p)
    # Another batch, the same draws, up to the rounding of a batch's float sums, which strong guidance amplifies.
    again = complete_fast(run, partials[2:4], 100, seed=3, first_index=2)
    torch.testing.assert_close(again, out[2:4], rtol=0, atol=1e-2)
    mild = functools.partial(complete_fast, run, n_points=100, seed=3, fit_scale=1.0)
    torch.testing.assert_close(mild(partials[2:4], first_index=2), mild(partials)[2:4], rtol=0, atol=1e-5)
    assert torch.equal(complete_fast(run, partials, 100, seed=3), out)
    assert not torch.equal(complete_fast(run, partials, 100, seed=4), out)


def test_guidance_fits_the_partial_better_than_unguided_codes(run):
    partials = partials_of(run)
    points, weights = padded(partials)

    @torch.no_grad()
    def fit_of(**options):                          # the one-sided Chamfer from each partial to its decoded shape
        codes = fitted_codes(run, partials, sampler="ddim", steps=8, seed=0, **options)
        return float(one_sided_chamfer(points, weights, run.encoder.decode(codes, 256)).mean())

    unguided, guided, best = fit_of(fit_scale=0.0), fit_of(fit_scale=10.0), fit_of(fit_scale=10.0, best_of=4)
    assert guided < 0.5 * unguided, (guided, unguided)                  # measured 0.017 against 0.112
    assert best <= guided, (best, guided)


def test_completion_refuses_what_it_cannot_do_in_one_line(run):
    with pytest.raises(UserError, match="needs between 1 and 99 points"):
        complete_fast(run, [torch.zeros(100, 3)], 100, seed=0)
    plain = Run(run.cfg, 0, run.modality, run.model, PointsEncoder("none"))
    with pytest.raises(UserError, match="needs a latent point-cloud run"):
        complete_fast(plain, [torch.zeros(10, 3)], 100, seed=0)


@pytest.fixture(scope="module")
def latent_run_dir(tmp_path_factory):
    tiny = ["data.path=''", "data.categories=[]", "data.n_points=32", "data.train_per_class=2",
            "data.test_per_class=1", "train.batch_size=4", "train.steps=2", "train.warmup_steps=0", "sample.n=2"]
    root = tmp_path_factory.mktemp("completion")
    ae = trainer.train(load_recipe(RECIPES / "modelnet10_chair_ae.toml", "quick",
                                   [*tiny, "model.latent_dim=8", "model.width=16", "model.depth=1"]),
                       root / "ae", device="cpu")
    return trainer.train(load_recipe(RECIPES / "modelnet10_chair_latent.toml", "quick",
                                     [*tiny, f"latent.autoencoder={str(ae)!r}", "latent.recipe=''",
                                      "latent.cache=false", "model.width=16", "model.depth=1", "sample.steps=2",
                                      "train.ema_warmup=0"]), root / "latent", device="cpu")


def test_the_edit_command_completes_with_a_latent_run(latent_run_dir, tmp_path):
    partial = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "part.npy", partial.numpy())
    runner = CliRunner()
    ok = runner.invoke(main, ["edit", str(latent_run_dir), "--complete", str(tmp_path / "part.npy"), "--points", "50",
                              "--n", "2", "--best-of", "2", "--out", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    clouds = [np.load(p) for p in sorted((tmp_path / "out").glob("*.npy"))]
    assert len(clouds) == 2 and all(c.shape == (50, 3) and np.allclose(c[:10], partial.numpy()) for c in clouds)
    whole = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "whole.npy", whole.numpy())
    cut = runner.invoke(main, ["edit", str(latent_run_dir), "--input", str(tmp_path / "whole.npy"), "--mask",
                               "keep=plane:z>0", "--out", str(tmp_path / "cut")])
    assert cut.exit_code == 0, cut.output
    done = np.load(next((tmp_path / "cut").glob("*.npy")))
    kept = whole[whole[:, 2] > 0].numpy()
    assert done.shape == (32, 3)
    assert np.allclose(sorted(map(tuple, done[: len(kept)])), sorted(map(tuple, kept)))   # read in any order
    bad = {("--complete", str(tmp_path / "part.npy"), "--resample", "2"): "--resample do not apply",
           ("--complete", str(tmp_path / "part.npy"), "--points", "10"): "needs between 1 and 9 points",
           ("--input", str(tmp_path / "whole.npy"), "--mask", "keep=plane:z>0", "--strength", "0.5"):
               "--strength and --resample do not apply",
           ("--input", str(tmp_path / "whole.npy"), "--strength", "0.5", "--points", "40"):
               "--points and --best-of apply to completions"}
    for args, message in bad.items():
        result = runner.invoke(main, ["edit", str(latent_run_dir), *args, "--out", str(tmp_path / "bad")])
        assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "bad").exists()
