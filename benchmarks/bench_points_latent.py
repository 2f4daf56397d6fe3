"""Latent versus point-space diffusion of ModelNet10 chairs: reconstruction ceiling, sample quality, speed.

    python benchmarks/bench_points_latent.py --points runs/modelnet10_chair-quick \
        --latent runs/modelnet10_chair_latent-quick

In this one process (same CPU, one after the other): training examples per second of a forward +
backward pass of the diffusion loss at each recipe's batch size (the latent run trains on its cached
shape codes, so no encoding is timed; the autoencoder's own training rate is printed as the one-off
cost it is), samples per second with each recipe's sampler and steps including decoding, at the
point-space run's own point count and at 1,024 points (the same network, timing only, since it was
trained at its recipe's count) and for the latent run at 1,024 and 2,048 points; and 1-NNA / MMD /
COV with Chamfer distances of ``--n`` samples against as many test chairs, with the autoencoder's
reconstructions of test chairs (its ceiling) and the training chairs (the data's own ceiling).
Targets (issue "Latent diffusion"): reconstructions 1-NNA-CD <= 0.60 at 1,024 points; generated
<= 0.70 at 1,024 points on the quick preset; latent >= 3x point-space in both speeds.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from multidiff.engine.diffusion import from_config
from multidiff.engine.generate import draw, load_run
from multidiff.latent import reconstruction_metrics
from multidiff.losses import diffusion_loss
from multidiff.nn.autoencoder import gaussian_kl


def _median_rate(work, count: int, repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return count / sorted(times)[len(times) // 2]


def training_rate(run, repeats: int, n_points: int | None = None) -> float:
    """Training examples per second: forward + backward of the diffusion loss on the recipe's batch."""
    cfg, model = run.cfg, run.model.train()
    d, batch = from_config(cfg["diffusion"]), cfg["train"]["batch_size"]
    shape = list(cfg["dataset"]["encoded_shape"])
    if n_points:
        shape[0] = n_points
    z = torch.randn(batch, *shape)

    def step():
        diffusion_loss(model, z, schedule=d.schedule, prediction=d.prediction, weighting=d.weighting).backward()
        model.zero_grad(set_to_none=True)

    return _median_rate(step, batch, repeats)


def autoencoder_training_rate(run, repeats: int) -> float:
    """The autoencoder stage's training examples per second (its recipe's loss and batch)."""
    ae, ae_cfg = run.encoder.autoencoder.train(), run.encoder.record["config"]
    batch = ae_cfg["train"]["batch_size"]
    x = torch.randn(batch, *ae_cfg["dataset"]["encoded_shape"])
    loss_of = run.modality.reconstruction_error

    def step():
        x_hat, mean, logvar = ae(x, torch.randn(batch, ae.latent_dim))
        kl = ae_cfg["autoencoder"]["kl_weight"] * gaussian_kl(mean, logvar) / x[0].numel()
        (loss_of(x_hat, x, ae_cfg["autoencoder"]["reconstruction"]) + kl).mean().backward()
        ae.zero_grad(set_to_none=True)

    rate = _median_rate(step, batch, repeats)
    ae.eval()
    return rate


def sampling_rate(run, n: int, repeats: int, n_points: int | None = None, latent: bool = False) -> float:
    s = run.cfg["sample"]
    run = copy.copy(run)
    run.cfg = copy.deepcopy(run.cfg)
    if n_points and not latent:
        run.cfg["dataset"]["encoded_shape"][0] = n_points
    points = n_points if latent else None
    return _median_rate(lambda: draw(run, None, n, sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"],
                                     seed=0, points=points), n, repeats)


def quality(run, n: int) -> dict:
    """Chamfer set metrics of ``n`` samples (and, for a latent run, of reconstructions) against test chairs."""
    from multidiff.engine.generate import _evaluation_cache

    run = copy.copy(run)
    run.cfg = copy.deepcopy(run.cfg)
    run.cfg["eval"]["emd"] = False
    s = run.cfg["sample"]
    x = draw(run, None, n, sampler=s["sampler"], steps=s["steps"], guidance=s["guidance"], seed=0)
    metrics = run.modality.evaluate(x, None, run.cfg, _evaluation_cache(run))
    metrics.update(reconstruction_metrics(run, n, _evaluation_cache(run)))
    return {k: float(v) for k, v in metrics.items() if "cd" in k}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", required=True, help="a point-space run (e.g. runs/modelnet10_chair-quick)")
    parser.add_argument("--latent", required=True, help="a latent run (e.g. runs/modelnet10_chair_latent-quick)")
    parser.add_argument("--n", type=int, default=100, help="samples and test chairs for the set metrics")
    parser.add_argument("--sample-n", type=int, default=16, help="samples timed for the sampling speed")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (medians)")
    parser.add_argument("--points-speed-only", action="store_true",
                        help="time the point-space run's network only (e.g. a run not trained to its preset's end)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_grad_enabled(True)
    point, latent = load_run(args.points, "cpu"), load_run(args.latent, "cpu")
    own = point.cfg["dataset"]["encoded_shape"][0]
    rows = [
        ("train examples/s, point-space at its own points" + f" ({own})", training_rate(point, args.repeats), None),
        ("train examples/s, point-space at 1,024 points", training_rate(point, args.repeats, 1024),
         training_rate(latent, args.repeats)),
        ("train examples/s, autoencoder stage (one-off)", None, autoencoder_training_rate(latent, args.repeats)),
        (f"samples/s, point-space at {own} points", sampling_rate(point, args.sample_n, args.repeats), None),
        ("samples/s at 1,024 points", sampling_rate(point, args.sample_n, args.repeats, 1024),
         sampling_rate(latent, args.sample_n, args.repeats, 1024, latent=True)),
        ("samples/s at 2,048 points", None, sampling_rate(latent, args.sample_n, args.repeats, 2048, latent=True)),
    ]
    with torch.no_grad():
        q_point = {} if args.points_speed_only else quality(point, args.n)
        q_latent = quality(latent, args.n)
    for key in sorted(q_point.keys() | q_latent.keys()):
        rows.append((key, q_point.get(key), q_latent.get(key)))
    print(f"point-space run {args.points} ({own} points), latent run {args.latent} "
          f"({latent.cfg['data']['n_points']:,} points); "
          f"n = {args.n}, {torch.get_num_threads()} thread(s)"
          + ("; point-space quality not measured (--points-speed-only)" if args.points_speed_only else ""))
    print(f"{'':52s} {'point-space':>12s} {'latent':>12s} {'latent/point':>12s}")
    for name, p, q in rows:
        ratio = f"{q / p:12.2f}" if p and q and "/s" in name else f"{'':12s}"
        cells = [f"{v:12.4g}" if v is not None else f"{'':12s}" for v in (p, q)]
        print(f"{name:52s} {cells[0]} {cells[1]} {ratio}")


if __name__ == "__main__":
    main()
