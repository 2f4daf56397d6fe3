"""Audio encoders (waveform, log-mel + Griffin-Lim) and the audio backbone's shapes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modalities.audio import AudioModality, data
from modalities.audio.encoders import MelEncoder, WaveformEncoder, build_encoder
from multidiff.engine.config import with_defaults

FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"


def synthetic(n_train: int = 24) -> data.AudioClips:
    return data.load({"data": {"source": "synthetic", "num_train": n_train, "num_test": 8, "seed": 1,
                               "sample_rate": 8000, "length": 4096, "loudness": "rms", "target_db": -20.0}}, "train")


def mel_spectral_convergence(enc: MelEncoder, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||M(x) - M(y)||_F / ||M(x)||_F per clip, on mel magnitudes (Sturmel & Daudet's measure)."""
    a, b = enc.mel(x[:, 0]).sqrt(), enc.mel(y[:, 0]).sqrt()
    return (a - b).norm(dim=(1, 2)) / a.norm(dim=(1, 2))


def test_mel_encoding_standardises_the_real_frames():
    clips = synthetic()
    enc = MelEncoder(8000, 4096, n_mels=48)
    enc.fit(clips)
    z, mask = enc.encode(clips.x, clips.masks())
    assert z.shape == (len(clips), 48, 64) and mask.shape == (len(clips), 1, 64)
    real = z[mask.expand_as(z) > 0].double()
    assert float(real.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(real.var(correction=0)) == pytest.approx(1.0, abs=1e-3)
    # frames whose whole window (n_fft = 256 samples, centred) lies in the padding hold silence, at the floor
    silent = (torch.arange(64) * 64 - 128 >= clips.lengths[:, None])[:, None].expand_as(z)
    assert silent.any()
    floor = (torch.tensor(enc.floor).log() - enc.mean) / enc.std
    torch.testing.assert_close(z[silent], torch.full_like(z[silent], float(floor)))


def test_frame_mask_marks_the_frames_centred_on_real_samples():
    enc = MelEncoder(8000, 4096, hop_length=64, n_mels=48)
    lengths = torch.tensor([1, 64, 65, 1000, 4096])
    mask = (torch.arange(4096) < lengths[:, None]).float()[:, None]
    _, frames = enc.encode(torch.zeros(5, 1, 4096), mask)
    # frame k is centred on sample 64 k, which is real when 64 k < length
    assert frames.sum(dim=(1, 2)).tolist() == [float(-(-n // 64)) for n in lengths.tolist()]


def test_mel_then_griffin_lim_keeps_the_spectrogram_close():
    clips = synthetic()
    enc = MelEncoder(8000, 4096, n_mels=48, griffin_lim_iters=64)
    enc.fit(clips)
    x = clips.x[:8]
    y = enc.decode(enc.encode(x)[0])
    assert y.shape == x.shape
    converged = mel_spectral_convergence(enc, x, y)
    # measured on these tones: mean 0.22, worst 0.30 (the mel filters blur a pure tone into a band)
    assert converged.mean() < 0.3 and converged.max() < 0.4
    enc.griffin_lim.n_iter = 1
    one_iteration = mel_spectral_convergence(enc, x, enc.decode(enc.encode(x)[0]))
    assert converged.mean() < 0.8 * one_iteration.mean()  # the iterations do the work


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD not found at {FSDD} (see ../shared/data/README.md)")
def test_mel_round_trip_on_real_speech(tmp_path):
    files = ["1_george_3.wav", "4_jackson_20.wav", "6_nicolas_31.wav", "8_yweweler_44.wav"]
    (tmp_path / "few.csv").write_text("file,digit,index\n" + "\n".join(f"{f},{f[0]},5" for f in files) + "\n")
    clips = data.load({"data": {"path": str(FSDD), "labels_csv": str(tmp_path / "few.csv"), "label_key": "digit",
                                "split_by": "index", "test_range": [0, 4], "sample_rate": 8000, "length": 4096,
                                "trim_db": 30.0, "loudness": "rms", "target_db": -24.0}}, "train")
    enc = MelEncoder(8000, 4096, n_mels=48, griffin_lim_iters=64)
    enc.fit(clips)
    x = clips.x
    # measured on these four: worst 0.13; over FSDD's 300 held-out clips: mean 0.09, worst 0.25
    assert mel_spectral_convergence(enc, x, enc.decode(enc.encode(x)[0])).max() < 0.2


def test_too_many_mels_for_the_fft_is_refused():
    with pytest.raises(ValueError, match="n_mels=64"):
        MelEncoder(8000, 4096, n_fft=256, n_mels=64)  # two filters share their only STFT bins
    with pytest.raises(ValueError, match="hop_length"):
        MelEncoder(8000, 4000, hop_length=64, n_mels=48)


def test_waveform_encoder_is_a_fitted_gain_and_decodes_exactly():
    clips = synthetic()
    enc = WaveformEncoder()
    enc.fit(clips)
    mask = clips.masks()
    z, z_mask = enc.encode(clips.x, mask)
    assert z_mask is mask
    assert float(((z ** 2 * mask).sum() / mask.sum()).sqrt()) == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(enc.decode(z), clips.x)


@pytest.mark.parametrize("representation", ["mel", "waveform"])
def test_encoder_statistics_survive_a_state_dict_round_trip(representation):
    cfg = with_defaults({"modality": "audio", "data": {"sample_rate": 8000, "length": 4096},
                         "encoder": {"representation": representation, "n_mels": 48}})
    clips = synthetic()
    fitted = build_encoder(cfg)
    fitted.fit(clips)
    fresh = build_encoder(cfg)
    fresh.load_state_dict(fitted.state_dict())
    torch.testing.assert_close(fresh.encode(clips.x[:2])[0], fitted.encode(clips.x[:2])[0])
    with pytest.raises(ValueError, match="spectrogram"):
        build_encoder({**cfg, "encoder": {**cfg["encoder"], "representation": "spectrogram"}})


@pytest.mark.parametrize("shape, channel_mult", [
    ((48, 64), [1, 2, 2]), ((48, 32), [1, 2, 2, 2]), ((48, 8), [1, 2]), ((1, 512), [1, 1, 2, 2, 2])])
def test_backbone_maps_each_encoded_shape_to_itself(shape, channel_mult):
    cfg = {"model": {"channels": 16, "channel_mult": channel_mult, "num_res_blocks": 1, "attn_levels": [1]}}
    net = AudioModality().backbone(cfg, shape, num_classes=10)
    x = torch.randn(3, *shape)
    out = net(x, torch.rand(3), torch.tensor([0, 9, -1]))
    assert out.shape == x.shape


def test_backbone_refuses_a_length_it_cannot_halve():
    cfg = {"model": {"channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1}}
    with pytest.raises(ValueError, match="multiple of 4"):
        AudioModality().backbone(cfg, (48, 62), num_classes=0)
