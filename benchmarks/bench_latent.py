"""Latent versus pixel-space diffusion: training and sampling speed, sample quality, and the autoencoder's ceiling.

    python benchmarks/bench_latent.py --pixel runs/mnist-quick --latent runs/mnist_latent-quick

For each trained run, in this one process (same CPU, interleaved): training examples per second of a
forward + backward pass at the recipe's batch size (including the autoencoder's encoding when the
latent run does not cache it), samples per second of ``multidiff sample`` with the recipe's sampler
(including decoding), and the modality's metrics from ``multidiff eval``; for the latent run also the
metrics of real test images through the autoencoder (the ceiling of its samples' quality).
Targets (issue "Latent diffusion"): autoencoder accuracy within 1 point of real images; latent >= 3x
pixel in training and sampling speed at equal or better quality.
"""
from __future__ import annotations

import argparse
import time

import torch

from multidiff.engine.diffusion import from_config
from multidiff.engine.generate import evaluate, generate, load_run
from multidiff.losses import diffusion_loss


def training_rate(run_dir, repeats: int) -> float:
    """Training examples per second: forward + backward of the diffusion loss on the recipe's batch."""
    run = load_run(run_dir, "cpu")
    cfg, model = run.cfg, run.model.train()
    d = from_config(cfg["diffusion"])
    batch = cfg["train"]["batch_size"]
    x = torch.rand(batch, *cfg["dataset"]["shape"]) * 2 - 1
    labels = torch.arange(batch) % max(1, len(cfg["dataset"]["class_names"])) if cfg["dataset"]["class_names"] else None
    cached = cfg.get("latent", {}).get("cache", False)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.no_grad():
            z = torch.randn(batch, *cfg["dataset"]["encoded_shape"]) if cached else run.encoder.encode(x)[0]
        diffusion_loss(model, z, schedule=d.schedule, prediction=d.prediction, weighting=d.weighting,
                       cond=labels).backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return batch / (sum(times[1:]) / repeats)  # the first pass warms up


def sampling_rate(run_dir, n: int) -> float:
    start = time.perf_counter()
    generate(run_dir, n, seed=0, device="cpu")
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixel", required=True, help="a pixel-space run (e.g. runs/mnist-quick)")
    parser.add_argument("--latent", required=True, help="a latent run (e.g. runs/mnist_latent-quick)")
    parser.add_argument("--n", type=int, default=None, help="evaluation samples [default: the recipes' eval.n]")
    parser.add_argument("--sample-n", type=int, default=64, help="samples timed for the sampling speed")
    parser.add_argument("--repeats", type=int, default=5, help="timed training passes")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = {}
    for name, run in (("pixel", args.pixel), ("latent", args.latent)):
        rows[name] = {"train_examples_per_s": training_rate(run, args.repeats),
                      "samples_per_s": sampling_rate(run, args.sample_n), **evaluate(run, args.n, device="cpu")}
    keys = sorted(rows["pixel"].keys() | rows["latent"].keys())
    print(f"{'':34s} {'pixel':>12s} {'latent':>12s} {'latent/pixel':>12s}")
    for key in keys:
        p, q = rows["pixel"].get(key), rows["latent"].get(key)
        ratio = f"{q / p:12.2f}" if p and q else f"{'':12s}"
        print(f"{key:34s} {'' if p is None else f'{p:12.4g}':>12s} {'' if q is None else f'{q:12.4g}':>12s} {ratio}")
    latent = rows["latent"]
    if "autoencoder_accuracy_cnn" in latent:
        real = latent["autoencoder_ceiling_accuracy_cnn"]               # the same test images, untouched
        gap = 100 * (real - latent["autoencoder_accuracy_cnn"])
        print(f"autoencoder ceiling: accuracy {latent['autoencoder_accuracy_cnn']:.4f} vs real "
              f"{real:.4f} ({gap:+.2f} points lost; target <= 1)")


if __name__ == "__main__":
    main()
