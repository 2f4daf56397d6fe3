"""Classifier-free guidance (Ho & Salimans 2022): one network trained with and without its condition.

Labels are class indices; -1 is the null class the network learned while its condition was dropped.
Named conditions (multidiff.conditioning) are withheld by their ``dropped`` column instead, and may be
guided one by one: compositional guidance (Liu et al. 2022),
    D = D_uncond + sum_i w_i (D_i - D_uncond),
where D_i sees condition i alone. With one condition it is the single-scale formula.
"""
from __future__ import annotations

import torch

from multidiff.conditioning import batch

NULL_LABEL = -1


def drop_labels(labels: torch.Tensor | None, p: float, generator=None) -> torch.Tensor | None:
    """Replace a fraction ``p`` of the labels by the null class (training-time condition dropout)."""
    if labels is None or p <= 0:
        return labels
    if not 0 <= p <= 1:
        raise ValueError(f"condition dropout must be in [0, 1], got {p}")
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


def guided(denoiser, scale):
    """A denoiser returning D_uncond + scale (D_cond - D_uncond), all branches in one batch.

    ``scale``: a number, or for named conditions a dict {name: w_i} (compositional guidance over the
    conditions it names; the others stay as given in every branch, withheld ones withheld).
    scale = 1 (or no condition) is the plain conditional denoiser; scale = 0 the unconditional one.
    """
    if not isinstance(scale, dict) and scale == 1.0:
        return denoiser

    def guided_denoiser(x, t, cond=None):
        if cond is None:
            return denoiser(x, t, None)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if isinstance(cond, dict):
            return _named(denoiser, x, t, cond, scale)
        if isinstance(scale, dict):
            raise ValueError("per-condition guidance needs named conditions; this model takes one class label")
        both = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, torch.full_like(cond, NULL_LABEL)]))
        d_cond, d_uncond = both.chunk(2)
        return d_uncond + scale * (d_cond - d_uncond)

    return guided_denoiser


def _named(denoiser, x, t, cond: dict, scale):
    """Guidance over named conditions: the conditional branches, then the unconditional one, as one batch."""
    k = cond["dropped"].shape[1]
    everything = torch.ones(k, dtype=torch.bool)
    if isinstance(scale, dict):  # a branch with weight 0, or for a condition withheld throughout, adds nothing
        used = [(w, i) for w, i in zip(scale.values(), _columns(cond, scale)) if w and not cond["dropped"][:, i].all()]
        weights = [w for w, _ in used]
        branches = [batch.with_dropped(cond, everything.clone().index_fill_(0, torch.tensor(i), False))
                    for _, i in used]
    else:
        weights, branches = [scale], [cond]
    branches.append(batch.with_dropped(cond, everything))
    out = denoiser(torch.cat([x] * len(branches)), torch.cat([t] * len(branches)), batch.cat(branches))
    *d_conditional, d_uncond = out.chunk(len(branches))
    result = d_uncond
    for w, d in zip(weights, d_conditional):
        result = result + w * (d - d_uncond)
    return result


def _columns(cond: dict, scale: dict) -> list[int]:
    """The ``dropped`` column of each condition ``scale`` names, in its order (a dict keeps the run's order)."""
    names = [name for name in cond if name != "dropped"]
    unknown = sorted(set(scale) - set(names))
    if unknown:
        raise ValueError(f"guidance for unknown condition(s) {unknown}; conditions: {', '.join(names)}")
    return [names.index(name) for name in scale]
