"""tr((S_a S_b)^(1/2)) of the Frechet distance by eigenvalues (multidiff.metrics) against
scipy.linalg.sqrtm of the covariance product, the way pytorch-fid computes it, at FID's 2,048
features.

    python benchmarks/bench_frechet.py [--dims 2048] [--n 5000] [--repeats 5]

Prints the median wall time of each over the repeats (covariances computed once, outside the
timing), their ratio and the two values.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import linalg

from multidiff.metrics import trace_sqrt_product


def trace_sqrt_product_sqrtm(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """The reference: the real part of scipy's general matrix square root of S_a S_b."""
    return float(np.trace(np.real(linalg.sqrtm(cov_a @ cov_b))))


def median_seconds(fn, repeats: int, *args) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--n", type=int, default=5000, help="feature vectors per set")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(args.dims, args.dims)) / np.sqrt(args.dims)  # correlated features, like a network's
    a = rng.normal(size=(args.n, args.dims)) @ mixing
    b = rng.normal(size=(args.n, args.dims)) @ (mixing + 0.1 * rng.normal(size=mixing.shape) / np.sqrt(args.dims))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig_s, eig_value = median_seconds(trace_sqrt_product, args.repeats, cov_a, cov_b)
    ref_s, ref_value = median_seconds(trace_sqrt_product_sqrtm, args.repeats, cov_a, cov_b)
    print(f"tr sqrt(S_a S_b), {args.dims} features, {args.n} vectors per set, median of {args.repeats}:")
    print(f"  eigenvalues (multidiff)   {eig_s * 1e3:9.1f} ms   {eig_value:.10g}")
    print(f"  scipy.linalg.sqrtm        {ref_s * 1e3:9.1f} ms   {ref_value:.10g}")
    print(f"  speed-up {ref_s / eig_s:.1f}x, relative difference {abs(eig_value - ref_value) / abs(ref_value):.1e}")


if __name__ == "__main__":
    main()
