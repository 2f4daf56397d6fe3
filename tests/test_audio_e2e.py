"""Audio end to end through the engine API on the synthetic tones, and the audio evaluation."""
from __future__ import annotations


import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from modalities.audio import AudioModality, data
from modalities.audio.synthetic import CLASS_NAMES
from multidiff.engine import generate, trainer
from multidiff.engine.config import RECIPES_DIR as RECIPES
from multidiff.engine.config import load_recipe, with_defaults

TINY = ["train.steps=12", "train.batch_size=8", "train.log_every=4", "train.ckpt_every=12", "model.channels=16",
        "data.num_train=32", "data.num_test=8", "encoder.griffin_lim_iters=4", "sample.steps=3", "sample.n=4"]


def test_train_then_sample_class_conditional_tones(tmp_path):
    cfg = load_recipe(RECIPES / "tones.toml", "quick", TINY)
    run = trainer.train(cfg, tmp_path / "run")
    out = generate.generate(run, 4, cond="rising_chirp", seed=0, out_dir=tmp_path / "samples")
    assert out["x"].shape == (4, 1, 4096) and torch.isfinite(out["x"]).all()
    assert out["labels"].tolist() == [CLASS_NAMES.index("rising_chirp")] * 4
    wavs = [p for p in out["paths"] if p.suffix == ".wav"]
    assert [p.name for p in wavs] == [f"{i:04d}_rising_chirp.wav" for i in range(4)]
    for path, clip in zip(wavs, out["x"]):
        info = sf.info(str(path))
        assert (info.samplerate, info.subtype, info.frames, info.channels) == (8000, "PCM_16", 4096, 1)
        written, _ = sf.read(str(path), dtype="float32")
        level = clip[0].pow(2).mean().sqrt()  # written at the data's loudness (tones: -20 dB RMS), unclipped
        np.testing.assert_allclose(written, (clip[0] * 10 ** (-20 / 20) / level).numpy(), atol=1 / 32767)
    with Image.open(tmp_path / "samples" / "preview.png") as im:
        assert im.size[0] > 100 and im.size[1] > 100
    again = generate.generate(run, 4, cond="rising_chirp", seed=0, out_dir=tmp_path / "samples")
    torch.testing.assert_close(again["x"], out["x"])  # a seed fixes the samples
    assert [p.name for p in again["paths"] if p.suffix == ".wav"][0] == "0004_rising_chirp.wav"  # nothing overwritten


@pytest.fixture
def tones_cfg():
    return with_defaults({"modality": "audio",
                          "data": {"source": "synthetic", "num_train": 64, "num_test": 80, "seed": 5,
                                   "sample_rate": 8000, "length": 4096, "loudness": "rms", "target_db": -20.0},
                          "encoder": {"griffin_lim_iters": 16}, "eval": {"classifier_steps": 120}})


def test_real_held_out_clips_score_the_ceiling_and_noise_scores_far_below(tmp_path, tones_cfg):
    audio = AudioModality()
    test = data.load(tones_cfg, "test")
    real = audio.evaluate(test.x, test.labels, tones_cfg, tmp_path)
    assert real["classifier_accuracy"] == real["ceiling_classifier_accuracy"] > 0.75  # chance is 0.25
    # trained on decoded clips too, the judge hears a tone through mel and Griffin-Lim as well as a real one
    assert real["ceiling_decoded_classifier_accuracy"] >= real["ceiling_classifier_accuracy"] - 0.05
    assert real["frechet_distance"] == pytest.approx(0.0, abs=1e-3)  # a set against itself
    cached = list(tmp_path.glob("audio_classifier-*.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    noise = 0.1 * torch.randn(len(test), 1, 4096, generator=torch.Generator().manual_seed(0))
    judged = audio.evaluate(noise, test.labels, tones_cfg, tmp_path)
    assert cached[0].stat().st_mtime_ns == stamp  # the kept classifier was reused, not retrained
    assert judged["ceiling_classifier_accuracy"] == real["ceiling_classifier_accuracy"]
    assert judged["frechet_distance"] > 10 * judged["ceiling_frechet_distance"]
    assert judged["classifier_accuracy"] < 0.5
    # through the waveform encoder (a gain and its inverse) the decoded ceiling is the real one
    waveform_cfg = {**tones_cfg, "encoder": {**tones_cfg["encoder"], "representation": "waveform"}}
    waveform = audio.evaluate(noise, None, waveform_cfg, tmp_path)
    assert waveform["ceiling_decoded_classifier_accuracy"] == pytest.approx(waveform["ceiling_classifier_accuracy"])
    assert waveform["ceiling_decoded_frechet_distance"] == pytest.approx(waveform["ceiling_frechet_distance"],
                                                                         rel=1e-3)
    assert "classifier_accuracy" not in waveform  # no classes were asked for


def test_evaluation_refuses_clips_of_the_wrong_length(tmp_path, tones_cfg):
    with pytest.raises(ValueError, match="shape"):
        AudioModality().evaluate(torch.zeros(4, 1, 2048), None, tones_cfg, tmp_path)
