"""The training loop.

Every random draw of a step is keyed, not streamed: the data order by (seed, epoch), the diffusion
times, noise and condition dropout by (seed, step) over the whole global batch (each process slices
out its own examples), dropout inside the network by (seed, step, rank). So a resumed run repeats
an uninterrupted one exactly, and the result does not depend on how the global batch is split
over processes and micro-batches (up to float round-off in the gradient sums).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import resource
import signal
import threading
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from multidiff import conditioning
from multidiff import modality as modality_registry
from multidiff.conditioning import batch as condition_batch
from multidiff.conditioning import data as condition_data
from multidiff.engine import checkpoint, distributed, objectives
from multidiff.engine.config import is_argument_table
from multidiff.engine.data import GlobalBatches, derived_seed, make_loader
from multidiff.engine.ema import EMA
from multidiff.engine.evaluations import TrainingEvaluation
from multidiff.engine.errors import UserError
from multidiff.engine.generate import Run, build_model
from multidiff.engine.lock import RunLock
from multidiff.engine.lengths import class_lengths
from multidiff.engine.metrics_log import MetricsLog, versions
from multidiff.latent import run_encoder, train_missing_autoencoder, training_data

#: Keys of [train] that may differ between a run's saved config and the one it is resumed with, and the
#: sections that may differ whole ([eval]: how a run is judged does not change how it trains).
RESUMABLE_KEYS = {"steps", "log_every", "ckpt_every", "sample_every", "num_workers", "compile", "eval_every", "eval_n",
                  "best_metric", "best_mode"}
RESUMABLE_SECTIONS = {"eval"}
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def train(cfg: dict, run_dir: str | Path, resume: bool = False, device: str | None = None) -> Path:
    """Train the recipe ``cfg`` (see multidiff.engine.config) into ``run_dir``; return ``run_dir``.

    ``device``: "cpu" or "cuda"; by default the GPU when there is one.
    """
    if device not in (None, "cpu", "cuda"):
        raise UserError(f"device must be 'cpu' or 'cuda', got {device!r}")
    run_dir = Path(run_dir)
    # The main process holds the run directory's lock before it joins the others, so a refused
    # run never forms a process group (the other processes give up at the join timeout).
    main = os.environ.get("RANK", "0") == "0"
    with RunLock(run_dir) if main else contextlib.nullcontext():
        if main:
            checkpoint.remove_temporaries(run_dir)
        if not resume:  # a resumed latent run has its autoencoder in its checkpoint
            train_missing_autoencoder(cfg, device)
        ctx = distributed.setup(device)
        try:
            _train(copy.deepcopy(cfg), run_dir, resume, ctx)
        finally:
            distributed.cleanup(ctx)
    return run_dir


def _train(cfg: dict, run_dir: Path, resume: bool, ctx: distributed.Context) -> None:
    started = time.perf_counter()
    tc, device = cfg["train"], ctx.device
    modality = modality_registry.get(cfg["modality"])
    saved = _open_run_dir(run_dir, resume)
    train_set = _load_dataset(modality, cfg)
    encoder = run_encoder(modality, cfg, None if saved is None else saved[1])
    if saved is None:
        encoder.fit(train_set)
    else:
        encoder.load_state_dict(saved[0]["encoder"])
    encoder.to(device).eval()
    cfg["dataset"] = _describe(train_set, encoder, device)
    if conditioning.declared(cfg):
        cfg["dataset"]["conditions"] = condition_data.describe(train_set, cfg)
    if saved is not None:
        _check_same_config(cfg, saved[1], run_dir)
    _seed_global_rng(derived_seed(tc["seed"], 0), device)  # the initial weights
    model = build_model(modality, cfg).to(device)
    objective = objectives.build(cfg, model, train_set)
    ema = EMA(model, tc["ema_decay"], tc["ema_warmup"]) if tc["ema_decay"] > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    scaler = torch.amp.GradScaler(device.type, enabled=tc["precision"] == "fp16")
    start = 0
    if saved is not None:
        parts, _, start = saved
        model.load_state_dict(parts["model"])
        if ema is not None:
            ema.load_state_dict(parts["ema"])
        state = checkpoint.load_train_state(run_dir, start)
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
    if ctx.is_main:
        checkpoint.atomic_write(run_dir / "config.json", (json.dumps(cfg, indent=2) + "\n").encode())

    net = DistributedDataParallel(model) if ctx.world > 1 else model
    net = torch.compile(net) if tc["compile"] else net
    conditional = bool(cfg["dataset"]["class_names"]) or conditioning.declared(cfg)
    per_rank, micro = _split(tc["batch_size"], tc["grad_accum"], ctx.world)
    offset = ctx.rank * per_rank
    batch_set, batch_encoder = training_data(train_set, encoder)
    if conditioning.declared(cfg):  # items gain "cond": a dict of tensors (multidiff.conditioning)
        batch_set = condition_data.ConditionedSet(batch_set, condition_data.tensors(train_set, cfg),
                                                  condition_data.trained_rows(train_set, cfg))
    batches = iter(make_loader(batch_set, GlobalBatches(len(batch_set), tc["batch_size"], tc["seed"], start,
                                                       ctx.rank, ctx.world), tc["num_workers"], device.type == "cuda"))
    log = MetricsLog(run_dir, start, cfg) if ctx.is_main else None
    evaluation = TrainingEvaluation(run_dir, cfg, start) if ctx.is_main else None
    stop = _StopSignals()
    pbar = tqdm(total=tc["steps"], initial=start, disable=not ctx.is_main, dynamic_ncols=True,
                mininterval=1.0, desc=cfg["name"])
    autocast = (torch.autocast(device.type, dtype=AUTOCAST[tc["precision"]]) if tc["precision"] in AUTOCAST
                else contextlib.nullcontext())

    def parts():
        return {"model": model.state_dict(), "ema": ema.state_dict() if ema else {}, "encoder": encoder.state_dict()}

    def save(step, final=False):
        if ctx.is_main:
            state = {"optimizer": opt.state_dict(), "scaler": scaler.state_dict()}
            checkpoint.save(run_dir, step=step, cfg=cfg, parts=parts(), train_state=state, sync_directory=final)

    step, stopping, window, window_start, session_start = start, False, [], time.perf_counter(), time.perf_counter()
    try:
        while step < tc["steps"]:
            batch = next(batches)
            for group in opt.param_groups:
                group["lr"] = tc["lr"] * lr_factor(step, tc)
            _seed_global_rng(derived_seed(tc["seed"], 3, step, ctx.rank), device)  # dropout inside the network
            draws = objective.draws(step, device)
            x = batch["x"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True) if "mask" in batch else None
            with torch.no_grad():
                z, mask = batch_encoder.encode(x, mask)
            labels = batch.get("cond", batch["label"]) if conditional else None   # named conditions: a dict
            labels = condition_batch.to(labels, device)
            loss_sum = torch.zeros((), device=device)
            for k in range(0, per_rank, micro):
                mb, gb = slice(k, k + micro), slice(offset + k, offset + k + micro)
                sync = ctx.world == 1 or k + micro == per_rank
                with (contextlib.nullcontext() if sync else net.no_sync()), autocast:
                    loss = objective.loss(net, z[mb], condition_batch.take(labels, mb),
                                          None if mask is None else mask[mb], draws, gb)
                scaler.scale(loss * (micro / per_rank)).backward()
                loss_sum += loss.detach().float() * (micro / per_rank)
            flags = torch.stack([loss_sum, torch.tensor(float(stop.received is not None), device=device)])
            loss_value, stopping = distributed.sum_over_ranks(flags, ctx).tolist()
            loss_value /= ctx.world
            if not math.isfinite(loss_value):
                raise UserError(f"the loss is {loss_value} at step {step + 1}; training stopped, the last good "
                                f"checkpoint (if any) is in {checkpoint.checkpoint_dir(run_dir)}")
            grad_norm = float("nan")
            if tc["grad_clip"] > 0:
                scaler.unscale_(opt)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"]).item()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            step += 1
            if ema is not None:
                ema.update(step)
            pbar.update()
            window.append(loss_value)
            if ctx.is_main and (step % tc["log_every"] == 0 or step == tc["steps"]):
                rate = len(window) / (time.perf_counter() - window_start)
                log.write({"step": step, "loss": sum(window) / len(window), "lr": opt.param_groups[0]["lr"],
                           "grad_norm": grad_norm, "steps_per_s": rate})
                pbar.set_postfix(loss=f"{sum(window) / len(window):.4f}", refresh=False)
                window, window_start = [], time.perf_counter()
            if stopping:
                break
            if step % tc["ckpt_every"] == 0 and step < tc["steps"]:
                save(step)
                if log is not None:
                    log.plot()  # at most every PLOT_INTERVAL_S seconds
            if ctx.is_main and tc["sample_every"] and step % tc["sample_every"] == 0 and step < tc["steps"]:
                _preview(run_dir, step, objective, modality, model, ema, encoder, log)
            if ctx.is_main and evaluation.due(step):
                evaluation(step, Run(cfg, step, modality, _sampling_model(model, ema), encoder), parts(), log)
    finally:
        stop.restore()
        pbar.close()
        if log is not None:
            log.close()
    session_steps, session_time = step - start, time.perf_counter() - session_start
    save(step, final=True)
    if ctx.is_main:
        log.plot(force=True)
        if not stopping:
            _preview(run_dir, step, objective, modality, model, ema, encoder, log)
        _write_summary(run_dir, started, step, session_steps, session_time, device, ctx.world)
        log.finish()
    distributed.barrier(ctx)
    if stopping:
        raise UserError(f"stopped by {stop.received or 'a signal to another process'} at step {step}; "
                        f"checkpoint saved; continue with --resume")


def lr_factor(step: int, tc: dict) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or a cosine decay to 0 at ``steps``."""
    if step < tc["warmup_steps"]:
        return (step + 1) / tc["warmup_steps"]
    if tc["lr_schedule"] == "constant":
        return 1.0
    progress = (step - tc["warmup_steps"]) / max(1, tc["steps"] - tc["warmup_steps"])
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the default generators of the CPU and of ``device`` (torch.manual_seed would also queue
    a lazy seeding, with a formatted stack, for every accelerator type not yet initialised)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _split(batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """(examples per process and step, examples per micro-batch): the global batch is shared
    evenly by the processes; ``grad_accum`` micro-batches are shared by the processes too."""
    if batch_size % world:
        raise UserError(f"train.batch_size ({batch_size}) must be a multiple of the number of processes ({world})")
    per_rank = batch_size // world
    micro_steps = max(1, grad_accum // world)
    if per_rank % micro_steps:
        raise UserError(f"train.batch_size / processes ({per_rank}) must be a multiple of train.grad_accum / "
                        f"processes ({micro_steps})")
    return per_rank, per_rank // micro_steps


def _open_run_dir(run_dir: Path, resume: bool):
    """The saved (parts, config, step) when resuming; refuse to train over an existing run otherwise."""
    has_checkpoint = (checkpoint.checkpoint_dir(run_dir) / checkpoint.WEIGHTS_NAME).exists()
    if not resume:
        if has_checkpoint:
            raise UserError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        return None
    if not has_checkpoint:
        raise UserError(f"cannot resume: {run_dir} has no checkpoint")
    return checkpoint.load_weights(run_dir)


def _load_dataset(modality, cfg: dict):
    path = cfg["data"].get("path")
    if isinstance(path, str) and path and not Path(path).exists():
        raise UserError(f"data path not found: {path}")
    train_set = modality.dataset(cfg, "train")
    if len(train_set) == 0:
        raise UserError(f"the training set is empty (data: {path or cfg['data']})")
    return train_set


def _describe(train_set, encoder, device) -> dict:
    """What the config must record so a checkpoint alone rebuilds the network."""
    item = train_set[0]
    mask = item.get("mask")
    with torch.no_grad():
        z, _ = encoder.encode(item["x"][None].to(device), None if mask is None else mask[None].to(device))
    lengths = class_lengths(train_set) if encoder.variable_length else None
    return {"shape": list(item["x"].shape), "encoded_shape": list(z.shape[1:]),
            "class_names": list(train_set.class_names), "size": len(train_set), "encoder": type(encoder).__name__,
            **encoder.describe(), **({"class_lengths": lengths} if lengths else {})}


def _check_same_config(cfg: dict, saved: dict, run_dir: Path) -> None:
    """Refuse to resume with another config. ``saved`` comes from ``checkpoint.load_weights``, which fills
    the keys a run written before the engine knew them lacks with their defaults (``config.with_defaults``)."""
    new, old = _flatten(cfg), _flatten(saved)
    differ = [key for key in new.keys() | old.keys()
              if new.get(key) != old.get(key) and key.removeprefix("train.") not in RESUMABLE_KEYS
              and key.split(".")[0] not in RESUMABLE_SECTIONS]
    if differ:
        raise UserError(f"cannot resume {run_dir}: the config differs from the saved one at {', '.join(sorted(differ))}")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and not is_argument_table(k):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sampling_model(model, ema):
    """A copy of the network with the EMA weights (when kept), in eval mode."""
    sampler_model = copy.deepcopy(model).eval()
    if ema is not None:
        sampler_model.load_state_dict(ema.state_dict(), strict=False)
    return sampler_model


def _preview(run_dir: Path, step: int, objective, modality, model, ema, encoder, log) -> None:
    """The objective's picture (samples, or reconstructions) from the EMA weights, also to TensorBoard."""
    picture = run_dir / "previews" / f"step_{step:06d}.png"
    x, labels = objective.preview(picture, step, modality, _sampling_model(model, ema), encoder)
    log.samples(step, x, labels, modality, objective.cfg, picture)


def _write_summary(run_dir, started, step, session_steps, session_time, device, world) -> None:
    summary = {"wall_time_s": time.perf_counter() - started, "steps": step, "steps_this_session": session_steps,
               "steps_per_s": session_steps / session_time if session_time > 0 else 0.0,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "device": str(device), "processes": world, **versions()}
    if device.type == "cuda":
        summary["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        summary["device_name"] = torch.cuda.get_device_name(device)
    checkpoint.atomic_write(run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())


class _StopSignals:
    """Turns SIGTERM and Ctrl-C into a flag the loop checks after each step (a second one kills)."""

    def __init__(self):
        self.received = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        signal.signal(signum, self.previous[signum])

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
