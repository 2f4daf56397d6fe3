"""Condition encoders: a batch's conditions -> a pooled vector (for the adaptive norms, added to the
time embedding) and a sequence of tokens (for cross-attention), all of the backbone's ``width``.

Per condition: a categorical is an embedding row (one more row: the learned "dropped" token), a vector
goes through an MLP (a learned vector stands for "dropped"), a text through a text encoder (its
tokens, and their mean, or their attention-weighted sum with ``pool = "attention"``, as its pooled
vector; "dropped" is one learned token). Each condition's tokens
carry a learned type embedding, so cross-attention can tell which condition a token comes from; the
pooled vector is the sum over conditions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import text


@dataclass
class Context:
    pooled: torch.Tensor     # (B, width)
    tokens: torch.Tensor     # (B, L, width)
    mask: torch.Tensor       # (B, L) bool: True where a token is real


class Categorical(nn.Module):
    def __init__(self, num_values: int, width: int):
        super().__init__()
        self.num_values = num_values
        self.table = nn.Embedding(num_values + 1, width)

    def forward(self, index: torch.Tensor, dropped: torch.Tensor):
        if index.device.type == "cpu" and index.numel() and (index.min() < 0 or index.max() >= self.num_values):
            raise ValueError(f"categorical index out of range 0..{self.num_values - 1}")
        vector = self.table(torch.where(dropped, self.num_values, index))
        return vector, vector[:, None], torch.ones_like(dropped)[:, None]


class Vector(nn.Module):
    def __init__(self, dim: int, width: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, width))
        self.null = nn.Parameter(torch.zeros(width))

    def forward(self, value: torch.Tensor, dropped: torch.Tensor):
        if value.shape[1:] != (self.dim,):
            raise ValueError(f"expected vectors of size {self.dim}, got shape {tuple(value.shape)}")
        vector = torch.where(dropped[:, None], self.null.to(value.dtype), self.mlp(value))
        return vector, vector[:, None], torch.ones_like(dropped)[:, None]


class Text(nn.Module):
    def __init__(self, spec: dict, width: int):
        super().__init__()
        self.encoder = text.encoder(spec, width)
        self.null = nn.Parameter(torch.zeros(width))
        # attention pooling: a learned score per token (zero-initialised: the mean to begin with)
        self.score = nn.Linear(width, 1) if spec["pool"] == "attention" else None
        if self.score is not None:
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)

    def forward(self, ids: torch.Tensor, dropped: torch.Tensor):
        kept = ~dropped
        ids = torch.where(dropped.view(-1, *[1] * (ids.ndim - 1)), text.PAD, ids)
        first = ids[:, 0] if ids.ndim == 2 else ids[:, 0, 0]
        first.copy_(torch.where(first == text.PAD, 0, first))       # an empty or dropped caption: one placeholder
        ids = ids[:, :int(text.present(ids).sum(1).max())]   # padding past the batch's longest caption: no work
        tokens, mask = self.encoder(ids)
        tokens = torch.where(kept[:, None, None], tokens, self.null.to(tokens.dtype))
        mask = mask & kept[:, None]
        mask[:, 0] |= dropped                           # the null token stands alone
        if self.score is None:
            weights = mask / mask.sum(1, keepdim=True)
        else:
            weights = self.score(tokens)[..., 0].float().masked_fill(~mask, float("-inf")).softmax(1)
        pooled = (tokens * weights[..., None].to(tokens.dtype)).sum(1)
        return pooled, tokens, mask


class ConditionEncoder(nn.Module):
    """forward(cond dict) -> Context, for the conditions ``specs`` (``cfg["conditions"]``) of a run whose
    training set was described as ``described`` (``cfg["dataset"]["conditions"]``)."""

    def __init__(self, specs: dict, described: dict, width: int):
        super().__init__()
        self.names = list(specs)
        self.width = width
        parts = {}
        for name, spec in specs.items():
            if spec["type"] == "categorical":
                parts[name] = Categorical(len(described[name]["values"]), width)
            elif spec["type"] == "vector":
                parts[name] = Vector(spec["dim"], width)
            else:
                parts[name] = Text(spec, width)
        self.parts = nn.ModuleDict(parts)
        self.kind = nn.Parameter(torch.randn(len(specs), width) * 0.02)

    def forward(self, cond: dict) -> Context:
        pooled, tokens, masks = 0, [], []
        for k, name in enumerate(self.names):
            p, tok, mask = self.parts[name](cond[name], cond["dropped"][:, k])
            pooled = pooled + p
            tokens.append(tok + self.kind[k])
            masks.append(mask)
        return Context(pooled, torch.cat(tokens, 1), torch.cat(masks, 1))


def factory(cfg: dict):
    """A function width -> ConditionEncoder for a backbone to call with its own width, or None for a run
    without named conditions."""
    if not cfg.get("conditions"):
        return None
    return lambda width: ConditionEncoder(cfg["conditions"], cfg["dataset"]["conditions"], width)
