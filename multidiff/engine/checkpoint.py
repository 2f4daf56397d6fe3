"""Checkpoints: weights in safetensors, training state in a torch file, both written atomically.

RUN/checkpoints/last.safetensors holds "model.*", "ema.*" and "encoder.*" tensors; its metadata
carries the format tag, the step and the resolved config as JSON, so sampling needs nothing else
(keys added to the defaults since the checkpoint was written read as their defaults).
RUN/checkpoints/last.state.pt holds what only resuming needs: the optimizer, the grad scaler and
the step (the data position, learning rate and every random draw are functions of the step).

Each file is written to a temporary name, flushed to disk and renamed over the old one, so a
crash or a kill leaves either the old checkpoint or the new one, never a torn file; the state it
replaces is kept as prev.state.pt, which matches the weights if a kill falls between the renames.
"""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from multidiff.engine.config import with_defaults
from multidiff.engine.errors import UserError

FORMAT = "multidiff-checkpoint/1"
WEIGHTS_NAME = "last.safetensors"
STATE_NAME = "last.state.pt"
PREVIOUS_STATE_NAME = "prev.state.pt"
PARTS = ("model", "ema", "encoder")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def weights_path(run_or_ckpt: str | Path) -> Path:
    """The weights file of a run directory, or the file itself."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        path = checkpoint_dir(path) / WEIGHTS_NAME
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    return path


def save(run_dir: Path, *, step: int, cfg: dict, parts: dict[str, dict[str, torch.Tensor]], train_state: dict) -> None:
    """Write the weights (``parts``: name -> state dict, names from PARTS) and the training state."""
    tensors = {f"{part}.{k}": v.detach().cpu().contiguous().clone() for part, sd in parts.items() for k, v in sd.items()}
    metadata = {"format": FORMAT, "step": str(step), "config": json.dumps(cfg)}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "step": step, **train_state}, buffer)
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # The previous state file stays as prev.state.pt until the new weights are in place, so a kill
    # between the renames still leaves a state matching the weights on disk.
    tmp = folder / (STATE_NAME + ".tmp")
    _write_synced(tmp, buffer.getvalue())
    if (folder / STATE_NAME).exists():
        os.replace(folder / STATE_NAME, folder / PREVIOUS_STATE_NAME)
    os.replace(tmp, folder / STATE_NAME)
    atomic_write(folder / WEIGHTS_NAME, save_safetensors(tensors, metadata))


def load_weights(run_or_ckpt: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict, int]:
    """(parts, config, step) of a checkpoint; a clear UserError for a truncated or foreign file."""
    path = weights_path(run_or_ckpt)
    data = path.read_bytes()
    try:
        tensors = load_safetensors(data)
        metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path} is not a multidiff checkpoint (no {FORMAT!r} metadata)")
    parts = {part: {} for part in PARTS}
    for key, value in tensors.items():
        part, _, name = key.partition(".")
        if part not in parts:
            raise UserError(f"{path}: unexpected tensor {key!r}")
        parts[part][name] = value
    return parts, with_defaults(json.loads(metadata["config"])), int(metadata["step"])


def read_metadata(run_or_ckpt: str | Path) -> tuple[dict, int, dict[str, int]]:
    """(config, step, number of scalars per part) from a checkpoint's header alone, without its tensors."""
    path = weights_path(run_or_ckpt)
    with open(path, "rb") as f:
        head = f.read(8)
        try:
            header = json.loads(f.read(int.from_bytes(head, "little"))) if len(head) == 8 else None
        except (ValueError, MemoryError, OverflowError):
            header = None
    metadata = header.get("__metadata__") or {} if isinstance(header, dict) else {}
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path} is not a multidiff checkpoint (unreadable header or no {FORMAT!r} metadata)")
    sizes = dict.fromkeys(PARTS, 0)
    for key, info in header.items():
        if key != "__metadata__":
            sizes[key.partition(".")[0]] += math.prod(info["shape"])
    return with_defaults(json.loads(metadata["config"])), int(metadata["step"]), sizes


def load_train_state(run_dir: Path, step: int) -> dict:
    """The training state saved with the weights of ``step`` (last.state.pt, else prev.state.pt)."""
    folder = checkpoint_dir(run_dir)
    found = []
    for path in (folder / STATE_NAME, folder / PREVIOUS_STATE_NAME):
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a torn or foreign file
            raise UserError(f"cannot resume: {path} is unreadable (truncated or corrupt?): {e}") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UserError(f"cannot resume: {path} is not a multidiff training state")
        if state["step"] == step:
            return state
        found.append(f"{path.name} is from step {state['step']}")
    raise UserError(f"cannot resume: no training state in {folder} matches the weights of step {step}"
                    f"{' (' + '; '.join(found) + ')' if found else ''}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one."""
    tmp = path.with_name(path.name + ".tmp")
    _write_synced(tmp, data)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's JSON header (the format: 8-byte length, header)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}
