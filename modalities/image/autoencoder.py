"""The image autoencoder: a 2D ConvAutoencoder (multidiff.nn.autoencoder) sized by an autoencoder recipe's ``[model]``."""
from __future__ import annotations

from multidiff.nn.autoencoder import ConvAutoencoder

AUTOENCODER_DEFAULTS = {"latent_channels": 4, "channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 1}


def image_autoencoder(cfg: dict, shape) -> ConvAutoencoder:
    """An autoencoder for (C, H, W) images; H and W must halve ``len(model.channel_mult) - 1`` times."""
    if len(shape) != 3:
        raise ValueError(f"the image autoencoder works on (C, H, W) images, got examples of shape {tuple(shape)}")
    m = {**AUTOENCODER_DEFAULTS, **cfg.get("model", {})}
    unknown = set(m) - set(AUTOENCODER_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown [model] key(s) {sorted(unknown)} for an autoencoder; known: "
                         f"{', '.join(AUTOENCODER_DEFAULTS)}")
    factor = 2 ** (len(m["channel_mult"]) - 1)
    if shape[1] % factor or shape[2] % factor:
        raise ValueError(f"images of {shape[1]}x{shape[2]} pixels do not halve {len(m['channel_mult']) - 1} times "
                         f"(model.channel_mult = {m['channel_mult']}); pick a data.resolution divisible by {factor}")
    return ConvAutoencoder(2, shape[0], latent_channels=m["latent_channels"], channels=m["channels"],
                           channel_mult=tuple(m["channel_mult"]), num_res_blocks=m["num_res_blocks"])
