"""Evaluation classifiers, trained once and kept on disk under a hash of what determines them.

Audio and images judge samples with a small classifier trained on the dataset (see
``multidiff.metrics``). Training it takes longer than the evaluation itself, so it is saved as
``CACHE_DIR/NAME-KEY.safetensors``, KEY a hash of everything its weights depend on (the training
data, its preparation, the training settings, a version to bump when the code changes): change
any of them and a new classifier is trained, never a stale one reused.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


def identity(*parts) -> str:
    """A short hash of ``parts``: tensors and arrays by dtype, shape and bytes, anything else by its JSON."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def cached_classifier(build: Callable[[], nn.Module], cache_dir: str | Path, name: str, key: str,
                      train: Callable[[nn.Module], object]) -> nn.Module:
    """The network ``build()`` makes (in eval mode) with the weights saved under (``name``, ``key``)
    in ``cache_dir``, or, when there are none, trained by ``train(net)`` and saved there.

    ``build`` runs with torch's global generator seeded (and restored afterwards), so the initial
    weights, like the rest of training, are fixed: one key, one classifier, whatever ran before.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build()
    path = Path(cache_dir) / f"{name}-{key}.safetensors"
    if path.is_file():
        net.load_state_dict(load_file(str(path)))
        return net.eval()
    train(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(partial))
    partial.replace(path)  # a run killed mid-write leaves no torn file under the real name
    return net.eval()
