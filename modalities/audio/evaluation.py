"""Judging generated clips with a digit (class) classifier trained on the real training clips.

Reported figures:
    classifier_accuracy        how often the classifier hears the class each generated clip was asked for
    frechet_distance           Frechet distance between generated and held-out real clips, in the
                               classifier's embedding
    real_classifier_accuracy   the classifier's accuracy on the held-out real clips (the ceiling)
    real_frechet_distance      the same distance for as many real training clips as there are generated
                               ones, against the same held-out clips (the ceiling: what real audio scores)
    decoded_classifier_accuracy, decoded_frechet_distance
                               the two ceilings again with the real clips sent through the recipe's
                               encoder and back (fitted on the training clips; for mel that is Griffin-Lim):
                               the best a model working in that representation can score

The classifier is trained once per dataset and kept in ``cache_dir``, named by a hash of the
training clips themselves (so any change to the files or the preprocessing trains a new one).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from multidiff.metrics import accuracy, fit_classifier, frechet_distance, predict

from . import data
from .classifier import ClipClassifier
from .encoders import build_encoder

_CLASSIFIER_VERSION = "clipcnn-2"


def _identity(train: data.AudioClips, steps: int) -> str:
    h = hashlib.sha256()
    h.update(f"{_CLASSIFIER_VERSION}|{steps}|{train.sample_rate}|{train.class_names}".encode())
    h.update(train.x.contiguous().numpy())
    h.update(train.labels.contiguous().numpy())
    return h.hexdigest()[:16]


def trained_classifier(train: data.AudioClips, cache_dir: Path, steps: int) -> ClipClassifier:
    """The classifier for this training set: loaded from ``cache_dir`` or trained and saved there."""
    if not train.class_names:
        raise ValueError("the audio classifier needs a labelled (conditional) dataset")
    net = ClipClassifier(train.sample_rate, len(train.class_names))
    path = Path(cache_dir) / f"audio_classifier_{_identity(train, steps)}.safetensors"
    if path.is_file():
        net.load_state_dict(load_file(str(path)))
        return net.eval()
    fit_classifier(net, train.x, train.labels, steps=steps, batch_size=64, lr=2e-3, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return net


@torch.no_grad()
def _embed(net: ClipClassifier, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net.embed(x[i:i + 256]) for i in range(0, len(x), 256)])


@torch.no_grad()
def _round_trip(encoder, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder.decode(encoder.encode(x[i:i + 100])[0]) for i in range(0, len(x), 100)])


def evaluate(x: torch.Tensor, labels: torch.Tensor | None, cfg: dict, cache_dir: Path) -> dict[str, float]:
    train, test = data.load(cfg, "train"), data.load(cfg, "test")
    x = x.detach().float().cpu()
    if x.ndim == 2:
        x = x[:, None]
    if x.shape[1:] != train.x.shape[1:]:
        raise ValueError(f"generated clips have shape {tuple(x.shape[1:])}, the dataset's are {tuple(train.x.shape[1:])}")
    net = trained_classifier(train, cache_dir, int(cfg.get("eval", {}).get("classifier_steps", 600)))
    test_emb = _embed(net, test.x)
    reference = train.x[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(x)]]
    results = {
        "frechet_distance": frechet_distance(_embed(net, x).numpy(), test_emb.numpy()),
        "real_classifier_accuracy": accuracy(predict(net, test.x), test.labels),
        "real_frechet_distance": frechet_distance(_embed(net, reference).numpy(), test_emb.numpy()),
    }
    encoder = build_encoder(cfg)
    encoder.fit(train)
    results["decoded_classifier_accuracy"] = accuracy(predict(net, _round_trip(encoder, test.x)), test.labels)
    results["decoded_frechet_distance"] = frechet_distance(_embed(net, _round_trip(encoder, reference)).numpy(),
                                                           test_emb.numpy())
    if labels is not None:
        labels = labels.cpu().long()
        asked = labels >= 0
        if asked.any():
            results["classifier_accuracy"] = accuracy(predict(net, x[asked]), labels[asked])
    return results
