"""The spectral (STFT) waveform autoencoder: its framing against torch.stft and exact inversion, a tone's
frequency and level kept after a short training, padding kept out of the loss, its latent masks, and the
recipe switch with its one-line errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from modalities.audio.autoencoder import waveform_autoencoder
from modalities.audio.stft_autoencoder import Frames, SpectralAutoencoder
from multidiff.latent import LatentEncoder
from multidiff.modality import Encoder
from tests.test_audio_autoencoder import ae_objective, peak_bin, tones


@pytest.mark.parametrize("n_fft, hop", [(256, 64), (128, 64), (64, 16)])
def test_the_frames_are_torch_stfts_of_the_padded_clip_and_invert_exactly(n_fft, hop):
    frames = Frames(n_fft, hop)
    x = torch.randn(3, 40 * hop, dtype=torch.float64)
    frames.window = torch.hann_window(n_fft, dtype=torch.float64)
    spectrum = frames.stft(x)
    assert spectrum.shape == (3, n_fft // 2 + 1, 40)                  # one frame per hop
    pad = (n_fft - hop) // 2
    reference = torch.stft(F.pad(x, (pad, pad)), n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64),
                           center=False, return_complex=True)
    torch.testing.assert_close(spectrum, reference)
    torch.testing.assert_close(frames.istft(spectrum), x)           # the first and last samples too


def test_frames_refuse_a_hop_that_does_not_divide_the_window():
    with pytest.raises(ValueError, match="multiple of hop"):
        Frames(256, 96)


def test_a_tiny_spectral_autoencoder_trained_on_tones_gives_back_their_frequencies_and_levels():
    """200 steps on 8 tones of 1,024 samples at levels 1.5 dB apart (a capacity and plumbing check: the
    log-magnitude and phase head, the inverse STFT and the level pass through; the generalisation to unseen
    clips is measured on speech by benchmarks/bench_audio_ae.py)."""
    torch.manual_seed(0)
    length = 1024
    net = SpectralAutoencoder(latent_channels=8, channels=32, n_fft=128, hop=32, dilations=(1, 3), blocks=1)
    objective = ae_objective(length, net)
    x = tones(8, length, torch.Generator().manual_seed(1)) * (2.0 ** (-torch.arange(8.0) / 4))[:, None, None]
    rms = lambda v: v.pow(2).mean((1, 2)).sqrt()  # noqa: E731
    with torch.no_grad():
        untrained = net.decode(net.encode(x)[0])
    assert (peak_bin(untrained) - peak_bin(x)).abs().max() > 1  # the checks can fail
    assert (rms(untrained) / rms(x)).log().abs().max() > math.log(2)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for step in range(200):
        loss = objective.loss(net, x, None, None, objective.draws(step, torch.device("cpu")), slice(0, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        decoded = net.decode(net.encode(x)[0])
    assert (peak_bin(decoded) - peak_bin(x)).abs().max() <= 1
    assert (rms(decoded) / rms(x)).log().abs().max() < math.log(10 ** (2 / 20))  # each level within 2 dB


def test_padding_never_reaches_the_spectral_autoencoder_loss():
    torch.manual_seed(0)
    net = SpectralAutoencoder(latent_channels=4, channels=8, n_fft=64, hop=16, dilations=(1,), blocks=1)
    objective = ae_objective(512, net)
    draws = objective.draws(0, torch.device("cpu"))
    x = torch.randn(8, 1, 512) * 0.5
    mask = (torch.arange(512) < torch.tensor([512, 400, 300, 256, 200, 100, 64, 9])[:, None]).float()[:, None]
    loss = objective.loss(net, x, None, mask, draws, slice(0, 8))
    other_padding = torch.where(mask.bool(), x, torch.randn(8, 1, 512) * 3)
    assert torch.equal(objective.loss(net, other_padding, None, mask, draws, slice(0, 8)), loss)
    assert not torch.equal(objective.loss(net, torch.where(mask.bool(), x + 0.1, x), None, mask, draws, slice(0, 8)),
                           loss)


def test_a_spectral_latent_frame_is_real_where_any_sample_of_its_hop_is():
    net = SpectralAutoencoder(latent_channels=4, channels=8, n_fft=32, hop=8, dilations=(1,), blocks=1)
    lengths = torch.tensor([64, 63, 9, 8, 1])
    mask = (torch.arange(64) < lengths[:, None]).float()[:, None]
    z, z_mask = LatentEncoder(Encoder(), net, {}).encode(torch.randn(5, 1, 64), mask)
    assert z.shape == (5, 4, 8)
    assert z_mask.sum(-1).flatten().tolist() == [math.ceil(n / 8) for n in lengths.tolist()]


def test_the_recipe_picks_the_architecture_and_names_a_bad_one_or_a_bad_length():
    spectral = {"model": {"architecture": "spectral", "channels": 8, "hop": 64}}
    assert isinstance(waveform_autoencoder(spectral, (1, 8192)), SpectralAutoencoder)
    with pytest.raises(ValueError, match="unknown model.architecture 'mel'"):
        waveform_autoencoder({"model": {"architecture": "mel"}}, (1, 8192))
    with pytest.raises(ValueError, match=r"multiple of 64 \(model.hop 64\)"):
        waveform_autoencoder(spectral, (1, 8032))
