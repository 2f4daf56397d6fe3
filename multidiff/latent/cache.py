"""The training set passed once through a latent encoder, optionally kept on disk between runs.

The file is named by a hash of the autoencoder checkpoint's content hash and of the training
examples themselves (every tensor of every item, so a changed data config or a changed file both
change the name), and holds that key in its metadata as well: a stale file is never read, only
left behind. A file that cannot be read is encoded again and replaced.
"""
from __future__ import annotations

import hashlib
import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from multidiff.cache import cache_dir
from multidiff.engine.data import collate

FORMAT = "multidiff-latents/1"
CHUNK = 256


class EncodedSet(Dataset):
    """Pre-encoded examples: items {"x": latent, "label"} (and "mask", the latent mask, when the source
    items carry padding masks), with the source dataset's class names."""

    def __init__(self, latents: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                 masks: torch.Tensor | None = None):
        self.latents, self.labels, self.class_names, self.masks = latents, labels, class_names, masks

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, i: int) -> dict:
        item = {"x": self.latents[i], "label": self.labels[i]}
        return item if self.masks is None else {**item, "mask": self.masks[i]}

    def __getitems__(self, indices: list[int]) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long)
        items = {"x": self.latents[idx], "label": self.labels[idx]}
        return items if self.masks is None else {**items, "mask": self.masks[idx]}


def dataset_latent_masks(encoder, dataset) -> torch.Tensor | None:
    """The latent masks of every item of ``dataset`` (None when its items carry no padding mask);
    computed from the sample masks alone, so they are never cached."""
    if dataset[0].get("mask") is None:
        return None
    return torch.cat([encoder.latent_mask(batch["mask"]) for batch in _chunks(dataset)])


def _chunks(dataset):
    for start in range(0, len(dataset), CHUNK):
        yield collate([dataset[i] for i in range(start, min(start + CHUNK, len(dataset)))])


def cache_key(encoder, dataset) -> str:
    """A hash of the autoencoder checkpoint and of every tensor of every training example."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "autoencoder": encoder.record["sha256"],
                                   "size": len(dataset)}).encode())
    for batch in _chunks(dataset):
        for name in sorted(batch):
            h.update(name.encode())
            h.update(batch[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def encoded_training_set(encoder, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(unscaled latent means, labels) of every item of ``dataset``, in order, on the CPU; read from and
    written to the cache folder when ``encoder.cache`` is set."""
    path = None
    if encoder.cache:
        key = cache_key(encoder, dataset)
        path = cache_dir("latents", f"{key}.safetensors")
        stored = _read(path, key)
        if stored is not None:
            return stored
    device = encoder.scale.device
    means, labels = [], []
    for batch in _chunks(dataset):
        x = batch["x"] if "mask" not in batch else batch["x"] * batch["mask"]
        means.append(encoder.latent_means(x.to(device)).float().cpu())
        labels.append(batch["label"])
    means, labels = torch.cat(means), torch.cat(labels)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file({"means": means, "labels": labels}, partial, metadata={"format": FORMAT, "key": key})
        partial.replace(path)  # a run killed mid-write leaves no truncated file under the real name
    return means, labels


def _read(path, key: str):
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        if header.get("__metadata__", {}).get("key") != key:
            return None
        tensors = load_file(path)
        return tensors["means"], tensors["labels"]
    except (OSError, ValueError, KeyError, SafetensorError):
        return None
