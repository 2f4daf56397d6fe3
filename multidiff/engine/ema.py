"""Exponential moving average of a network's weights, the weights samples are usually drawn with."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Float32 shadow copies of every floating-point parameter and buffer of ``model``.

    After optimizer step n (counted from 1) the shadow becomes the weights themselves while
    n <= ``warmup`` (early weights are poor and would linger in the average), and afterwards
    ``decay * shadow + (1 - decay) * weights``.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: int = 0):
        self.decay, self.warmup = decay, warmup
        live = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.names = list(live)
        self._live = list(live.values())  # views of the model's own storage
        self.shadow = [v.detach().float().clone() for v in self._live]

    @torch.no_grad()
    def update(self, step: int) -> None:
        weight = 1.0 if step <= self.warmup else 1.0 - self.decay
        torch._foreach_lerp_(self.shadow, [v.float() for v in self._live], weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {', '.join(sorted(missing))}")
        for name, shadow in zip(self.names, self.shadow):
            shadow.copy_(state[name])
