"""Latent diffusion: the autoencoder network and loss, the latent encoder and its scale, self-describing
latent checkpoints, the encoded-set cache, resume of the autoencoder stage, end to end on synthetic shapes."""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from multidiff.cli import main
from multidiff.engine import checkpoint, objectives, trainer
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import evaluate, generate, load_run
from multidiff.latent import LatentEncoder, encoded_training_set, run_encoder
from multidiff.modality import Encoder
from multidiff.nn.autoencoder import ConvAutoencoder, gaussian_kl
from modalities.image import ImageModality
from modalities.image.data import image_dataset

train = functools.partial(trainer.train, device="cpu")
ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = ["data.resolution=16", "data.n_train=64", "data.n_test=64", "eval.n=32", "eval.classifier_steps=5",
             "train.batch_size=16", "train.log_every=1", "train.lr_schedule=constant", "train.warmup_steps=0"]
TINY_AE = [*TINY_DATA, "model.channels=8", "sample.n=4"]
TINY_LATENT = [*TINY_DATA, "latent.recipe=''", "latent.cache=false", "model.channels=16", "sample.n=4", "sample.steps=2", "train.steps=3"]


def tiny_ae(*overrides):
    return load_recipe(ROOT / "multidiff" / "recipes" / "shapes_ae.toml", "quick", [*TINY_AE, *overrides])


def tiny_latent(autoencoder: Path, *overrides):
    return load_recipe(ROOT / "multidiff" / "recipes" / "shapes_latent.toml", "quick",
                       [*TINY_LATENT, f"latent.autoencoder={str(autoencoder)!r}", *overrides])


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ae") / "shapes_ae"
    train(tiny_ae("train.steps=4"), run)
    return run


@pytest.fixture(scope="module")
def latent_run(ae_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("latent") / "shapes_latent"
    train(tiny_latent(ae_run), run)
    return run


@pytest.mark.parametrize("dims,size", [(1, 32), (2, 16)])
def test_autoencoder_shapes_follow_the_downsampling_factor(dims, size):
    net = ConvAutoencoder(dims, 3, latent_channels=5, channels=8, channel_mult=(1, 2, 2))
    x = torch.randn(2, 3, *([size] * dims))
    mean, logvar = net.encode(x)
    assert net.downsample_factor == 4
    assert mean.shape == logvar.shape == (2, *net.latent_shape(x.shape[1:])) == (2, 5, *([size // 4] * dims))
    assert net.decode(mean).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 4"):
        net.encode(torch.randn(2, 3, *([size + 2] * dims)))


def test_gaussian_kl_matches_torch_distributions():
    mean, logvar = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_kl(mean, logvar), expected)


def test_autoencoder_loss_is_reconstruction_plus_weighted_kl_per_entry():
    cfg = tiny_ae("autoencoder.kl_weight=0.01")
    cfg["dataset"] = {"encoded_shape": [3, 16, 16]}
    net = ConvAutoencoder(2, 3, latent_channels=4, channels=8, channel_mult=(1, 2, 2))
    objective = objectives.build(cfg, net, None)
    draws = objective.draws(step=0, device=torch.device("cpu"))
    x = torch.rand(16, 3, 16, 16) * 2 - 1
    loss = objective.loss(net, x[:8], None, None, draws, slice(8, 16))
    # By hand: sample the posterior with the same noise rows, decode, L1 per pixel, KL per pixel.
    mean, logvar = net.encode(x[:8])
    x_hat = net.decode(mean + (0.5 * logvar).exp() * draws["noise"][8:16])
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, (0.5 * logvar).exp()),
                                           torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    expected = ((x_hat - x[:8]).abs().flatten(1).mean(1) + 0.01 * kl / (3 * 16 * 16)).mean()
    torch.testing.assert_close(loss, expected)


def test_latent_encoder_scale_gives_unit_variance_and_decode_inverts_the_scale(ae_run):
    cfg = tiny_latent(ae_run)
    encoder = run_encoder(ImageModality(), cfg)
    data = image_dataset(cfg, "train")
    encoder.fit(data)
    x = data.images.float() / 127.5 - 1.0
    z, _ = encoder.encode(x)
    assert z.shape == (64, 4, 4, 4)
    torch.testing.assert_close(z.double().std().item(), 1.0, rtol=1e-5, atol=0)
    # decode(encode(x)) is the autoencoder's own reconstruction from the posterior mean: the scale cancels.
    ae = encoder.autoencoder
    torch.testing.assert_close(encoder.decode(z), ae.decode(ae.encode(x)[0]), rtol=1e-5, atol=1e-5)


def test_latent_checkpoint_samples_from_the_run_alone(ae_run, latent_run, tmp_path):
    expected = generate(latent_run, 3, seed=5, device="cpu")["x"]
    # The run records where the autoencoder came from, and its content hash.
    cfg = checkpoint.read_metadata(latent_run)[0]
    record = cfg["dataset"]["autoencoder"]
    assert record["path"] == str(ae_run) and len(record["sha256"]) == 64
    moved = shutil.copytree(latent_run, tmp_path / "moved")
    hidden = shutil.move(ae_run, tmp_path / "hidden")  # the autoencoder run is gone
    try:
        assert torch.equal(generate(moved, 3, seed=5, device="cpu")["x"], expected)
    finally:
        shutil.move(hidden, ae_run)


def test_a_missing_or_wrong_autoencoder_run_is_one_clear_error(latent_run, tmp_path):
    with pytest.raises(UserError, match="autoencoder run not found: .*nowhere"):
        train(tiny_latent(tmp_path / "nowhere"), tmp_path / "run")
    with pytest.raises(UserError, match="is not an autoencoder run"):
        train(tiny_latent(latent_run), tmp_path / "run2")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "nowhere"), "--n", "2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and result.output.count("\n") == 1


def test_sampling_an_autoencoder_run_is_refused(ae_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(ae_run), "--n", "2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "is an autoencoder run" in result.output and result.output.count("\n") == 1


def test_encoded_set_cache_is_used_when_current_and_never_when_stale(ae_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    cfg = tiny_latent(ae_run, "latent.cache=true")
    encoder, data = run_encoder(ImageModality(), cfg), image_dataset(cfg, "train")
    fresh, labels = encoded_training_set(encoder, data)
    assert torch.equal(labels, data.labels)
    files = list((tmp_path / "cache" / "latents").glob("*.safetensors"))
    assert len(files) == 1

    def no_encoding(x):
        raise AssertionError("encoded again although the cache is current")

    with monkeypatch.context() as m:
        m.setattr(encoder, "latent_means", no_encoding)
        assert torch.equal(encoded_training_set(encoder, data)[0], fresh)

    # Other data (another seed): a new file, the latents of the new data.
    other = image_dataset(tiny_latent(ae_run, "data.seed=1"), "train")
    assert torch.equal(encoded_training_set(encoder, other)[0], encoder.latent_means(other.images.float() / 127.5 - 1))
    # Another autoencoder (changed weights and hash): encoded again with the new weights.
    with torch.no_grad():
        next(encoder.autoencoder.parameters()).add_(0.5)
    encoder.record = {**encoder.record, "sha256": "0" * 64}
    changed = encoded_training_set(encoder, data)[0]
    assert not torch.equal(changed, fresh)
    assert torch.equal(changed, encoder.latent_means(data.images.float() / 127.5 - 1))
    # A torn file is encoded again, not read.
    for f in (tmp_path / "cache" / "latents").glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[:50])
    assert torch.equal(encoded_training_set(encoder, data)[0], changed)


def test_cached_and_uncached_latent_training_give_the_same_weights(ae_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    train(tiny_latent(ae_run, "latent.cache=true"), tmp_path / "cached")
    train(tiny_latent(ae_run, "latent.cache=false"), tmp_path / "plain")
    a, b = checkpoint.load_weights(tmp_path / "cached")[0], checkpoint.load_weights(tmp_path / "plain")[0]
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-5, atol=1e-6)


def test_autoencoder_stage_resumes_bit_exact(tmp_path):
    torch.set_num_threads(1)
    train(tiny_ae("train.steps=3", "train.ckpt_every=100"), tmp_path / "resumed")
    train(tiny_ae("train.steps=6", "train.ckpt_every=100"), tmp_path / "resumed", resume=True)
    train(tiny_ae("train.steps=6", "train.ckpt_every=100"), tmp_path / "straight")
    (a, _, step_a), (b, _, step_b) = (checkpoint.load_weights(tmp_path / r) for r in ("resumed", "straight"))
    assert step_a == step_b == 6
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


def test_end_to_end_a_latent_recipe_trains_its_missing_autoencoder_then_samples_and_evaluates(tmp_path):
    ae_recipe = tmp_path / "tiny_ae.toml"
    text = (ROOT / "multidiff" / "recipes" / "shapes_ae.toml").read_text()
    ae_recipe.write_text(text.replace("[presets.quick]", "[presets.unused]").replace(
        "[presets.full]", "[presets.quick]\ntrain = { steps = 3, batch_size = 16 }\nmodel = { channels = 8 }\n"
        "data = { resolution = 16, n_train = 64, n_test = 64 }\neval = { n = 32, classifier_steps = 5 }\n\n[presets.full]"))
    cfg = tiny_latent(tmp_path / "ae", f"latent.recipe={str(ae_recipe)!r}")
    train(cfg, tmp_path / "latent")
    assert checkpoint.read_metadata(tmp_path / "ae")[0]["kind"] == "autoencoder"
    assert (tmp_path / "ae" / "previews").is_dir()
    result = generate(tmp_path / "latent", 4, out_dir=tmp_path / "samples", device="cpu")
    assert result["x"].shape == (4, 3, 16, 16) and all(p.is_file() for p in result["paths"])
    metrics = evaluate(tmp_path / "latent", device="cpu")
    assert {"accuracy_cnn", "frechet_cnn", "autoencoder_accuracy_cnn", "autoencoder_frechet_cnn"} <= metrics.keys()
    ae_metrics = evaluate(tmp_path / "ae", device="cpu")
    assert ae_metrics["autoencoder_frechet_cnn"] == pytest.approx(metrics["autoencoder_frechet_cnn"], rel=1e-6)
    assert "frechet_cnn" not in ae_metrics


def test_load_run_rebuilds_the_latent_encoder_with_its_scale(latent_run):
    run = load_run(latent_run)
    assert isinstance(run.encoder, LatentEncoder) and isinstance(run.encoder.base, Encoder)
    assert run.encoder.scale.item() != 1.0
    assert tuple(run.cfg["dataset"]["encoded_shape"]) == (4, 4, 4)


def test_config_checks_kind_and_latent_keys(tmp_path):
    with pytest.raises(UserError, match="unknown kind 'vae'"):
        tiny_ae("kind=vae")
    with pytest.raises(UserError, match="cannot itself be latent"):
        tiny_ae("latent.autoencoder='runs/x'")
    with pytest.raises(UserError, match="unknown autoencoder.reconstruction"):
        tiny_ae("autoencoder.reconstruction=l3")
    assert Path(tiny_latent(Path("runs/x"))["latent"]["autoencoder"]).is_absolute()


def test_a_run_saved_before_the_latent_keys_existed_still_resumes(tmp_path):
    run = tmp_path / "old"
    cfg = load_recipe("toy2d", "quick", ["model.hidden=8", "model.depth=1", "data.n_train=64", "train.batch_size=16",
                                         "train.steps=2", "sample.steps=2", "sample.n=4"])
    train(cfg, run)
    parts, saved, step = checkpoint.load_weights(run)
    for key in ("kind", "latent", "autoencoder"):
        del saved[key]
    state = torch.load(run / "checkpoints" / checkpoint.STATE_NAME, weights_only=True)
    checkpoint.save(run, step=step, cfg=saved, parts=parts, train_state={k: state[k] for k in ("optimizer", "scaler")})
    cfg["train"]["steps"] = 3
    train(cfg, run, resume=True)
    assert checkpoint.read_metadata(run)[1] == 3
    with pytest.raises(UserError, match="differs from the saved one at kind"):
        train({**cfg, "kind": "autoencoder"}, run, resume=True)
