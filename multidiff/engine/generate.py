"""Sampling from a trained run: rebuild the network from a checkpoint alone, draw, decode, write.

The checkpoint's metadata holds the resolved config, including ``cfg["dataset"]`` (data shape,
encoded shape, class names), so nothing else is needed. Samples use the EMA weights when the
run kept an EMA. A seed fixes the samples with multidiff.sample's own policy: sample i draws all its
noise from a generator keyed by (seed, i), so ``multidiff sample --seed S --n 4`` gives the first
four samples of ``--n 8``, whatever ``sample.batch_size`` chunks them into, and the same samples as
``multidiff.sample(..., generator=torch.Generator().manual_seed(S))`` on the run's network.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from multidiff import conditioning, mask_conditioning
from multidiff import modality as modality_registry
from multidiff.cache import cache_dir
from multidiff.engine import checkpoint, sampling_options
from multidiff.conditioning import batch as condition_batch
from multidiff.engine.conditions import class_labels, display_labels, guidance_scales
from multidiff.engine.config import apply_override, check_seed, validate, validate_sampler
from multidiff.engine.diffusion import from_config
from multidiff.engine.errors import UserError
from multidiff.engine.lengths import sample_lengths
from multidiff.latent import reconstruction_metrics, run_encoder
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
    """The network a run trains: the denoiser, or the autoencoder of a ``kind = "autoencoder"`` recipe."""
    info = cfg["dataset"]
    shape = tuple(info["encoded_shape"])
    num_classes = 0 if conditioning.declared(cfg) else len(info["class_names"])  # named conditions replace it
    if cfg.get("kind") == "autoencoder":
        return modality.autoencoder(cfg, shape)
    if cfg.get("edit", {}).get("mask_conditioned", False):
        return mask_conditioning.build(modality, cfg, shape, num_classes)
    return modality.backbone(cfg, shape, num_classes)


def load_run(run_or_ckpt: str | Path, device: torch.device | str = "cpu") -> Run:
    """The network (EMA weights when present) and encoder of a run directory or checkpoint file."""
    parts, cfg, step = checkpoint.load_weights(run_or_ckpt)
    modality = modality_registry.get(cfg["modality"])
    model = build_model(modality, cfg)
    encoder = run_encoder(modality, cfg)
    try:
        model.load_state_dict({**parts["model"], **parts["ema"]})
        encoder.load_state_dict(parts["encoder"])
    except RuntimeError as e:  # missing, unexpected or misshapen tensors
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise UserError(f"{checkpoint.weights_path(run_or_ckpt)}: the weights do not fit the network its config "
                        f"describes ({detail})") from None
    return Run(cfg, step, modality, model.to(device).eval(), encoder.to(device).eval())


@torch.no_grad()
def draw(run: Run, labels, n: int, *, sampler: str, steps: int, guidance: float | dict,
         seed: int, progress: bool = False, points: int | None = None, lengths: torch.Tensor | None = None,
         padding: str = "silence", **options) -> torch.Tensor:
    """``n`` decoded samples (data space) from ``run`` with the given class labels (or named conditions), in
    chunks of ``sample.batch_size``; ``progress``: a bar over the network evaluations on stderr; ``points``:
    points per sample of a latent point-cloud run (LatentEncoder.decode), None = as trained; ``options`` go to
    ``multidiff.sample`` (``sampling_options.options``: placement, eta, s_churn, t_min).

    ``lengths`` (multidiff.engine.lengths): each sample's real length along the last axis; the output is
    cut to it and zero-padded to the longest of them and the data's length. With ``padding="silence"``
    every sample is drawn at that common length, and the frames past its own end are kept at the encoding
    of silence (the ``known`` region of ``multidiff.sample``, noised to each step's level): what the network
    saw past the end of every shorter clip in training, so a batch mixes lengths and a clip ends as the
    training clips did. ``padding="cut"`` draws each sample at its own length instead (rounded up to what
    the network takes; consecutive samples of one length share a batch), a context it never saw in
    training when the data were padded."""
    from multidiff.sampling import sample

    if padding not in ("silence", "cut"):
        raise ValueError(f"padding must be 'silence' or 'cut', got {padding!r}")
    cfg, device = run.cfg, next(run.model.parameters()).device
    diffusion = from_config(cfg["diffusion"])
    shape = tuple(cfg["dataset"]["encoded_shape"])
    options.setdefault("t_min", diffusion.t_min)
    chunk = cfg["sample"]["batch_size"]
    longest = None if lengths is None else max(int(lengths.max()), cfg["dataset"]["shape"][-1])
    if lengths is None or padding == "silence":
        batches = [(i, min(chunk, n - i), longest) for i in range(0, n, chunk)]
    else:
        batches = _groups(lengths, chunk)
    silence = None if lengths is None or padding == "cut" else _padding_region(run, lengths, longest, device)
    calls = len(batches) * (2 * steps - 1 if sampler == "heun" else steps)  # see multidiff.samplers (NFE)
    with tqdm(total=calls, disable=not progress, unit="step", desc="sampling", dynamic_ncols=True) as bar:
        model = _Counting(run.model, bar)
        out = []
        for i, size, length in batches:
            rows = slice(i, i + size)
            cond = condition_batch.to(condition_batch.take(labels, rows), device)
            known = {} if silence is None or not bool(silence[1][rows].any()) else \
                {"known": silence[0].expand(size, *silence[0].shape[1:]), "known_mask": silence[1][rows]}
            z = sample(model, (size, *_sized(shape, length, run)), schedule=diffusion.schedule, sampler=sampler,
                       steps=steps, prediction=diffusion.prediction, cond=cond, guidance_scale=guidance,
                       generator=torch.Generator().manual_seed(seed), first_index=i,
                       **known, **options)
            z = z.float()
            x = run.encoder.decode(z) if points is None else run.encoder.decode(z, points)
            out.append(x.cpu()[..., :length])
    if lengths is None:
        return torch.cat(out)
    x = torch.cat([torch.nn.functional.pad(x, (0, longest - x.shape[-1])) for x in out])
    return x * (torch.arange(longest) < lengths[:, None]).to(x.dtype)[:, None] if padding == "silence" else x


def _padding_region(run: Run, lengths: torch.Tensor, longest: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(the encoding of silence (1, *encoded shape), the mask of each sample's frames past its length
    (n, 1, frames)) at the common encoded length of ``longest`` samples."""
    sized = _sized(tuple(run.cfg["dataset"]["encoded_shape"]), longest, run)
    ratio = run.cfg["dataset"]["shape"][-1] // run.cfg["dataset"]["encoded_shape"][-1]
    data_shape = (*run.cfg["dataset"]["shape"][:-1], sized[-1] * ratio)
    z, _ = run.encoder.encode(torch.zeros(1, *data_shape, device=device),
                              torch.zeros(1, *([1] * (len(data_shape) - 1)), data_shape[-1], device=device))
    frames = -(-lengths // ratio)                              # a frame is real where any of its samples is
    past_end = (torch.arange(sized[-1]) >= frames[:, None])[:, None]
    return z.float(), past_end.to(device)


def _groups(lengths: torch.Tensor, chunk: int) -> list[tuple[int, int, int]]:
    """(first index, size, length) of each run of consecutive equal lengths, at most ``chunk`` long."""
    groups, i = [], 0
    while i < len(lengths):
        size = 1
        while i + size < len(lengths) and size < chunk and lengths[i + size] == lengths[i]:
            size += 1
        groups.append((i, size, int(lengths[i])))
        i += size
    return groups


def _sized(shape: tuple, length: int | None, run: Run) -> tuple:
    """The encoded shape of an example ``length`` long: the last axis scaled by the encoder's ratio and
    rounded up to a multiple of the network's ``downsample_factor``."""
    if length is None:
        return shape
    ratio = run.cfg["dataset"]["shape"][-1] // shape[-1]
    multiple = getattr(run.model, "downsample_factor", 1)
    frames = -(-length // ratio)
    return (*shape[:-1], -(-frames // multiple) * multiple)


class _Counting(nn.Module):
    """The network, advancing a progress bar at each call."""

    def __init__(self, model: nn.Module, bar):
        super().__init__()
        self.model, self.bar = model, bar

    def forward(self, *args, **kwargs):
        self.bar.update()
        return self.model(*args, **kwargs)


def generate(run_or_ckpt, n: int, *, sampler: str | None = None, steps: int | None = None,
             guidance=None, cond=None, seed: int = 0, out_dir: str | Path | None = None,
             device: str | None = None, placement: str | None = None, eta: float | None = None,
             churn: float | None = None, prompt: str | None = None, points: int | None = None,
             seconds: float | None = None) -> dict:
    """Draw ``n`` samples; with ``out_dir``, write them (Modality.write) and a preview PNG. ``points``: points
    per sample of a latent point-cloud run, whose decoder emits any number (None: as many as trained on).

    ``cond``: the class ("KEY=VALUE"), or for named conditions one or several "KEY=VALUE" and ``prompt``
    (multidiff.conditioning.request). ``guidance``: a scale, or the ``--guidance`` strings ("2",
    "speaker=1.5"; see multidiff.engine.conditions.guidance_scales).

    ``seconds``: how long each sample is (a run whose encoder decodes any length); unset, a run that
    learned its classes' lengths (multidiff.engine.lengths) draws each sample at its class's.

    Unset sampling options come from the run's ``[sample]`` section (placement "pilot": see
    ``multidiff.engine.sampling_options``). Returns
    ``dict(x=decoded samples, labels=LongTensor or None, lengths=LongTensor or None, paths=written files)``.
    """
    if n < 1:
        raise UserError(f"the number of samples must be at least 1, got {n}")
    check_seed(seed, "seed")
    run = load_run(run_or_ckpt, device or default_device())
    guidance = guidance_scales(guidance, run.cfg)
    if run.cfg.get("kind") == "autoencoder":
        raise UserError(f"{run_or_ckpt} is an autoencoder run: it has nothing to sample; train a latent recipe on it "
                        f"([latent] autoencoder = \"{run_or_ckpt}\")")
    if points is not None and not getattr(getattr(run.encoder, "autoencoder", None), "emits_any_size", False):
        raise UserError(f"{run_or_ckpt} decodes to a fixed size: a number of points needs a latent point-cloud run")
    if points is not None and points < 1:
        raise UserError(f"the number of points must be at least 1, got {points}")
    defaults = run.cfg["sample"]
    sampler = sampler or defaults["sampler"]
    validate_sampler(sampler)
    cond = class_labels(n, run.cfg, cond, prompt)
    labels = display_labels(cond, run.cfg)
    length = None if seconds is None else _length_of(run, seconds)
    lengths = sample_lengths(run, labels, n, length)
    if out_dir is not None:
        out_dir = _writable_folder(Path(out_dir))
    steps, guidance = steps or defaults["steps"], defaults["guidance"] if guidance is None else guidance
    options = sampling_options.options(run, run_or_ckpt, sampler=sampler, steps=steps, guidance=guidance,
                                       placement=placement, eta=eta, churn=churn)
    x = draw(run, cond, n, sampler=sampler, steps=steps, guidance=guidance, seed=seed, progress=True, points=points,
             lengths=lengths, **options)
    paths = []
    if out_dir is not None:
        shown = min(n, defaults["n"])
        with _removed_on_failure(out_dir):
            given = {} if lengths is None else {"lengths": lengths}
            paths = list(run.modality.write(x, labels, out_dir, run.cfg, **given))
            paths.append(run.modality.preview(x[:shown], None if labels is None else labels[:shown],
                                              out_dir / "preview.png", run.cfg))
    return {"x": x, "labels": labels, "lengths": lengths, "paths": paths}


def _length_of(run: Run, seconds: float) -> int:
    if not seconds > 0:
        raise UserError(f"--seconds must be positive, got {seconds}")
    try:
        return run.modality.length_of(run.cfg, seconds)
    except ValueError as e:
        raise UserError(str(e)) from None


def _writable_folder(folder: Path) -> Path:
    """``folder``, created if needed; a UserError before any sampling if it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write to the output folder {folder} (read-only or no permission)")
    return folder


@contextlib.contextmanager
def _removed_on_failure(folder: Path):
    """On an OSError (a full disk), delete the files that appeared in ``folder`` meanwhile, so no
    truncated sample stays and the modality's numbering continues where it stood, then raise UserError."""
    before = {p for p in folder.rglob("*") if p.is_file()}
    try:
        yield
    except OSError as e:
        for path in {p for p in folder.rglob("*") if p.is_file()} - before:
            path.unlink(missing_ok=True)
        raise UserError(f"cannot write the samples to {folder}: {e.strerror or e}; the files of this call "
                        f"were removed") from None


def evaluate(run_dir: str | Path, n: int | None = None, device: str | None = None, *, sampler: str | None = None,
             steps: int | None = None, guidance=None, seed: int = 0,
             out: str | Path | None = None, placement: str | None = None, eta: float | None = None,
             churn: float | None = None, overrides=()) -> dict[str, float]:
    """The modality's metrics on ``n`` samples (default ``eval.n``) balanced over the classes, drawn with
    the given sampling settings (unset ones from the run's ``[sample]``), and, for a run with an
    autoencoder, on ``n`` test examples through it (``autoencoder_*``, the ceiling of the samples'). A run
    directory's evaluation is written to its own file (see multidiff.engine.evaluations), or to ``out``.
    placement, eta, churn: as in ``generate``; overrides: ``"eval.KEY=VALUE"`` items that change the
    run's ``[eval]`` settings for this evaluation (recorded with it)."""
    from multidiff.engine import evaluations

    run = load_run(run_dir, device or default_device())
    for item in overrides:
        if not item.partition("=")[0].strip().startswith("eval."):
            raise UserError(f"eval --set changes only the [eval] section (eval.KEY=VALUE), got {item!r}")
        apply_override(run.cfg, item)
    if overrides:
        validate(run.cfg)
    guidance = guidance_scales(guidance, run.cfg)
    n = n or run.cfg["eval"]["n"]
    s = run.cfg["sample"]
    settings = {"sampler": sampler or s["sampler"], "steps": steps or s["steps"],
                "guidance": s["guidance"] if guidance is None else guidance, "seed": seed}
    validate_sampler(settings["sampler"])
    check_seed(seed, "seed")
    options = sampling_options.options(run, run_dir, sampler=settings["sampler"], steps=settings["steps"],
                                       guidance=settings["guidance"], placement=placement, eta=eta, churn=churn)
    metrics = score(run, n, **settings, progress=True, **options)
    settings.update({k: v for k, v in options.items() if k != "placement"},
                    placement=placement or s.get("placement", "") or "default")
    if overrides:
        settings["eval"] = dict(run.cfg["eval"])
    if run.cfg.get("kind") != "autoencoder":  # the ceiling of a latent run's representation
        metrics.update(reconstruction_metrics(run, n, _evaluation_cache(run)))
    if Path(run_dir).is_dir():
        evaluations.record(Path(run_dir), {"step": run.step, "n": n, **metrics, "settings": settings}, out)
    return metrics


def score(run: Run, n: int, *, sampler: str, steps: int, guidance: float, seed: int,
          progress: bool = False, **options) -> dict[str, float]:
    """The modality's metrics on ``n`` samples of ``run`` balanced over the classes; for an autoencoder
    run, on ``n`` test examples through it (``autoencoder_*``)."""
    if run.cfg.get("kind") == "autoencoder":
        return reconstruction_metrics(run, n, _evaluation_cache(run))
    if conditioning.declared(run.cfg):
        from multidiff.conditioning import evaluation

        return evaluation.score(run, n, lambda cond: draw(run, cond, n, sampler=sampler, steps=steps, guidance=guidance,
                                                          seed=seed, progress=progress,
                                                          lengths=sample_lengths(run, display_labels(cond, run.cfg), n),
                                                          **options),
                                _evaluation_cache(run))
    labels = class_labels(n, run.cfg)
    x = draw(run, labels, n, sampler=sampler, steps=steps, guidance=guidance, seed=seed, progress=progress,
             lengths=sample_lengths(run, labels, n), **options)
    return {k: float(v) for k, v in run.modality.evaluate(x, labels, run.cfg, _evaluation_cache(run)).items()}


def _evaluation_cache(run: Run) -> Path:
    """Where the modality keeps what its evaluation trains or computes once (e.g. a classifier)."""
    cache = cache_dir(run.modality.name)
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
