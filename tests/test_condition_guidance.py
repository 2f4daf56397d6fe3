"""Guidance over named conditions against references that can fail: the class-label CFG of
multidiff.guidance on the same network, and the compositional formula (Liu et al. 2022) evaluated
from separate network calls; and the training dropout of each condition at its own rate."""
import math

import torch

from modalities.toy2d.mlp import PointMLP
from multidiff.conditioning.encoders import ConditionEncoder
from multidiff.engine.config import load_recipe
from multidiff.engine.objectives import DiffusionObjective
from multidiff.guidance import guided

DIGIT = {"type": "categorical", "field": "digit", "drop": 0.1}
VALUES = {"values": [str(i) for i in range(5)]}


def _named_net(specs, described, seed=0):
    torch.manual_seed(seed)
    net = PointMLP(0, hidden=16, depth=2, time_dim=8,
                   conditions=lambda width: ConditionEncoder(specs, described, width)).double()
    for p in net.parameters():  # no zero-initialised layer: every branch differs
        torch.nn.init.normal_(p, std=0.5)
    return net


def test_one_condition_guided_per_condition_equals_class_label_cfg_exactly():
    named = _named_net({"digit": DIGIT}, {"digit": VALUES})
    # the same network read as a class-label one: the label table is the categorical's (null row last)
    label_net = PointMLP(5, hidden=16, depth=2, time_dim=8).double()
    weights = {k: v for k, v in named.state_dict().items() if not k.startswith("conditioner.")}
    label_net.load_state_dict({**weights, "label.table.weight": named.conditioner.parts["digit"].table.weight})
    x, t = torch.randn(6, 2, dtype=torch.float64), torch.rand(6, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    cond = {"digit": labels, "dropped": torch.zeros(6, 1, dtype=torch.bool)}
    reference = guided(label_net, 2.5)(x, t, labels)
    assert torch.equal(guided(named, {"digit": 2.5})(x, t, cond), reference)
    assert torch.equal(guided(named, 2.5)(x, t, cond), reference)
    assert not torch.allclose(reference, named(x, t, cond))   # guidance changed something


def test_compositional_guidance_is_the_sum_of_one_term_per_condition():
    specs = {"digit": DIGIT, "speaker": {**DIGIT, "field": "speaker"},
             "emb": {"type": "vector", "field": "emb", "drop": 0.1, "source": "columns", "columns": ["a", "b"],
                     "dim": 2}}
    net = _named_net(specs, {"digit": VALUES, "speaker": VALUES, "emb": {}})
    n = 5
    x, t = torch.randn(n, 2, dtype=torch.float64), torch.rand(n, dtype=torch.float64)
    cond = {"digit": torch.arange(n) % 5, "speaker": torch.arange(n).flip(0) % 5,
            "emb": torch.randn(n, 2, dtype=torch.float64), "dropped": torch.zeros(n, 3, dtype=torch.bool)}

    def only(keep):
        return {**cond, "dropped": torch.tensor([[k != keep for k in range(3)]] * n)}

    uncond = net(x, t, {**cond, "dropped": torch.ones(n, 3, dtype=torch.bool)})
    weights = {"digit": 1.5, "speaker": 3.0, "emb": -0.5}
    expected = uncond + sum(w * (net(x, t, only(k)) - uncond) for k, w in enumerate(weights.values()))
    assert torch.allclose(guided(net, weights)(x, t, cond), expected, atol=1e-10)
    assert not torch.allclose(expected, net(x, t, cond), atol=1e-3)


def test_each_condition_is_dropped_independently_at_its_own_rate(tmp_path):
    cfg = load_recipe("toy2d")
    cfg["conditions"] = {"a": {**DIGIT, "drop": 0.1}, "b": {**DIGIT, "drop": 0.5}, "c": {**DIGIT, "drop": 0.0}}
    cfg["train"]["batch_size"] = 20000
    cfg["dataset"] = {"encoded_shape": [2], "class_names": []}
    dropped = DiffusionObjective(cfg).draws(7, torch.device("cpu"))["dropped"].double()
    n = len(dropped)
    for rate, observed in zip([0.1, 0.5, 0.0], dropped.mean(0).tolist()):
        assert abs(observed - rate) <= 5 * math.sqrt(rate * (1 - rate) / n) + 1e-12
    both = (dropped[:, 0] * dropped[:, 1]).mean().item()   # independent: P(a and b) = P(a) P(b)
    assert abs(both - 0.05) <= 5 * math.sqrt(0.05 * 0.95 / n)
    other_step = DiffusionObjective(cfg).draws(8, torch.device("cpu"))["dropped"].double()
    assert not torch.equal(dropped, other_step)
