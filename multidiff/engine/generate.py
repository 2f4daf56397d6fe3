"""Sampling from a trained run: rebuild the network from a checkpoint alone, draw, decode, write.

The checkpoint's metadata holds the resolved config, including ``cfg["dataset"]`` (data shape,
encoded shape, class names), so nothing else is needed. Samples use the EMA weights when the
run kept an EMA. A seed fixes the samples: the starting noise of sample i is row i of one draw
from that seed, and its later noise (stochastic samplers) comes from a stream keyed by (seed, i), so
the samples do not depend on how ``sample.batch_size`` chunks them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from multidiff import modality as modality_registry
from multidiff import schedules
from multidiff.engine import checkpoint, sampling_options
from multidiff.engine.config import validate_sampler
from multidiff.engine.data import derived_seed
from multidiff.engine.errors import UserError
from multidiff.modality import Encoder, Modality


@dataclass
class Run:
    """A trained network with what sampling needs around it."""
    cfg: dict
    step: int
    modality: Modality
    model: nn.Module
    encoder: Encoder


def build_model(modality: Modality, cfg: dict) -> nn.Module:
    info = cfg["dataset"]
    return modality.backbone(cfg, tuple(info["encoded_shape"]), len(info["class_names"]))


def load_run(run_or_ckpt: str | Path, device: torch.device | str = "cpu") -> Run:
    """The network (EMA weights when present) and encoder of a run directory or checkpoint file."""
    parts, cfg, step = checkpoint.load_weights(run_or_ckpt)
    modality = modality_registry.get(cfg["modality"])
    model = build_model(modality, cfg)
    model.load_state_dict({**parts["model"], **parts["ema"]})
    encoder = modality.encoder(cfg)
    encoder.load_state_dict(parts["encoder"])
    return Run(cfg, step, modality, model.to(device).eval(), encoder.to(device).eval())


def class_labels(n: int, cfg: dict, cond=None) -> torch.Tensor | None:
    """Labels for ``n`` samples: all ``cond`` (a class name or index), else balanced over the
    classes (i mod C); None for a model trained without classes."""
    names = cfg["dataset"]["class_names"]
    if not names:
        if cond is not None:
            raise UserError("this model was trained without classes; drop the condition")
        return None
    if cond is None:
        return torch.arange(n) % len(names)
    text = str(cond)
    if text in names:
        index = names.index(text)
    elif text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
        index = int(text)
    else:
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise UserError(f"unknown class {text!r}; classes: {shown} (or an index 0..{len(names) - 1})")
    return torch.full((n,), index, dtype=torch.long)


@torch.no_grad()
def draw(run: Run, labels: torch.Tensor | None, n: int, *, sampler: str, steps: int, guidance: float,
         seed: int, **options) -> torch.Tensor:
    """``n`` decoded samples (data space) from ``run`` with the given class labels; ``options`` go to
    ``multidiff.sample`` (``sampling_options.options``: placement, eta, s_churn, t_min)."""
    from multidiff.sampling import sample

    cfg, device = run.cfg, next(run.model.parameters()).device
    diffusion = cfg["diffusion"]
    schedule = schedules.get(diffusion["schedule"], **diffusion["schedule_args"])
    shape = tuple(cfg["dataset"]["encoded_shape"])
    options.setdefault("t_min", sampling_options.t_min(cfg))
    noise = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
    chunk = cfg["sample"]["batch_size"]
    out = []
    for i in range(0, n, chunk):
        gen = torch.Generator().manual_seed(derived_seed(seed, 2))
        cond = None if labels is None else labels[i:i + chunk].to(device)
        z = sample(run.model, (len(noise[i:i + chunk]), *shape), schedule=schedule, sampler=sampler, steps=steps,
                   prediction=diffusion["prediction"], cond=cond, guidance_scale=guidance,
                   noise=noise[i:i + chunk].to(device), generator=gen, first_index=i,
                   sigma_data=diffusion["sigma_data"], **options)
        out.append(run.encoder.decode(z.float()).cpu())
    return torch.cat(out)


def generate(run_or_ckpt, n: int, *, sampler: str | None = None, steps: int | None = None,
             guidance: float | None = None, cond=None, seed: int = 0, out_dir: str | Path | None = None,
             device: str | None = None, placement: str | None = None, eta: float | None = None,
             churn: float | None = None) -> dict:
    """Draw ``n`` samples; with ``out_dir``, write them (Modality.write) and a preview PNG.

    Unset sampling options come from the run's ``[sample]`` section (placement "pilot": see
    ``multidiff.engine.sampling_options``). Returns
    ``dict(x=decoded samples, labels=LongTensor or None, paths=written files)``.
    """
    if n < 1:
        raise UserError(f"the number of samples must be at least 1, got {n}")
    run = load_run(run_or_ckpt, device or default_device())
    defaults = run.cfg["sample"]
    sampler = sampler or defaults["sampler"]
    validate_sampler(sampler)
    labels = class_labels(n, run.cfg, cond)
    steps, guidance = steps or defaults["steps"], defaults["guidance"] if guidance is None else guidance
    options = sampling_options.options(run, run_or_ckpt, sampler=sampler, steps=steps, guidance=guidance,
                                       placement=placement, eta=eta, churn=churn)
    x = draw(run, labels, n, sampler=sampler, steps=steps, guidance=guidance, seed=seed, **options)
    paths = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        paths = list(run.modality.write(x, labels, out_dir, run.cfg))
        shown = min(n, defaults["n"])
        paths.append(run.modality.preview(x[:shown], None if labels is None else labels[:shown],
                                          out_dir / "preview.png", run.cfg))
    return {"x": x, "labels": labels, "paths": paths}


def evaluate(run_dir: str | Path, n: int | None = None, device: str | None = None, *, placement: str | None = None,
             eta: float | None = None, churn: float | None = None) -> dict[str, float]:
    """The modality's metrics on ``n`` samples (default ``eval.n``) balanced over the classes,
    drawn with the run's sampling defaults (placement, eta, churn: as in ``generate``); also written to
    RUN/eval.json."""
    run = load_run(run_dir, device or default_device())
    n = n or run.cfg["eval"]["n"]
    labels = class_labels(n, run.cfg)
    s = run.cfg["sample"]
    options = sampling_options.options(run, run_dir, sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"],
                                       placement=placement, eta=eta, churn=churn)
    x = draw(run, labels, n, sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"], seed=0, **options)
    cache_dir = Path(os.environ.get("MULTIDIFF_CACHE", Path.home() / ".cache" / "multidiff")) / run.modality.name
    cache_dir.mkdir(parents=True, exist_ok=True)
    metrics = {k: float(v) for k, v in run.modality.evaluate(x, labels, run.cfg, cache_dir).items()}
    if Path(run_dir).is_dir():
        (Path(run_dir) / "eval.json").write_text(json.dumps({"step": run.step, "n": n, **metrics}, indent=2) + "\n")
    return metrics


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
