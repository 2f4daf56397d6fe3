"""Checkpoints: weights in safetensors, training state in a torch file, both written atomically.

RUN/checkpoints/last.safetensors holds "model.*", "ema.*" and "encoder.*" tensors; its metadata
carries the format tag, the step and the resolved config as JSON, so sampling needs nothing else,
and the SHA-256 of every tensor's bytes, checked on loading (files written before checksums load
without the check). Weights that are not finite are never saved. Keys added to the defaults since
a checkpoint was written read as their defaults.
RUN/checkpoints/last.state.pt holds what only resuming needs: the optimizer, the grad scaler and
the step (the data position, learning rate and every random draw are functions of the step).

Both files are written to temporary names (unique per process), flushed to disk and only then
renamed over the old ones, so a crash, a kill or a full disk leaves either the old checkpoint or
the new one, never a torn file; the state it replaces is kept as prev.state.pt, which matches the
weights if a kill falls between the renames.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import secrets
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
CHECKSUMS = "sha256"  # metadata key: JSON {tensor name: SHA-256 of its bytes}


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


def save(run_dir: Path, *, step: int, cfg: dict, parts: dict[str, dict[str, torch.Tensor]], train_state: dict,
         sync_directory: bool = True) -> None:
    """Write the weights (``parts``: name -> state dict, names from PARTS) and the training state.

    Refuses (UserError) to save weights that are not finite, and on a failed write (a full disk)
    removes its temporary files and leaves the previous checkpoint as it was.

    ``sync_directory=False`` skips the fsync that makes the renames durable at once, for checkpoints
    a later save supersedes: the files' bytes are synced before they are renamed either way, so a
    power cut can only leave an earlier complete checkpoint (journaling file systems commit renames
    in order within seconds), never a torn or mismatched one.
    """
    folder = checkpoint_dir(run_dir)
    weights = _weights_bytes(folder, step=step, cfg=cfg, parts=parts)
    state = io.BytesIO()  # torch.save into memory, then one write: far faster than many small file writes
    torch.save({"format": FORMAT, "step": step, **train_state}, state)
    temporaries = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        state_tmp = _write_temporary(folder / STATE_NAME, state.getbuffer(), temporaries)
        weights_tmp = _write_temporary(folder / WEIGHTS_NAME, weights, temporaries)
        # Both files are complete on disk before anything is renamed. The previous state file stays
        # as prev.state.pt until the new weights are in place, so a kill between the renames still
        # leaves a state matching the weights on disk.
        if (folder / STATE_NAME).exists():
            os.replace(folder / STATE_NAME, folder / PREVIOUS_STATE_NAME)
        os.replace(state_tmp, folder / STATE_NAME)
        os.replace(weights_tmp, folder / WEIGHTS_NAME)
        if sync_directory:
            _sync_directory(folder)
    except OSError as e:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise UserError(f"cannot save the checkpoint of step {step} in {folder}: {e.strerror or e}; the previous "
                        f"checkpoint (if any) is kept") from None


def remove_temporaries(run_dir: Path) -> None:
    """Delete the temporary files a killed writer left in RUN/checkpoints (call with the run's lock held)."""
    for tmp in checkpoint_dir(run_dir).glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def write_weights(path: Path, *, step: int, cfg: dict, parts: dict[str, dict[str, torch.Tensor]]) -> None:
    """A weights file that sampling reads like last.safetensors (used for best.safetensors), written atomically."""
    atomic_write(Path(path), _weights_bytes(Path(path).parent, step=step, cfg=cfg, parts=parts))


def _weights_bytes(folder: Path, *, step: int, cfg: dict, parts: dict[str, dict[str, torch.Tensor]]) -> bytes:
    """The safetensors bytes of ``parts`` with the step, config and per-tensor checksums as metadata;
    a UserError (nothing written) when a weight is not finite."""
    # One copy each (safetensors refuses tensors that share memory, as tied weights would).
    tensors = {f"{part}.{k}": v.detach().to("cpu", copy=True).contiguous() for part, sd in parts.items()
               for k, v in sd.items()}
    bad = next((key for key, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise UserError(f"the weights are not finite at step {step} ({bad} holds NaN or inf); not saved, the last "
                        f"good checkpoint (if any) stays in {folder}")
    checksums = {key: _digest(v) for key, v in tensors.items()}
    metadata = {"format": FORMAT, "step": str(step), "config": json.dumps(cfg), CHECKSUMS: json.dumps(checksums)}
    return save_safetensors(tensors, metadata)


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
    _verify_checksums(path, tensors, metadata)
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
        except pickle.UnpicklingError:  # its message advises weights_only=False, which would run the file's code
            raise UserError(f"cannot resume: {path} holds Python objects other than tensors and plain values; "
                            f"refusing to unpickle it (not a multidiff training state)") from None
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
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one; on a
    failed write (a full disk) the temporary file is removed and the old file stays."""
    temporaries = []
    try:
        os.replace(_write_temporary(path, data, temporaries), path)
        _sync_directory(path.parent)
    except OSError:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise


def _write_temporary(path: Path, data, temporaries: list[Path]) -> Path:
    """Write ``data`` (bytes-like) to a new temporary file beside ``path``, flushed to disk; its name
    is unique to this process and call, and goes into ``temporaries`` before anything is written."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    temporaries.append(tmp)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _sync_directory(folder: Path) -> None:
    """Make the renames in ``folder`` durable (the files' own bytes were synced before)."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a contiguous CPU tensor's bytes (at about 1.5 GB/s with the CPU's SHA instructions,
    well below the cost of writing and syncing the same bytes)."""
    return hashlib.sha256(tensor.reshape(-1).view(torch.uint8).numpy()).hexdigest()


def _verify_checksums(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Compare every tensor with the checksum saved beside it; checkpoints from before checksums pass."""
    if CHECKSUMS not in metadata:
        return
    expected = json.loads(metadata[CHECKSUMS])
    if expected.keys() != tensors.keys():
        raise UserError(f"{path} is corrupt: its tensors do not match the list saved with their checksums")
    for key, tensor in tensors.items():
        if _digest(tensor.contiguous()) != expected[key]:
            raise UserError(f"{path} is corrupt: the bytes of tensor {key!r} do not match their saved checksum "
                            f"(damaged on disk or in a copy)")


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's JSON header (the format: 8-byte length, header)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}
