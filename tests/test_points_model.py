"""The point transformer: permutation equivariance, any number of points, conditioning, zero init."""
import pytest
import torch

from modalities.points import PointsModality
from modalities.points.transformer import PointTransformer


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter redrawn (the zero-initialised ones too), so the tests see a non-trivial network."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def inputs(batch=2, points=50, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, points, 3, generator=gen), torch.rand(batch, generator=gen),
            torch.tensor([2, -1][:batch]))


def test_permuting_the_input_points_permutes_the_output_identically():
    model = randomised(PointTransformer(num_classes=3, width=32, depth=2, heads=4))
    x, t, cond = inputs()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x, t, cond)
        out_permuted = model(x[:, perm], t, cond)
    assert out.abs().mean() > 0.1
    torch.testing.assert_close(out_permuted, out[:, perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("points", [1, 7, 300])
def test_any_number_of_points(points):
    model = randomised(PointTransformer(num_classes=0, width=16, depth=1, heads=2))
    x, t, _ = inputs(points=points)
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_a_cloud_in_a_batch_does_not_see_the_others():
    model = randomised(PointTransformer(num_classes=3, width=16, depth=2, heads=2))
    x, t, cond = inputs()
    with torch.no_grad():
        together = model(x, t, cond)
        alone = model(x[1:], t[1:], cond[1:])
    torch.testing.assert_close(together[1:], alone, rtol=1e-5, atol=1e-5)


def test_time_and_class_condition_the_output_and_minus_one_is_no_class():
    model = randomised(PointTransformer(num_classes=3, width=16, depth=1, heads=2))
    x, t, _ = inputs(batch=1)
    with torch.no_grad():
        base = model(x, t, torch.tensor([0]))
        assert not torch.allclose(model(x, t, torch.tensor([1])), base)
        assert not torch.allclose(model(x, t + 0.3, torch.tensor([0])), base)
        torch.testing.assert_close(model(x, t, torch.tensor([-1])), model(x, t, None))
    with pytest.raises(ValueError, match="out of range"):
        model(x, t, torch.tensor([3]))


def test_fresh_network_predicts_zero_and_is_sized_from_the_recipe():
    cfg = {"model": {"width": 48, "depth": 3, "heads": 6, "cross_every": 1}}
    model = PointsModality().backbone(cfg, (20, 3), num_classes=4)
    x, t, cond = inputs(points=20)
    assert torch.equal(model(x, t, cond), torch.zeros_like(x))
    assert len(model.blocks) == 3 and model.embed[0].out_features == 48 and model.blocks[0].heads == 6
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        PointsModality().backbone(cfg, (20, 2), num_classes=4)
    with pytest.raises(ValueError, match="multiple of model.heads"):
        PointTransformer(width=30, heads=4)


def test_unconditional_network_refuses_class_labels():
    model = PointTransformer(num_classes=0, width=16, depth=1, heads=2)
    x, t, _ = inputs(batch=1)
    model(x, t, torch.tensor([-1]))
    with pytest.raises(ValueError, match="no classes"):
        model(x, t, torch.tensor([0]))
