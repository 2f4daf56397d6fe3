"""The auction EMD against the exact EMD (scipy's linear_sum_assignment) on real ModelNet10 clouds,
and the time of the set metrics (MMD / COV / 1-NNA with CD and EMD) for G generated against R
reference clouds.

Pairs are random (seeded) pairs of test clouds of ModelNet10 (any two categories), at each point
count. The error is (auction - exact) / exact; the auction returns a true matching, so it is >= 0.
The set-metric time covers the three distance matrices 1-NNA needs (G x R, G x G, R x R): with
G = R = 100 that is 19,900 pairs of clouds.

    python benchmarks/bench_points_metrics.py [--pairs 16] [--points 256 1024] [--sets 100] [--set-points 1024]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from modalities.points.data import load_folder
from modalities.points.metrics import EMD_EPS, emd_auction, emd_exact, set_metrics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "modelnet10-pc1024"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--points", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--sets", type=int, default=100, help="G = R = this many clouds for the set-metric timing")
    parser.add_argument("--set-points", type=int, default=1024)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"ModelNet10 point clouds not found at {args.data}")
    test = load_folder(args.data, "test", n_points=1024, normalize="none").clouds
    rng = np.random.default_rng(0)
    emd_auction(test[:1, :32], test[1:2, :32])          # compile the numba kernels outside the timings

    print(f"auction EMD (eps = {EMD_EPS:g} x mean pair distance) vs exact, {args.pairs} random pairs of "
          f"ModelNet10 test clouds, torch threads = {torch.get_num_threads()}")
    print(f"{'points':>6} {'exact EMD':>10} {'rel. err mean':>14} {'rel. err max':>13} "
          f"{'exact ms/pair':>14} {'auction ms/pair':>16}")
    for n in args.points:
        pick = rng.choice(len(test), size=(args.pairs, 2), replace=False)
        keep = np.sort(rng.choice(1024, n, replace=False))
        a, b = test[pick[:, 0]][:, keep], test[pick[:, 1]][:, keep]
        start = time.perf_counter()
        exact = np.array([emd_exact(x, y) for x, y in zip(a, b)])
        t_exact = (time.perf_counter() - start) / args.pairs
        start = time.perf_counter()
        approx = emd_auction(a, b).numpy()
        t_auction = (time.perf_counter() - start) / args.pairs
        err = (approx - exact) / exact
        print(f"{n:>6} {exact.mean():>10.4f} {err.mean():>14.2e} {err.max():>13.2e} "
              f"{1e3 * t_exact:>14.1f} {1e3 * t_auction:>16.1f}")

    g = test[rng.choice(len(test), args.sets, replace=False)][:, :args.set_points]
    r = test[rng.choice(len(test), args.sets, replace=False)][:, :args.set_points]
    for emd in (False, True):
        start = time.perf_counter()
        result = set_metrics(g, r, emd=emd)
        seconds = time.perf_counter() - start
        figures = ", ".join(f"{k} {v:.4g}" for k, v in result.items())
        print(f"set metrics, {args.sets} vs {args.sets} clouds of {args.set_points} points, "
              f"{'CD + EMD' if emd else 'CD only'}: {seconds:.1f} s ({figures})")


if __name__ == "__main__":
    main()
