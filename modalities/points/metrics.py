"""Point-cloud generation metrics as PointFlow (Yang et al. 2019), PVD and LION report them.

Distances between two clouds A, B:
    CD   Chamfer distance, the SUM of two means of SQUARED Euclidean distances (PointFlow's
         ``distChamfer``: dl.mean(1) + dr.mean(1)):
             CD = mean_a min_b |a - b|^2 + mean_b min_a |a - b|^2
    EMD  earth mover's distance of clouds of equal size: the MEAN Euclidean (not squared) distance
         between matched points under the best bijection (PointFlow's ``match_cost / N``).
Set metrics of a generated set G against a reference set R, with D = CD or EMD:
    MMD    mean over r in R of min over g in G of D(g, r)                      (lower is better)
    COV    fraction of R that is the nearest neighbour (in R) of some g in G  (higher is better)
    1-NNA  accuracy of the leave-one-out 1-nearest-neighbour classifier that tells G from R over
           G u R (ideal 0.5; 1.0 when the sets are far apart; 0.0 when G is a copy of R, since
           every cloud's nearest neighbour is then its twin in the other set)

``emd_exact`` solves the assignment with scipy's linear_sum_assignment (about 0.4 s for 1,024
points). The set metrics need tens of thousands of pairs, so ``distance_matrices`` uses the
auction algorithm (Bertsekas 1988; Gauss-Seidel bidding with epsilon scaling, compiled with numba,
pairs in parallel): it returns the cost of a true bijection, so it is never below the exact EMD,
and epsilon-complementary slackness bounds it by exact + ``EMD_EPS`` x (mean pairwise distance).
benchmarks/bench_points_metrics.py measures its error against the exact value on ModelNet clouds.
"""
from __future__ import annotations

import numba
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

EMD_EPS = 1e-3                 # final auction epsilon, relative to the pair's mean point distance
ELEMENTS_PER_CHUNK = 1 << 24   # point-to-point distances held at once (64 MiB of float32)
# Direct differences, not |a|^2 + |b|^2 - 2ab, whose float32 cancellation leaves ~1e-3 where a = b.
EXACT = "donot_use_mm_for_euclid_dist"


def chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CD of each pair of clouds a[i], b[i] ((P, N, 3), (P, M, 3)) -> (P,)."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[-1] != 3 or b.shape[-1] != 3 or len(a) != len(b):
        raise ValueError(f"expected two batches of clouds (P, N, 3) and (P, M, 3), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    return _chamfer_from(torch.cdist(a, b, compute_mode=EXACT))


def _chamfer_from(dist: torch.Tensor) -> torch.Tensor:
    d2 = dist.square()
    return d2.amin(2).mean(1) + d2.amin(1).mean(1)


def emd_exact(a, b) -> float:
    """Exact EMD of two clouds of equal size (N, 3), in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"EMD needs two clouds of the same shape (N, 3), got {a.shape} and {b.shape}")
    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def emd_auction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Auction EMD of each pair a[i], b[i] ((P, N, 3) each) -> (P,) float64."""
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"EMD needs two batches of clouds of the same shape (P, N, 3), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    dist = torch.cdist(a.float(), b.float(), compute_mode=EXACT).cpu().numpy()
    return torch.from_numpy(_auction_costs(dist, EMD_EPS))


@numba.njit(cache=True)
def _auction(cost: np.ndarray, eps_final: float) -> np.ndarray:
    """Person (row) -> object (column) assignment of one square cost matrix, eps_final-optimal.

    Epsilon scaling: phases at 100, 10 and 1 x eps_final, prices kept between phases."""
    n = cost.shape[0]
    price = np.zeros(n)
    person = np.empty(n, np.int64)
    owner = np.empty(n, np.int64)
    unassigned = np.empty(n, np.int64)
    eps = 100.0 * eps_final
    while True:
        person[:] = -1
        owner[:] = -1
        for i in range(n):
            unassigned[i] = n - 1 - i
        count = n
        while count > 0:
            count -= 1
            i = unassigned[count]
            best, second, j_best = np.inf, np.inf, 0
            for j in range(n):
                value = cost[i, j] + price[j]
                if value < best:
                    second, best, j_best = best, value, j
                elif value < second:
                    second = value
            price[j_best] += second - best + eps
            previous = owner[j_best]
            owner[j_best] = i
            person[i] = j_best
            if previous >= 0:
                person[previous] = -1
                unassigned[count] = previous
                count += 1
        if eps <= eps_final:
            return person
        eps = max(eps / 10.0, eps_final)


@numba.njit(parallel=True, cache=True)
def _auction_costs(dist: np.ndarray, eps_rel: float) -> np.ndarray:
    """Mean matched distance of each (N, N) matrix of ``dist`` (P, N, N), pairs in parallel."""
    out = np.empty(dist.shape[0])
    for p in numba.prange(dist.shape[0]):
        person = _auction(dist[p], eps_rel * dist[p].mean())
        total = 0.0
        for i in range(dist.shape[1]):
            total += dist[p, i, person[i]]
        out[p] = total / dist.shape[1]
    return out


def distance_matrices(x: torch.Tensor, y: torch.Tensor | None = None, *, emd: bool = True) -> dict[str, np.ndarray]:
    """{"cd": (A, B), "emd": (A, B)} between every cloud of ``x`` (A, N, 3) and of ``y`` (B, N, 3).

    With ``y`` None, the symmetric matrices of ``x`` with itself (each pair computed once, 0 on the
    diagonal). Distances are computed in torch on ``x``'s device, in chunks of pairs."""
    symmetric = y is None
    y = x if symmetric else y
    if x.ndim != 3 or y.ndim != 3 or x.shape[-1] != 3 or y.shape[-1] != 3:
        raise ValueError(f"expected clouds (A, N, 3) and (B, M, 3), got {tuple(x.shape)} and {tuple(y.shape)}")
    if emd and x.shape[1] != y.shape[1]:
        raise ValueError(f"EMD needs clouds of equal size, got {x.shape[1]} and {y.shape[1]} points")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("cannot measure distances between clouds with NaN or infinite coordinates")
    x, y = x.float(), y.float().to(x.device)
    if symmetric:
        i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    else:
        i, j = (g.reshape(-1) for g in torch.meshgrid(torch.arange(len(x), device=x.device),
                                                       torch.arange(len(y), device=x.device), indexing="ij"))
    chunk = max(1, ELEMENTS_PER_CHUNK // (x.shape[1] * y.shape[1]))
    out = {name: np.zeros((len(x), len(y))) for name in (("cd", "emd") if emd else ("cd",))}
    for start in range(0, len(i), chunk):
        ii, jj = i[start:start + chunk], j[start:start + chunk]
        dist = torch.cdist(x[ii], y[jj], compute_mode=EXACT)
        rows, cols = ii.cpu().numpy(), jj.cpu().numpy()
        out["cd"][rows, cols] = _chamfer_from(dist).double().cpu().numpy()
        if emd:
            out["emd"][rows, cols] = _auction_costs(dist.cpu().numpy(), EMD_EPS)
    if symmetric:
        for matrix in out.values():
            matrix += matrix.T
    return out


def mmd(d_gr: np.ndarray) -> float:
    """Minimum matching distance: mean over reference clouds (columns) of the closest generated one."""
    return float(np.min(d_gr, axis=0).mean())


def coverage(d_gr: np.ndarray) -> float:
    """Fraction of reference clouds (columns) that are the nearest reference of some generated cloud."""
    return len(np.unique(np.argmin(d_gr, axis=1))) / d_gr.shape[1]


def one_nna(d_gg: np.ndarray, d_rr: np.ndarray, d_gr: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy over the union of the generated and reference sets."""
    union = np.block([[d_gg, d_gr], [d_gr.T, d_rr]]).astype(np.float64)
    np.fill_diagonal(union, np.inf)
    is_generated = np.arange(len(union)) < len(d_gg)
    return float((is_generated[np.argmin(union, axis=1)] == is_generated).mean())


def set_metrics(generated: torch.Tensor, reference: torch.Tensor, *, emd: bool = True) -> dict[str, float]:
    """MMD, COV and 1-NNA with CD (and EMD) of ``generated`` (G, N, 3) against ``reference`` (R, N, 3)."""
    cross = distance_matrices(generated, reference, emd=emd)
    within_g = distance_matrices(generated, emd=emd)
    within_r = distance_matrices(reference, emd=emd)
    result = {}
    for name in cross:
        result[f"mmd_{name}"] = mmd(cross[name])
        result[f"cov_{name}"] = coverage(cross[name])
        result[f"1nna_{name}"] = one_nna(within_g[name], within_r[name], cross[name])
    return result
