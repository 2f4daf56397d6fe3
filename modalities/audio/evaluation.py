"""Judging generated clips with a class classifier that has heard what the model's decoder produces.

A model that works in a representation (the log-mel spectrogram, decoded by Griffin-Lim) can only
produce what that decoder produces; a judge trained on real clips alone hears a decoded real clip
as something else (on the tones, 40% of decoded real test clips against 100% of real ones). So the
classifier is trained on the real training clips and on the same clips sent through the recipe's
encoder and back (the encoder fitted on the training clips), with random gain and small time shifts,
and the two ceilings, real and decoded, are reported beside each figure.

Reported figures:
    classifier_accuracy                  how often the classifier hears the class each generated clip
                                         was asked for
    frechet_distance                     Frechet distance between generated and held-out real clips,
                                         in the classifier's embedding
    ceiling_classifier_accuracy          the classifier's accuracy on the held-out real clips
    ceiling_frechet_distance             the distance of as many real training clips as there are
                                         generated ones from the same held-out clips
    ceiling_decoded_classifier_accuracy, ceiling_decoded_frechet_distance
                                         the same with the real clips through encoder and decoder: the
                                         best a model working in that representation can score
    pitch_accuracy, ceiling_pitch_accuracy, ceiling_decoded_pitch_accuracy
                                         synthetic tones only: the share of clips whose pYIN pitch
                                         contour is that of their class (see ``pitch.py``)

The classifier is cached (``multidiff.eval_cache``) under a hash of the training clips themselves
and the encoder settings, so any change to the files, the preprocessing or the representation
trains a new one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from multidiff.eval_cache import cached_classifier, identity
from multidiff.metrics import accuracy, fit_classifier, frechet_distance, predict

from . import data, pitch
from .classifier import build_classifier
from .encoders import build_encoder

_CLASSIFIER_VERSION = "clipcnn-3"
GAIN_DB = 6.0                # augmentation: each training clip at a random level within +-6 dB,
SHIFT_S = 0.03               # moved by up to +-30 ms (circularly: the tail of a clip is padding)
NOISE_DBFS = (-70.0, -35.0)  # and over a white noise floor of random level (generated clips hiss)


def augment(x: torch.Tensor, gen: torch.Generator, sample_rate: int) -> torch.Tensor:
    """(B, 1, T) clips, each at a random gain, circularly shifted by a random number of samples
    and over white noise of a random level."""
    n, _, length = x.shape
    gain = 10.0 ** ((torch.rand(n, generator=gen) * 2 - 1) * GAIN_DB / 20)
    reach = int(SHIFT_S * sample_rate)
    shift = torch.randint(-reach, reach + 1, (n,), generator=gen)
    index = (torch.arange(length)[None] - shift[:, None]) % length
    low, high = NOISE_DBFS
    noise_std = 10.0 ** ((low + (high - low) * torch.rand(n, generator=gen)) / 20)
    noise = torch.randn(x.shape, generator=gen) * noise_std[:, None, None]
    return torch.gather(x, 2, index[:, None]) * gain[:, None, None] + noise


@torch.no_grad()
def round_trip(encoder, x: torch.Tensor) -> torch.Tensor:
    """Clips through ``encoder`` and back, as a model working in its space would hand them out."""
    return torch.cat([encoder.decode(encoder.encode(x[i:i + 100])[0]) for i in range(0, len(x), 100)])


def trained_classifier(cfg: dict, train: data.AudioClips, encoder, cache_dir: Path) -> torch.nn.Module:
    """The classifier (``[eval] classifier``) for this training set and representation, from the cache or
    trained now."""
    if not train.class_names:
        raise ValueError("the audio classifier needs a labelled (conditional) dataset")
    steps, kind = cfg["eval"]["classifier_steps"], cfg["eval"]["classifier"]
    key = identity(_CLASSIFIER_VERSION, kind, steps, train.sample_rate, train.class_names, cfg["encoder"],
                   cfg["data"]["length"], train.x, train.labels)

    def fit(net):
        x = torch.cat([train.x, round_trip(encoder, train.x)])
        fit_classifier(net, x, train.labels.repeat(2), steps=steps, batch_size=64, lr=2e-3, seed=0,
                       augment=lambda batch, gen: augment(batch, gen, train.sample_rate))

    return cached_classifier(lambda: build_classifier(kind, train.sample_rate, len(train.class_names)), cache_dir,
                             "audio_classifier", key, fit)


@torch.no_grad()
def _embed(net: torch.nn.Module, x: torch.Tensor):
    return torch.cat([net.embed(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()


def evaluate(x: torch.Tensor, labels: torch.Tensor | None, cfg: dict, cache_dir: Path) -> dict[str, float]:
    train, test = data.load(cfg, "train"), data.load(cfg, "test")
    x = x.detach().float().cpu()
    if x.ndim == 2:
        x = x[:, None]
    if x.shape[1:] != train.x.shape[1:]:
        raise ValueError(f"generated clips have shape {tuple(x.shape[1:])}, the dataset's are {tuple(train.x.shape[1:])}")
    encoder = build_encoder(cfg)
    encoder.fit(train)
    net = trained_classifier(cfg, train, encoder, cache_dir)
    test_emb = _embed(net, test.x)
    decoded_test = round_trip(encoder, test.x)
    reference = train.x[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(x)]]
    results = {
        "frechet_distance": frechet_distance(_embed(net, x), test_emb),
        "ceiling_classifier_accuracy": accuracy(predict(net, test.x), test.labels),
        "ceiling_frechet_distance": frechet_distance(_embed(net, reference), test_emb),
        "ceiling_decoded_classifier_accuracy": accuracy(predict(net, decoded_test), test.labels),
        "ceiling_decoded_frechet_distance": frechet_distance(_embed(net, round_trip(encoder, reference)), test_emb),
    }
    asked = None if labels is None else labels.cpu().long()
    if asked is not None and (asked >= 0).any():
        keep = asked >= 0
        results["classifier_accuracy"] = accuracy(predict(net, x[keep]), asked[keep])
        if cfg["data"]["source"] == "synthetic":
            results["pitch_accuracy"] = pitch.accuracy(x[keep], asked[keep], train.sample_rate)
            results["ceiling_pitch_accuracy"] = pitch.accuracy(test.x, test.labels, train.sample_rate)
            results["ceiling_decoded_pitch_accuracy"] = pitch.accuracy(decoded_test, test.labels, train.sample_rate)
    return results


def classify_field(x: torch.Tensor, field: str, values: list[str], cfg: dict, cache_dir: Path) -> torch.Tensor | None:
    """The value of field ``field`` (e.g. the speaker of a folder named by speaker) that a classifier trained
    as above, on the training clips labelled by that field, hears in each clip; None when the dataset
    does not label its clips by ``field`` with exactly ``values``."""
    if cfg["data"]["source"] == "synthetic":
        return None
    relabelled = {**cfg, "data": {**cfg["data"], "label_key": field, "conditional": True}}
    train = data.load(relabelled, "train")
    if train.class_names != list(values):
        return None
    encoder = build_encoder(relabelled)
    encoder.fit(train)
    x = x.detach().float().cpu()
    net = trained_classifier(relabelled, train, encoder, cache_dir)
    with torch.no_grad():
        return predict(net, x if x.ndim == 3 else x[:, None]).argmax(-1)
