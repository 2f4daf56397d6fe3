"""The ceiling of a representation: the modality's metrics on real held-out data through the autoencoder.

A latent model's samples can be no better than its autoencoder's reconstructions, so ``multidiff
eval`` reports both; the reconstructions' figures carry the prefix ``autoencoder_``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from multidiff.engine.data import collate

from .encoder import LatentEncoder


def run_autoencoder(run) -> LatentEncoder | None:
    """The autoencoder of a latent run or of an autoencoder run (a ``multidiff.engine.generate.Run``)."""
    if run.cfg.get("kind") == "autoencoder":
        return LatentEncoder(run.encoder, run.model, {}).to(next(run.model.parameters()).device)
    return run.encoder if isinstance(run.encoder, LatentEncoder) else None


def reconstruction_metrics(run, n: int, cache_dir: Path, batch_size: int = 256) -> dict[str, float]:
    """The modality's metrics on ``n`` test examples (a seeded random choice) decoded from their latent
    means, silent over the padding of padded examples; {} for a run without an autoencoder."""
    autoencoder = run_autoencoder(run)
    if autoencoder is None:
        return {}
    test = run.modality.dataset(run.cfg, "test")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n].tolist()
    device = autoencoder.scale.device
    decoded, labels = [], []
    for i in range(0, len(pick), batch_size):
        batch = collate([test[j] for j in pick[i:i + batch_size]])
        mask = batch.get("mask")
        with torch.no_grad():
            z, _ = autoencoder.encode(batch["x"].to(device), None if mask is None else mask.to(device))
            x_hat = autoencoder.decode(z).float().cpu()
        decoded.append(x_hat if mask is None else x_hat * mask)  # a clip ends where the real one does
        labels.append(batch["label"])
    labels = torch.cat(labels)
    metrics = run.modality.evaluate(torch.cat(decoded), labels if bool((labels >= 0).all()) else None, run.cfg,
                                    cache_dir)
    return {f"autoencoder_{k}": float(v) for k, v in metrics.items()}
