"""Evaluation classifiers are trained once per identity and kept; any change to what determines
them (data bytes, settings) trains a new one."""
import numpy as np
import torch
from torch import nn

from multidiff.eval_cache import cached_classifier, identity


def test_identity_follows_every_byte_and_setting():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    base = identity("v1", 300, {"a": 1, "b": [2, 3]}, x)
    assert identity("v1", 300, {"b": [2, 3], "a": 1}, x.clone()) == base  # key order and copies do not matter
    changed = x.clone()
    changed[2, 3] += 1e-6
    assert identity("v1", 300, {"a": 1, "b": [2, 3]}, changed) != base
    assert identity("v1", 301, {"a": 1, "b": [2, 3]}, x) != base
    assert identity("v1", 300, {"a": 1, "b": [2, 3]}, x.double()) != base  # same values, other dtype
    assert identity("v1", 300, {"a": 1, "b": [2, 3]}, x.reshape(4, 3)) != base  # same bytes, other shape
    assert identity("v1", 300, {"a": 1, "b": [2, 3]}, x.numpy()) == base  # an array is its tensor


def test_a_classifier_is_trained_once_then_loaded(tmp_path):
    calls = []

    def fit(net):
        calls.append(1)
        with torch.no_grad():
            net.weight.copy_(torch.randn(net.weight.shape, generator=torch.Generator().manual_seed(len(calls))))

    first = cached_classifier(lambda: nn.Linear(3, 2), tmp_path, "judge", "k1", fit)
    again = cached_classifier(lambda: nn.Linear(3, 2), tmp_path, "judge", "k1", fit)
    assert len(calls) == 1 and not again.training
    torch.testing.assert_close(again.weight, first.weight)
    other = cached_classifier(lambda: nn.Linear(3, 2), tmp_path, "judge", "k2", fit)
    assert len(calls) == 2 and not np.allclose(other.weight.detach(), first.weight.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judge-k1.safetensors", "judge-k2.safetensors"]


def test_the_initial_weights_do_not_depend_on_what_ran_before(tmp_path):
    def keep(net):
        pass  # no training: the saved weights are the initial ones

    torch.manual_seed(1)
    first = cached_classifier(lambda: nn.Linear(3, 2), tmp_path / "a", "judge", "k", keep)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    second = cached_classifier(lambda: nn.Linear(3, 2), tmp_path / "b", "judge", "k", keep)
    torch.testing.assert_close(second.weight, first.weight)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is left as it was
