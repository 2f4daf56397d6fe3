"""Engine overhead: training steps/s and peak memory of ``multidiff.engine.trainer.train`` beside a
bare hand-written PyTorch loop, on CPU, with the same network, batch, loss and optimizer.

Both: the toy2d residual MLP (hidden 256, depth 4, 8 classes), batch 256, v-prediction with the
cosine schedule and uniform weighting (multidiff.losses.diffusion_loss), AdamW at lr 1e-3, EMA
OFF, gradient clipping OFF, fp32, one CPU thread, the data in memory. The engine adds its data
loader, keyed per-example randomness, condition dropout, the LR schedule, the loss all-reduce/NaN
check, logging and checkpoints; its steps/s covers the training loop only (as in summary.json),
the bare loop's likewise. Each variant runs in its own fresh process (so peak RSS is its own),
alternating, REPEATS times; the table shows medians.

    python benchmarks/bench_engine.py [--steps 300] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

OVERRIDES = ["model.hidden=256", "model.depth=4", "model.time_dim=32", "data.n_train=16384", "train.batch_size=256",
             "train.lr=1e-3", "train.warmup_steps=0", "train.lr_schedule=constant", "train.ema_decay=0",
             "train.grad_clip=0", "train.num_workers=0", "train.sample_every=0", "sample.n=64", "sample.steps=4",
             "diffusion.cond_drop=0.1"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine(steps: int) -> dict:
    from multidiff.engine.config import load_recipe
    from multidiff.engine.trainer import train

    cfg = load_recipe("toy2d", None, [*OVERRIDES, f"train.steps={steps}", f"train.log_every={steps}",
                                      f"train.ckpt_every={steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        summary = json.loads((train(cfg, Path(tmp) / "run") / "summary.json").read_text())
    return {"steps_per_s": summary["steps_per_s"], "peak_rss_mib": peak_rss_mib()}


def bare(steps: int) -> dict:
    """The loop a user would write by hand around the same pieces."""
    from modalities.toy2d.data import load_split
    from modalities.toy2d.mlp import PointMLP
    from multidiff import schedules
    from multidiff.engine.config import load_recipe
    from multidiff.losses import diffusion_loss

    cfg = load_recipe("toy2d", None, OVERRIDES)
    data = load_split(cfg["data"], "train")
    x_all = (data.points - data.points.mean(0)) / data.points.std(0)
    labels_all = data.labels
    torch.manual_seed(0)
    model = PointMLP(8, hidden=256, depth=4, time_dim=32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = schedules.get("cosine")
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(x_all), (256,), generator=gen)
        labels = torch.where(torch.rand(256, generator=gen) < 0.1, -1, labels_all[idx])
        loss = diffusion_loss(model, x_all[idx], schedule=schedule, prediction="v", cond=labels, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    return {"steps_per_s": steps / (time.perf_counter() - start), "peak_rss_mib": peak_rss_mib()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["engine", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        print(json.dumps({"engine": engine, "bare": bare}[args.child](args.steps)))
        return
    results = {"engine": [], "bare": []}
    for _ in range(args.repeats):
        for variant in results:
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {v: {k: statistics.median(r[k] for r in rs) for k in ("steps_per_s", "peak_rss_mib")}
           for v, rs in results.items()}
    print(f"CPU, 1 thread, toy2d MLP hidden 256 depth 4, batch 256, EMA off, clipping off, fp32; "
          f"{args.steps} steps x {args.repeats} runs each, medians")
    print(f"{'loop':8s} {'steps/s':>9s} {'peak RSS MiB':>13s}   all steps/s")
    for variant, rs in results.items():
        runs = " ".join(f"{r['steps_per_s']:.1f}" for r in rs)
        print(f"{variant:8s} {med[variant]['steps_per_s']:9.1f} {med[variant]['peak_rss_mib']:13.0f}   {runs}")
    ratio = med["bare"]["steps_per_s"] / med["engine"]["steps_per_s"]
    print(f"engine time per step / bare time per step = {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%; target <= +5%)")


if __name__ == "__main__":
    main()
