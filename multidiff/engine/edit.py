"""Editing with a trained run: data-space inputs and masks in, edited data-space samples out.

The inputs go through the run's encoder (a data-space mask through ``Encoder.encode`` too, e.g. to mel
frames) and then ``multidiff.sample`` with ``init``/``strength`` or ``known``/``known_mask``. As in
``generate.draw``, a seed fixes the result whatever ``sample.batch_size`` chunks it into (and whatever
number of inputs it is drawn with).
"""
from __future__ import annotations

from pathlib import Path

import torch

from multidiff import conditioning
from multidiff.conditioning import batch as condition_batch
from multidiff.conditioning import request
from multidiff.engine.conditions import display_labels
from multidiff.engine.diffusion import from_config
from multidiff.engine.errors import UserError
from multidiff.engine.generate import Run


def edit_labels(n: int, cfg: dict, cond_index: int | None):
    """The class of every edit: the one asked for, else "no class" (-1), which needs a model trained
    with condition dropout; None for a model without classes. With named conditions (no index): every
    condition withheld."""
    if conditioning.declared(cfg):
        return request.build(n, cfg, [f"{name}=" for name in cfg["conditions"]])
    if not cfg["dataset"]["class_names"]:
        return None
    if cond_index is None and cfg["diffusion"]["cond_drop"] <= 0:
        raise UserError("this model always needs a class (it was trained without condition dropout): pass --cond")
    return torch.full((n,), -1 if cond_index is None else cond_index, dtype=torch.long)


@torch.no_grad()
def edit(run: Run, x: torch.Tensor, *, known_mask: torch.Tensor | None = None, strength: float | None = None,
         resample: int = 1, labels: torch.Tensor | None = None, sampler: str, steps: int, guidance: float,
         seed: int, known_guidance: float = 1.0) -> torch.Tensor:
    """Edited versions of the data-space batch ``x``: variations (``strength``) and/or inpainting
    (``known_mask``, 1 where x is kept, broadcastable to x). Returns decoded samples."""
    if known_mask is None and strength is None:
        raise UserError("nothing to edit: give a mask (what to keep) and/or a strength")
    cfg, device = run.cfg, next(run.model.parameters()).device
    diffusion = from_config(cfg["diffusion"])
    mask = None if known_mask is None else torch.broadcast_to(known_mask.float(), x.shape[:1] + known_mask.shape[1:])
    z, mask_z = run.encoder.encode(x.to(device), None if mask is None else mask.to(device))
    chunk = cfg["sample"]["batch_size"]
    out = []
    for i in range(0, len(z), chunk):
        part = slice(i, i + chunk)
        options = {}
        if strength is not None:
            options.update(init=z[part], strength=strength)
        if mask_z is not None:
            options.update(known=z[part], known_mask=mask_z[part] > 0.5, resample=resample,
                           known_guidance=known_guidance)
        cond = condition_batch.to(condition_batch.take(labels, part), device)
        edited = _sample(run.model, z[part].shape, schedule=diffusion.schedule, sampler=sampler, steps=steps,
                         prediction=diffusion.prediction, cond=cond,
                         guidance_scale=guidance, generator=torch.Generator().manual_seed(seed), first_index=i,
                         **options)
        out.append(run.encoder.decode(edited.float()).cpu())
    return torch.cat(out)


def _sample(*args, **kwargs):
    from multidiff.sampling import sample

    return sample(*args, **kwargs)


def edit_files(run_or_ckpt, out_dir, *, inputs=None, mask: str | None = None, strength: float | None = None,
               resample: int = 1, continue_from=None, seconds: float | None = None, partial=None, n: int = 1,
               cond: str | None = None, sampler: str | None = None, steps: int | None = None, seed: int = 0,
               device: str | None = None, known_guidance: float = 1.0, points: int | None = None,
               best_of: int = 1) -> list[Path]:
    """``multidiff edit``: read the inputs (a file or a folder; a clip to continue; a partial cloud), edit
    each ``n`` times, write the results and a preview to ``out_dir``; returns the written paths.
    A latent point run completes a partial cloud (or the points a mask keeps) through its shape code
    (``modalities.points.completion``) to ``points`` points (default: the model's count), keeping the best
    fit of ``best_of`` draws."""
    from multidiff.editing import check_strength
    from multidiff.engine.generate import default_device, load_run
    from multidiff.latent import is_latent

    if sum(v is not None for v in (inputs, continue_from, partial)) != 1:
        raise UserError("give exactly one of --input, --continue (audio) and --complete (points)")
    if strength is not None:
        check_strength(strength)
    run = load_run(run_or_ckpt, device or default_device())
    name, cfg = run.modality.name, run.cfg
    if name == "points" and is_latent(cfg) and (partial is not None or mask is not None):
        return _complete_files(run, out_dir, inputs=inputs, mask=mask, strength=strength, resample=resample,
                               partial=partial, n=n, cond=cond, sampler=sampler, steps=steps, seed=seed,
                               points=points, best_of=best_of)
    if points is not None or best_of != 1:
        raise UserError("--points and --best-of apply to completions by a latent point-cloud run (with --complete "
                        "or --mask)")
    head = None
    if continue_from is not None:
        if name != "audio" or seconds is None:
            raise UserError("--continue needs an audio model and --seconds")
        from modalities.audio.edit import continuation

        x, keep, head = continuation(Path(continue_from), seconds, cfg)
        x, keep, head = x[None], keep[None], head[None]
    elif partial is not None:
        if name != "points":
            raise UserError("--complete needs a point-cloud model")
        from modalities.points.edit import read_partial

        x, keep = (v[None] for v in read_partial(Path(partial), cfg))
    else:
        x, keep = _read_inputs(run, Path(inputs), mask)
        if keep is None and strength is None:
            raise UserError("nothing to edit: give --mask (what to regenerate) and/or --strength")
    if known_guidance != 1.0 and (keep is None or not getattr(run.model, "mask_conditioned", False)):
        raise UserError("--known-guidance needs a mask (what to keep) and a mask-conditioned model "
                        "(trained with [edit] mask_conditioned = true)")
    x, keep = x.repeat_interleave(n, 0), None if keep is None else keep.repeat_interleave(n, 0)
    labels, chosen = _labels_and_sampler(cfg, len(x), cond, sampler)
    out = edit(run, x, known_mask=keep, strength=strength, resample=resample, labels=labels, sampler=chosen,
               steps=steps or cfg["sample"]["steps"], guidance=cfg["sample"]["guidance"], seed=seed,
               known_guidance=known_guidance)
    if head is not None:
        out = torch.cat([head.repeat_interleave(n, 0), out], dim=-1)
    return _written(run, out, labels, Path(out_dir))


def _written(run: Run, out: torch.Tensor, labels, out_dir: Path) -> list[Path]:
    """Write the edits and a preview of the first ``sample.n`` of them; returns the paths."""
    labels = display_labels(labels, run.cfg)
    paths = list(run.modality.write(out, labels, out_dir, run.cfg))
    shown = min(len(out), run.cfg["sample"]["n"])
    paths.append(run.modality.preview(out[:shown], None if labels is None else labels[:shown],
                                      out_dir / "preview.png", run.cfg))
    return paths


def _labels_and_sampler(cfg: dict, count: int, cond: str | None, sampler: str | None):
    """The class of each of ``count`` edits (the one asked for, else edit_labels') and the checked sampler."""
    from multidiff.engine.config import validate_sampler
    from multidiff.engine.generate import class_labels

    labels = class_labels(count, cfg, cond) if cond is not None else edit_labels(count, cfg, None)
    chosen = sampler or cfg["sample"]["sampler"]
    validate_sampler(chosen)
    return labels, chosen


def _complete_files(run: Run, out_dir, *, inputs, mask, strength, resample, partial, n, cond, sampler, steps, seed,
                    points, best_of) -> list[Path]:
    """Completion by a latent point run: the partial cloud, or each input's points its mask keeps."""
    from modalities.points.completion import complete
    from modalities.points.edit import read_points

    if strength is not None or resample != 1:
        raise UserError("a latent point run completes a cloud through guidance on its whole shape code: --strength "
                        "and --resample do not apply (vary whole clouds with --input and --strength alone)")
    cfg = run.cfg
    total = points or int(cfg["data"]["n_points"])
    if partial is not None:
        partials = [read_points(Path(partial), cfg)]
    else:
        clouds, keeps = _read_inputs(run, Path(inputs), mask)
        partials = [c[k[:, 0] > 0] for c, k in zip(clouds, keeps)]
    partials = [p for p in partials for _ in range(n)]
    labels, chosen = _labels_and_sampler(cfg, len(partials), cond, sampler)
    out = complete(run, partials, total, sampler=chosen, steps=steps or cfg["sample"]["steps"], seed=seed,
                   labels=labels, best_of=best_of)
    return _written(run, out, labels, Path(out_dir))


def _read_inputs(run: Run, inputs: Path, mask: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The examples of a file or a folder of files, and their masks (1 = keep) when a mask is given."""
    if inputs.is_dir():
        files = sorted(p for p in inputs.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise UserError(f"no files in {inputs}")
    elif inputs.is_file():
        files = [inputs]
    else:
        raise FileNotFoundError(f"input not found: {inputs}")
    shape = tuple(run.cfg["dataset"]["shape"])
    xs, keeps = [], []
    for path in files:
        x = run.modality.read_for_edit(path, run.cfg)
        if tuple(x.shape) != shape:
            raise UserError(f"{path}: read as shape {tuple(x.shape)}, the model's data have shape {shape}")
        xs.append(x)
        if mask is not None:
            keep = torch.broadcast_to(run.modality.edit_mask(mask, x, run.cfg), x.shape)
            if not bool(keep.any()):
                raise UserError(f"{path}: the mask {mask!r} keeps nothing (an empty known region)")
            if bool(keep.all()):
                raise UserError(f"{path}: the mask {mask!r} keeps everything: nothing to generate")
            keeps.append(keep)
    return torch.stack(xs), torch.stack(keeps) if keeps else None
