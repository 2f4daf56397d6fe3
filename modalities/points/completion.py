"""Completing partial clouds with a latent point run: a shape code fitted to the partial, the rest decoded.

A latent run's code describes the whole shape; no part of it is "the kept points", so the point-wise
known region of ``multidiff.sample(known=, known_mask=)`` has nothing to hold. The code is sampled with
reconstruction guidance instead (``multidiff.sample``'s ``fit``, the same samplers): at every step the
predicted clean code is decoded to ``guide_points`` points and the fit is the root of the one-sided
Chamfer distance from the partial to them (the mean over the partial's points of the squared distance
to the nearest decoded point; the root is DPS's normalisation of the gradient by the residual), in the
data's units. With ``best_of`` K, K codes are drawn for each partial and the one whose decoded shape
fits it best (the same loss, the partial alone) is kept.

The output keeps the partial's M points unchanged and adds the N - M points of the chosen shape,
decoded at N points, farthest from the partial: at the training clouds' density about M of the decoded
points cover the part that was seen, so the farthest N - M lie in the part that is missing.
"""
from __future__ import annotations

import torch

from multidiff.engine.diffusion import from_config
from multidiff.engine.errors import UserError

#: On modelnet10_chair_latent quick at 1,024 points: the best or near-best CD and EMD on both cuts of 20
#: training chairs among 0, 64, 128, 192, 256, 384; on the 100 test chairs (benchmarks/results/
#: bench_editing_chair1024.txt) 128 to 256 do about equally, 0 (unguided) loses 40% in CD, and scales of
#: 512 and more pull the codes off the chairs.
FIT_SCALE = 192.0
GUIDE_POINTS = 512


def padded(partials: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds of several sizes (M_i, 3) as one batch (B, max M, 3) and its weights (B, max M): 1 for a real point."""
    size = max(len(p) for p in partials)
    points = torch.zeros(len(partials), size, 3)
    weights = torch.zeros(len(partials), size)
    for i, p in enumerate(partials):
        points[i, : len(p)] = p
        weights[i, : len(p)] = 1
    return points, weights


def one_sided_chamfer(partial: torch.Tensor, weights: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """(B,): the weighted mean over the points of ``partial`` (B, M, 3) of the squared distance to the
    nearest point of ``cloud`` (B, K, 3). Differentiable in ``cloud``."""
    nearest = torch.cdist(partial.to(cloud), cloud).amin(2).square()
    weights = weights.to(cloud)
    return (nearest * weights).sum(1) / weights.sum(1)


def assemble(partial: torch.Tensor, decoded: torch.Tensor, n: int) -> torch.Tensor:
    """(n, 3): the partial's points (M, 3), then the n - M points of ``decoded`` farthest from them."""
    missing = n - len(partial)
    if missing > len(decoded):
        raise ValueError(f"need {missing} generated points, the decoded shape has {len(decoded)}")
    distance = torch.cdist(decoded, partial).amin(1)
    return torch.cat([partial, decoded[distance.topk(missing).indices]])


def check_latent_points(run) -> None:
    from multidiff.latent import LatentEncoder

    if not (isinstance(run.encoder, LatentEncoder) and getattr(run.encoder.autoencoder, "emits_any_size", False)):
        raise UserError("completion through a shape code needs a latent point-cloud run (e.g. modelnet10_chair_latent)")


@torch.no_grad()
def complete(run, partials: list[torch.Tensor], n_points: int, **options) -> torch.Tensor:
    """(B, n_points, 3) completions of the partial clouds (M_i, 3) in the data's units, M_i < n_points:
    each partial, then the n_points - M_i points of its fitted shape farthest from it. ``options``:
    those of ``fitted_codes``."""
    for p in partials:
        if p.ndim != 2 or p.shape[1] != 3 or not 0 < len(p) < n_points:
            raise UserError(f"a partial cloud of shape {tuple(p.shape)}: completion to {n_points} points (--points) "
                            f"needs between 1 and {n_points - 1} points (M, 3)")
    decoded = run.encoder.decode(fitted_codes(run, partials, **options), n_points).cpu()
    return torch.stack([assemble(p.float(), d, n_points) for p, d in zip(partials, decoded)])


@torch.no_grad()
def fitted_codes(run, partials: list[torch.Tensor], *, sampler: str, steps: int, seed: int,
                 labels: torch.Tensor | None = None, fit_scale: float = FIT_SCALE, best_of: int = 1,
                 guide_points: int = GUIDE_POINTS, first_index: int = 0) -> torch.Tensor:
    """(B, code size): a shape code for each partial cloud (M_i, 3), sampled with guidance towards it
    (``fit_scale`` 0: unguided), the best fit of ``best_of`` draws.

    Candidate k of partial i is sample (first_index + i) * best_of + k of the seed, so a seed fixes each
    code whatever batch it is drawn in (up to the rounding of a batch's float sums, which a strong
    guidance amplifies: up to ~2e-3 in the tests' tiny run at FIT_SCALE)."""
    from multidiff.sampling import sample

    check_latent_points(run)
    cfg, device, encoder = run.cfg, next(run.model.parameters()).device, run.encoder
    diffusion = from_config(cfg["diffusion"])
    shape = tuple(cfg["dataset"]["encoded_shape"])
    chunk = max(1, cfg["sample"]["batch_size"] // best_of)
    codes = []
    for start in range(0, len(partials), chunk):
        batch = partials[start: start + chunk]
        points, weights = (v.to(device).repeat_interleave(best_of, 0) for v in padded(batch))

        def fit(z):
            return one_sided_chamfer(points, weights, encoder.decode(z.float(), guide_points)).sqrt()

        cond = None if labels is None else labels[start: start + chunk].to(device).repeat_interleave(best_of, 0)
        options = dict(fit=fit, fit_scale=fit_scale) if fit_scale > 0 else {}
        z = sample(run.model, (len(points), *shape), schedule=diffusion.schedule, sampler=sampler, steps=steps,
                   prediction=diffusion.prediction, cond=cond, t_min=diffusion.t_min,
                   generator=torch.Generator().manual_seed(seed), first_index=(first_index + start) * best_of,
                   **options).float()
        if best_of > 1:
            loss = fit(z).view(len(batch), best_of)
            z = z.view(len(batch), best_of, -1)[torch.arange(len(batch)), loss.argmin(1)]
        codes.append(z)
    return torch.cat(codes)
