"""Operations on a batch's conditions, whichever form they take: None, class labels (a LongTensor), or
a dict of tensors (batch first, one ``dropped`` column per named condition)."""
from __future__ import annotations

import torch


def take(cond, rows):
    """The rows ``rows`` (a slice or an index tensor) of the batch's conditions."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v[rows] for k, v in cond.items()}
    return cond[rows]


def to(cond, device):
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v.to(device) for k, v in cond.items()}
    return cond.to(device)


def cat(conds: list):
    """The conditions of several batches, one after the other."""
    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(conds)


def size(cond) -> int:
    return len(cond["dropped"]) if isinstance(cond, dict) else len(cond)


def device(cond):
    return None if cond is None else (cond["dropped"] if isinstance(cond, dict) else cond).device


def with_dropped(cond: dict, dropped: torch.Tensor) -> dict:
    """``cond`` with these conditions withheld as well (``dropped``: (K,) or (B, K) bools)."""
    return {**cond, "dropped": cond["dropped"] | dropped.to(cond["dropped"].device)}
