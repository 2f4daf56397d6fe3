"""The waveform autoencoder and audio latent diffusion: frequency kept through a trained tiny
autoencoder, padding never reaching its loss, latent masks, whole utterances drawn at their class's
length or at --seconds, written at the data's loudness without clipping, resume, corrupt files."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from modalities.audio import data
from modalities.audio.autoencoder import WaveformAutoencoder
from modalities.audio.writers import LOG_NAME, PEAK_DBFS, write_wavs
from multidiff.engine import checkpoint, objectives, trainer
from multidiff.engine.config import RECIPES_DIR, load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import draw, generate, load_run
from multidiff.engine.lengths import class_lengths
from multidiff.latent import LatentEncoder
from multidiff.modality import Encoder
from multidiff.nn.stft_loss import multi_resolution_stft
from tests.cli_helpers import invoke

train = functools.partial(trainer.train, device="cpu")
RATE = 8000
SYNTHETIC = ["data.source='synthetic'", "data.path=''", "data.num_train=24", "data.num_test=8", "data.length=4096",
             "data.trim_db=0.0", "data.target_db=-20.0", "eval.n=8", "eval.classifier_steps=5"]
TINY_AE = [*SYNTHETIC, "model.channels=8", "model.latent_channels=4", "model.n_fft=32", "model.hop=8", "model.blocks=1",
           "model.dilations=[1]", "train.batch_size=4", "train.log_every=1", "train.warmup_steps=0", "train.lr_schedule=constant", "sample.n=2"]
TINY_LATENT = [*SYNTHETIC, "latent.recipe=''", "latent.cache=false", "model.channels=8", "train.steps=2",
               "train.batch_size=4", "train.warmup_steps=0", "sample.steps=2", "sample.n=4"]


def tones(n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, length) sines of random frequency (200-1000 Hz) and phase, amplitude 0.5."""
    freq = 200 + torch.rand(n, 1, generator=gen) * 800
    phase = torch.rand(n, 1, generator=gen) * 2 * math.pi
    return (0.5 * torch.sin(2 * math.pi * freq * torch.arange(length) / RATE + phase))[:, None]


def peak_bin(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfft(x[:, 0] * torch.hann_window(x.shape[-1])).abs().argmax(-1)


def ae_objective(length: int, net, **loss):
    cfg = {"autoencoder": {"reconstruction": "l1", "kl_weight": 1e-4, "stft_weight": 1.0, **loss},
           "dataset": {"encoded_shape": [1, length]}, "train": {"batch_size": 8, "seed": 0}}
    return objectives.build({**cfg, "kind": "autoencoder", "modality": "audio"}, net, None)


def test_a_trained_tiny_autoencoder_keeps_each_tones_frequency_within_a_bin():
    """100 steps on 256-sample tones: the bins are 31 Hz wide (higher tones need more steps)."""
    torch.manual_seed(0)
    length = 256
    net = WaveformAutoencoder(1, latent_channels=8, channels=8, strides=(2, 4), dilations=(1, 3))
    objective = ae_objective(length, net)
    held_out = tones(32, length, torch.Generator().manual_seed(1))
    with torch.no_grad():
        untrained = net.decode(net.encode(held_out)[0])
    assert (peak_bin(untrained) - peak_bin(held_out)).abs().max() > 1  # the check can fail
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(100):
        loss = objective.loss(net, tones(8, length, gen), None, None, objective.draws(step, torch.device("cpu")),
                              slice(0, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        decoded = net.decode(net.encode(held_out)[0])
    assert (peak_bin(decoded) - peak_bin(held_out)).abs().max() <= 1


def test_padding_never_reaches_the_autoencoder_loss():
    torch.manual_seed(0)
    net = WaveformAutoencoder(1, latent_channels=4, channels=4, strides=(2, 4), dilations=(1,))
    objective = ae_objective(512, net)
    draws = objective.draws(0, torch.device("cpu"))
    x = torch.randn(8, 1, 512) * 0.5
    lengths = torch.tensor([512, 400, 300, 256, 200, 100, 64, 9])
    mask = (torch.arange(512) < lengths[:, None]).float()[:, None]
    loss = objective.loss(net, x, None, mask, draws, slice(0, 8))
    other_padding = torch.where(mask.bool(), x, torch.randn(8, 1, 512) * 3)
    assert torch.equal(objective.loss(net, other_padding, None, mask, draws, slice(0, 8)), loss)
    other_data = torch.where(mask.bool(), x + 0.1, x)
    assert not torch.equal(objective.loss(net, other_data, None, mask, draws, slice(0, 8)), loss)


def test_the_stft_distance_is_zero_on_identical_signals_and_its_convergence_term_is_one_at_double_gain():
    x = tones(4, 1024, torch.Generator().manual_seed(0))
    assert torch.equal(multi_resolution_stft(x, x), torch.zeros(4))
    # ||2S - S|| / ||S|| = 1 at each resolution; the log term lies between 0 and log 2
    d = multi_resolution_stft(2 * x, x)
    assert bool(((d >= 1.0) & (d <= 1.0 + math.log(2) + 1e-5)).all())


def test_a_latent_frame_is_real_where_any_sample_of_its_window_is():
    net = WaveformAutoencoder(1, latent_channels=4, channels=4, strides=(2, 4), dilations=(1,))
    encoder = LatentEncoder(Encoder(), net, {})
    lengths = torch.tensor([64, 63, 9, 8, 1])
    mask = (torch.arange(64) < lengths[:, None]).float()[:, None]
    z, z_mask = encoder.encode(torch.randn(5, 1, 64), mask)
    assert z.shape == (5, 4, 8)
    assert z_mask.sum(-1).flatten().tolist() == [math.ceil(n / 8) for n in lengths.tolist()]


def test_written_clips_come_at_the_data_loudness_and_are_scaled_not_clipped(tmp_path):
    wave = torch.sin(torch.arange(800) * 0.3)
    x = torch.stack([wave * 3.0, wave * 0.01])[:, None]  # one far past full scale, one too quiet
    paths = write_wavs(x, None, tmp_path, RATE, [], lengths=torch.tensor([800, 400]))
    loud, _ = sf.read(paths[0], dtype="float64")
    quiet, _ = sf.read(paths[1], dtype="float64")
    assert len(loud) == 800 and len(quiet) == 400                       # cut to their lengths
    assert np.abs(loud).max() == pytest.approx(10 ** (PEAK_DBFS / 20), abs=1e-4)  # scaled down, not clipped:
    np.testing.assert_allclose(loud / np.abs(loud).max(), wave.numpy() / float(wave.abs().max()), atol=1e-3)
    log = (tmp_path / LOG_NAME).read_text().splitlines()
    assert len(log) == 1 and log[0].startswith(paths[0].name) and "scaled by" in log[0]
    write_wavs(x[1:], None, tmp_path, RATE, [], loudness="rms", target_db=-20.0)
    level, _ = sf.read(sorted(tmp_path.glob("*.wav"))[-1], dtype="float64")
    assert 20 * np.log10(np.sqrt((level ** 2).mean())) == pytest.approx(-20.0, abs=0.05)  # the data's loudness
    assert len((tmp_path / LOG_NAME).read_text().splitlines()) == 1     # nothing else was limited


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ae") / "ae"
    train(load_recipe(RECIPES_DIR / "spoken_digits_ae.toml", "quick", [*TINY_AE, "train.steps=2"]), run)
    return run


@pytest.fixture(scope="module")
def latent_run(ae_run, tmp_path_factory):
    cfg = load_recipe(RECIPES_DIR / "spoken_digits_latent.toml", "quick",
                      [*TINY_LATENT, f"latent.autoencoder={str(ae_run)!r}"])
    return cfg, train(cfg, tmp_path_factory.mktemp("latent") / "latent")


def test_whole_clips_are_drawn_at_their_class_length_or_at_seconds_and_written_that_long(latent_run, tmp_path):
    cfg, run = latent_run
    saved = checkpoint.read_metadata(run)[0]["dataset"]
    expected = class_lengths(data.load(cfg, "train"))
    assert saved["class_lengths"] == expected and len(set(expected)) > 1
    assert saved["encoded_shape"] == [4, 512]
    result = generate(run, 4, seed=0, out_dir=tmp_path / "own", device="cpu")
    wavs = sorted((tmp_path / "own").glob("*.wav"))
    assert [sf.info(p).frames for p in wavs] == [expected[c] for c in result["labels"].tolist()]
    assert result["x"].shape == (4, 1, 4096)
    result = invoke("sample", run, "--n", 2, "--seconds", 0.6, "--out", tmp_path / "long")
    assert result.exit_code == 0, result.output
    assert [sf.info(p).frames for p in sorted((tmp_path / "long").glob("*.wav"))] == [4800, 4800]  # past data.length


def test_clips_of_several_lengths_share_a_batch_and_end_in_the_silence_they_were_trained_with(latent_run):
    """Past its own end each clip's latent frames are the encoding of silence (as after every shorter
    training clip), all four lengths are drawn in one batch, the result does not depend on the chunking,
    and the clips are silent past their lengths; padding="cut" draws a batch per length instead."""
    run = load_run(latent_run[1])
    lengths = torch.tensor([4096, 1000, 2504, 200])
    calls, latents = [], []
    decode = run.encoder.decode
    run.model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    run.encoder.decode = lambda z: latents.append(z) or decode(z)
    labels = torch.tensor([0, 1, 2, 3])
    x = draw(run, labels, 4, sampler="ddim", steps=3, guidance=1.0, seed=5, lengths=lengths)
    assert calls == [4, 4, 4]                                       # one batch, guidance 1: one call a step
    silence, _ = run.encoder.encode(torch.zeros(1, 1, 4096), torch.zeros(1, 1, 4096))
    frames = -(-lengths // 8)
    for z, end in zip(latents[0], frames.tolist()):
        torch.testing.assert_close(z[:, end:], silence[0, :, end:], rtol=0, atol=1e-6)
        assert not torch.allclose(z[:, :end], silence[0, :, :end], atol=1e-3)
    assert x.shape == (4, 1, 4096) and bool((x[1, :, 1000:] == 0).all()) and bool((x[1, :, 990:1000] != 0).any())
    run.cfg["sample"]["batch_size"] = 3
    torch.testing.assert_close(draw(run, labels, 4, sampler="ddim", steps=3, guidance=1.0, seed=5, lengths=lengths), x)
    calls.clear()
    draw(run, labels, 4, sampler="ddim", steps=3, guidance=1.0, seed=5, lengths=lengths, padding="cut")
    assert calls == [1] * 12                                        # four lengths: four batches


def test_seconds_on_a_fixed_length_mel_run_is_refused(tmp_path):
    cfg = load_recipe(RECIPES_DIR / "tones.toml", "quick", ["train.steps=1", "train.batch_size=4", "model.channels=8",
                                                            "data.num_train=8", "data.num_test=4", "sample.n=2"])
    run = train(cfg, tmp_path / "mel")
    with pytest.raises(UserError, match="fixed length"):
        generate(run, 1, seconds=0.2, device="cpu")


def test_the_waveform_autoencoder_resumes_bit_exact(tmp_path):
    torch.set_num_threads(1)
    steps = lambda n: load_recipe(RECIPES_DIR / "spoken_digits_ae.toml", "quick",  # noqa: E731
                                  [*TINY_AE, f"train.steps={n}", "train.ckpt_every=100"])
    train(steps(2), tmp_path / "resumed")
    train(steps(4), tmp_path / "resumed", resume=True)
    train(steps(4), tmp_path / "straight")
    (a, _, step_a), (b, _, step_b) = (checkpoint.load_weights(tmp_path / r) for r in ("resumed", "straight"))
    assert step_a == step_b == 4
    for part in ("model", "ema"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


def test_a_corrupt_clip_still_stops_the_autoencoder_recipe_naming_the_file(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "1_a_10.wav", np.sin(np.arange(800) * 0.3).astype(np.float32), RATE)
    (folder / "4_a_13.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 8)
    result = invoke("train", "spoken_digits_ae", "--preset", "quick", "--data", folder, "--out", tmp_path / "run")
    assert result.exit_code != 0 and "4_a_13.wav" in result.output
    data._CACHE.clear()


def test_a_sample_with_no_class_takes_the_median_of_the_class_lengths():
    from types import SimpleNamespace

    from multidiff.engine.lengths import sample_lengths

    run = SimpleNamespace(encoder=SimpleNamespace(variable_length=True),
                          cfg={"dataset": {"class_lengths": [100, 300, 200]}})
    got = sample_lengths(run, torch.tensor([-1, 0, 1, 2]), 4)
    assert got.tolist() == [200, 100, 300, 200]         # not the last class's length for -1
    assert sample_lengths(run, None, 2).tolist() == [200, 200]   # nor the first class's for a caption alone


def test_evaluating_named_conditions_draws_each_clip_at_its_class_length(monkeypatch):
    """eval of a digit + speaker run drew every clip at the full length (no end, out of the training
    distribution): the class comes from the categorical condition on the class field; withheld: the median."""
    from types import SimpleNamespace

    from multidiff.conditioning import evaluation
    from multidiff.engine import generate as generate_module

    cfg = {"kind": "diffusion", "data": {"cond_key": "digit"},
           "conditions": {"speaker": {"type": "categorical"}, "digit": {"type": "categorical"}},
           "dataset": {"class_names": ["0", "1", "2"], "class_lengths": [100, 300, 200],
                       "conditions": {"digit": {"values": ["0", "1", "2"]}, "speaker": {"values": ["a", "b"]}}}}
    run = SimpleNamespace(cfg=cfg, encoder=SimpleNamespace(variable_length=True))
    cond = {"speaker": torch.tensor([0, 1, 0, 1]), "digit": torch.tensor([2, 0, 1, 0]),
            "dropped": torch.tensor([[False, False], [False, False], [False, False], [False, True]])}
    drawn = {}
    monkeypatch.setattr(evaluation, "score", lambda run, n, draw, cache: draw(cond))
    monkeypatch.setattr(generate_module, "draw", lambda run, c, n, **kw: drawn.update(kw))
    monkeypatch.setattr(generate_module, "_evaluation_cache", lambda run: None)
    generate_module.score(run, 4, sampler="ddim", steps=2, guidance=1.0, seed=0)
    assert drawn["lengths"].tolist() == [200, 100, 300, 200]   # digit 2, 0, 1, withheld -> median
