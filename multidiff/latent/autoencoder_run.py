"""Finding, checking and (when the recipe says how) training the autoencoder run a latent recipe names."""
from __future__ import annotations

import hashlib
from pathlib import Path

from multidiff.engine import checkpoint
from multidiff.engine.errors import UserError
from multidiff.modality import Encoder

from .encoder import LatentEncoder


def is_latent(cfg: dict) -> bool:
    """Whether ``cfg`` trains a diffusion model in an autoencoder's latents (``[latent] autoencoder``)."""
    return cfg.get("kind", "diffusion") == "diffusion" and bool(cfg.get("latent", {}).get("autoencoder"))


def assemble(modality, record: dict) -> LatentEncoder:
    """A latent encoder shaped like the autoencoder run ``record`` describes (weights not loaded)."""
    ae_cfg = record["config"]
    network = modality.autoencoder(ae_cfg, tuple(ae_cfg["dataset"]["encoded_shape"]))
    return LatentEncoder(modality.encoder(ae_cfg), network, record)


def load_autoencoder(modality, cfg: dict) -> LatentEncoder:
    """The latent encoder of the autoencoder run ``cfg["latent"]["autoencoder"]``, its EMA weights loaded."""
    path = Path(cfg["latent"]["autoencoder"])
    if not (checkpoint.checkpoint_dir(path) / checkpoint.WEIGHTS_NAME).is_file() and not path.is_file():
        raise UserError(f"autoencoder run not found: {path} (train it first, or name its recipe in latent.recipe)")
    weights = checkpoint.weights_path(path)
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    parts, ae_cfg, step = checkpoint.load_weights(weights)
    if ae_cfg.get("kind") != "autoencoder":
        raise UserError(f"{path} is not an autoencoder run (its recipe {ae_cfg['name']!r} has kind = "
                        f"{ae_cfg.get('kind', 'diffusion')!r})")
    if ae_cfg["modality"] != cfg["modality"]:
        raise UserError(f"the autoencoder {path} is for the {ae_cfg['modality']} modality, this recipe's is "
                        f"{cfg['modality']}")
    encoder = assemble(modality, {"path": str(path), "sha256": sha256, "step": step, "config": ae_cfg})
    encoder.base.load_state_dict(parts["encoder"])
    encoder.autoencoder.load_state_dict({**parts["model"], **parts["ema"]})
    return encoder


def run_encoder(modality, cfg: dict, saved_cfg: dict | None = None) -> Encoder:
    """The encoder a run trains or samples with: the modality's own, or for a latent recipe the
    autoencoder's. ``cfg`` of a trained run, or ``saved_cfg`` when resuming, records the autoencoder's
    architecture, so only its shape is built here and the weights come from the run's checkpoint;
    a new latent run reads the autoencoder run itself."""
    if not is_latent(cfg):
        return modality.encoder(cfg)
    record = (saved_cfg or cfg).get("dataset", {}).get("autoencoder")
    encoder = assemble(modality, record) if record else load_autoencoder(modality, cfg)
    encoder.cache = cfg["latent"]["cache"]
    return encoder


def train_missing_autoencoder(cfg: dict, device: str | None) -> None:
    """Train the autoencoder of a latent recipe first when its run is missing and ``latent.recipe``
    names the autoencoder's recipe (with the same preset as ``cfg``)."""
    from multidiff.engine.config import load_recipe
    from multidiff.engine.trainer import train

    if not is_latent(cfg) or not cfg["latent"]["recipe"]:
        return
    path = Path(cfg["latent"]["autoencoder"])
    if (checkpoint.checkpoint_dir(path) / checkpoint.WEIGHTS_NAME).is_file() or path.is_file():
        return
    ae_cfg = load_recipe(cfg["latent"]["recipe"], cfg["preset"] or None)
    if ae_cfg["kind"] != "autoencoder":
        raise UserError(f"latent.recipe {cfg['latent']['recipe']!r} is not an autoencoder recipe (kind = "
                        f"{ae_cfg['kind']!r})")
    train(ae_cfg, path, device=device)
