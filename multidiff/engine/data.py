"""Deterministic data order: the examples of a step are a function of (seed, step) alone.

Epoch e visits the training set in the order of a permutation drawn from (seed, e); step s takes
global batch s mod (batches per epoch) of epoch s div (batches per epoch), dropping the last
incomplete batch. A resumed run therefore starts at the exact data position by its step count,
and each process of a distributed run takes its own contiguous slice of every global batch.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, default_collate

from multidiff.engine.errors import UserError


_MASK64 = (1 << 64) - 1


def derived_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. a run seed, a purpose tag, a step): each key is
    folded in with the splitmix64 finaliser (Steele et al. 2014), cheap enough to call every step."""
    h = 0
    for key in keys:
        h = (h ^ (int(key) & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h >> 1


class GlobalBatches:
    """Batch sampler yielding, for steps ``start, start+1, ...``, this rank's indices of the global batch."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        if size < batch_size:
            raise UserError(f"the training set has {size} examples, fewer than train.batch_size = {batch_size}")
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.per_rank = batch_size // world
        self.offset = rank * self.per_rank
        self.batches_per_epoch = size // batch_size

    def epoch_order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(derived_seed(self.seed, 1, epoch)))

    def __iter__(self):
        step, epoch, order = self.start, None, None
        while True:
            if step // self.batches_per_epoch != epoch:
                epoch = step // self.batches_per_epoch
                order = self.epoch_order(epoch)
            first = (step % self.batches_per_epoch) * self.batch_size + self.offset
            yield order[first:first + self.per_rank].tolist()
            step += 1


def collate(items):
    """Stack a list of items; a dataset whose ``__getitems__(indices)`` already returns a batched
    dict (the fast path for in-memory tensors) passes through."""
    return items if isinstance(items, dict) else default_collate(items)


def make_loader(dataset, batch_sampler: GlobalBatches, num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0, collate_fn=collate)
