"""What a training step minimises: a denoiser's diffusion loss, or an autoencoder's reconstruction loss.

The trainer owns the loop (data order, micro-batches, processes, precision, EMA, checkpoints, the NaN
stop); an objective owns what depends on the kind of model (``cfg["kind"]``): the random draws of a
step, the loss of a micro-batch and the preview picture. Its draws cover the whole global batch and
are keyed by (seed, step), as the trainer's docstring requires, so a resumed run repeats exactly.
"""
from __future__ import annotations

from pathlib import Path

import torch

from multidiff import conditioning
from multidiff import modality as modality_registry
from multidiff.conditioning import batch as condition_batch
from multidiff.engine.conditions import display_labels
from multidiff.engine.data import collate, derived_seed
from multidiff.engine.diffusion import from_config
from multidiff.engine.generate import Run, class_labels, draw
from multidiff.guidance import NULL_LABEL, drop_labels
from multidiff.losses import diffusion_loss
from multidiff.nn.autoencoder import gaussian_kl
from multidiff.nn.stft_loss import multi_resolution_stft

KINDS = ("diffusion", "autoencoder")


def build(cfg: dict, model: torch.nn.Module, train_set):
    """The objective of ``cfg["kind"]`` for ``model`` (unwrapped: not DDP, not compiled)."""
    if cfg.get("kind", "diffusion") == "autoencoder":
        return AutoencoderObjective(cfg, model, train_set)
    return DiffusionObjective(cfg)


class DiffusionObjective:
    """The weighted denoising loss (multidiff.losses) at times and noise drawn per example."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.diffusion = from_config(cfg["diffusion"])

    def draws(self, step: int, device: torch.device) -> dict:
        """Diffusion times, noise and dropped-label flags (per named condition: (B, K)) for every example of
        the global batch of ``step``."""
        dc, batch = self.cfg["diffusion"], self.cfg["train"]["batch_size"]
        gen = torch.Generator(device).manual_seed(derived_seed(self.cfg["train"]["seed"], 2, step))
        t = self.diffusion.weighting.times(self.diffusion.schedule, batch, generator=gen, device=device,
                                           t_min=self.diffusion.t_min)
        noise = torch.randn((batch, *self.cfg["dataset"]["encoded_shape"]), generator=gen, device=device)
        dropped = None
        if conditioning.declared(self.cfg):  # each named condition dropped on its own, at its own rate
            rates = torch.tensor([c["drop"] for c in self.cfg["conditions"].values()], device=device)
            dropped = torch.rand((batch, len(rates)), generator=gen, device=device) < rates
        elif dc["cond_drop"] > 0 and self.cfg["dataset"]["class_names"]:
            dropped = drop_labels(torch.zeros(batch, dtype=torch.long, device=device), dc["cond_drop"],
                                  gen) == NULL_LABEL
        return {"t": t, "noise": noise, "dropped": dropped}

    def loss(self, net, z, labels, mask, draws: dict, rows: slice) -> torch.Tensor:
        """The loss of the micro-batch ``z`` whose rows in the global batch are ``rows``."""
        if isinstance(labels, dict):
            labels = condition_batch.with_dropped(labels, draws["dropped"][rows])
        elif labels is not None and draws["dropped"] is not None:
            labels = torch.where(draws["dropped"][rows], NULL_LABEL, labels)
        d = self.diffusion
        known = z if self.cfg.get("edit", {}).get("mask_conditioned") else None  # multidiff.mask_conditioning
        return diffusion_loss(net, z, schedule=d.schedule, prediction=d.prediction, weighting=d.weighting,
                              cond=labels, mask=mask, t=draws["t"][rows], noise=draws["noise"][rows], known=known)

    def preview(self, path: Path, step: int, modality, model, encoder):
        """``sample.n`` samples balanced over the classes, drawn into the picture ``path``; returns (x, labels)."""
        cfg, s = self.cfg, self.cfg["sample"]
        labels = class_labels(s["n"], cfg)
        x = draw(Run(cfg, step, modality, model, encoder), labels, s["n"], sampler=s["sampler"], steps=s["steps"],
                 guidance=s["guidance"], seed=cfg["train"]["seed"])
        labels = display_labels(labels, cfg)
        modality.preview(x, labels, path, cfg)
        return x, labels


class AutoencoderObjective:
    """Reconstruction error (the modality's ``reconstruction_error``: per data entry for l1/l2) plus
    ``kl_weight`` times the KL divergence of the latent posterior from N(0, I) per data entry (as in
    Rombach et al. 2022, where both terms are sums, so the same weight means the same trade-off). The KL
    only keeps the latent's scale and smoothness in check for the diffusion model; the latents are
    rescaled to unit variance afterwards anyway. With ``stft_weight`` > 0 (1D signals: audio) a
    multi-resolution STFT distance joins the reconstruction term. With a padding mask the input is zeroed
    over the padding and both terms skip it, so nothing there reaches the loss."""

    def __init__(self, cfg: dict, model, train_set):
        self.cfg = cfg
        self.latent_shape = model.latent_shape(tuple(cfg["dataset"]["encoded_shape"]))
        self.examples = train_set
        self.modality = modality_registry.get(cfg["modality"])

    def draws(self, step: int, device: torch.device) -> dict:
        """The posterior's noise for every example of the global batch of ``step``."""
        batch = self.cfg["train"]["batch_size"]
        gen = torch.Generator(device).manual_seed(derived_seed(self.cfg["train"]["seed"], 2, step))
        return {"noise": torch.randn((batch, *self.latent_shape), generator=gen, device=device)}

    def loss(self, net, z, labels, mask, draws: dict, rows: slice) -> torch.Tensor:
        ac = self.cfg["autoencoder"]
        if mask is not None:
            z = z * mask
        z_hat, mean, logvar = net(z, draws["noise"][rows])
        per_entry_kl = gaussian_kl(mean, logvar) / z[0].numel()
        loss = self.modality.reconstruction_error(z_hat, z, ac["reconstruction"], mask) + ac["kl_weight"] * per_entry_kl
        if ac["stft_weight"]:
            loss = loss + ac["stft_weight"] * multi_resolution_stft(z_hat, z, mask)
        return loss.mean()

    @torch.no_grad()
    def preview(self, path: Path, step: int, modality, model, encoder):
        """The first ``sample.n`` training examples, then their reconstructions (from the latent means),
        drawn into the picture ``path``; returns (those decoded examples, None)."""
        n = min(self.cfg["sample"]["n"], len(self.examples))
        batch = collate([self.examples[i] for i in range(n)])
        device = next(model.parameters()).device
        z, _ = encoder.encode(batch["x"].to(device), None)
        z_hat = model.decode(model.encode(z)[0])
        x = encoder.decode(torch.cat([z, z_hat])).cpu()
        modality.preview(x, None, path, self.cfg)
        return x, None
