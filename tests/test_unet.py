import pytest
import torch
from torch import nn

from multidiff.nn.unet import UNet



def _randomised(net: UNet, seed: int = 0) -> UNet:
    """The zero-initialised layers make an untrained UNet output zeros; give every weight a value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return net.eval()


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 32, 32)), (2, (3, 3, 16, 24)), (2, (1, 2, 8, 8)),
                                        (1, (2, 16, 64)), (1, (1, 4, 12))])
def test_output_shape_matches_input(dims, shape):
    net = UNet(dims, shape[1], channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(1,))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    y = net(x, torch.rand(shape[0], generator=gen))
    assert y.shape == x.shape
    assert torch.count_nonzero(y) == 0  # zero-initialised output convolution


def test_out_channels_can_differ():
    net = UNet(2, 3, out_channels=6, channels=16, num_res_blocks=1)
    assert net(torch.randn(2, 3, 8, 8), torch.rand(2)).shape == (2, 6, 8, 8)


def test_examples_in_a_batch_do_not_interact():
    # GroupNorm normalises per example and attention runs within an example, so example 0's output
    # must not depend on what else is in the batch.
    net = _randomised(UNet(2, 1, channels=16, num_res_blocks=1, attn_levels=(1, 2), num_classes=3))
    gen = torch.Generator().manual_seed(1)
    x, t = torch.randn(4, 1, 16, 16, generator=gen), torch.rand(4, generator=gen)
    cond = torch.tensor([0, 2, -1, 1])
    full = net(x, t, cond)
    alone = net(x[:1], t[:1], cond[:1])
    torch.testing.assert_close(full[:1], alone, rtol=1e-4, atol=1e-5)


def test_null_class_and_conditioning():
    net = _randomised(UNet(2, 1, channels=16, num_res_blocks=1, num_classes=10))
    gen = torch.Generator().manual_seed(2)
    x, t = torch.randn(2, 1, 8, 8, generator=gen), torch.rand(2, generator=gen)
    none = net(x, t, None)
    null = net(x, t, torch.tensor([-1, -1]))
    torch.testing.assert_close(none, null, rtol=0, atol=0)  # None means "no class" (label -1)
    three = net(x, t, torch.tensor([3, 3]))
    assert (three - null).abs().max() > 1e-3
    mixed = net(x, t, torch.tensor([3, -1]))
    torch.testing.assert_close(mixed[0], three[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mixed[1], null[1], rtol=1e-5, atol=1e-6)


def test_time_changes_output():
    net = _randomised(UNet(1, 2, channels=16, num_res_blocks=1))
    x = torch.randn(1, 2, 16, generator=torch.Generator().manual_seed(3))
    assert (net(x, torch.tensor([0.1])) - net(x, torch.tensor([0.9]))).abs().max() > 1e-3


def test_unconditional_unet_ignores_null_labels_and_rejects_classes():
    net = _randomised(UNet(2, 1, channels=16, num_res_blocks=1))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    torch.testing.assert_close(net(x, t, torch.tensor([-1, -1])), net(x, t), rtol=0, atol=0)
    with pytest.raises(ValueError, match="num_classes=0"):
        net(x, t, torch.tensor([0, 1]))


def test_bad_inputs_raise_clear_errors():
    net = UNet(2, 3, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, num_classes=4)
    assert net.downsample_factor == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 3, 30, 32), torch.rand(1))
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.randn(1, 1, 32, 32), torch.rand(1))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.randn(3, 32, 32), torch.rand(3))
    with pytest.raises(ValueError, match="t must have shape"):
        net(torch.randn(2, 3, 8, 8), torch.rand(1))
    with pytest.raises(ValueError, match="out of range"):
        net(torch.randn(1, 3, 8, 8), torch.rand(1), torch.tensor([4]))
    with pytest.raises(ValueError, match="dims"):
        UNet(3, 1)
    with pytest.raises(ValueError, match="attn_levels"):
        UNet(2, 1, channel_mult=(1, 2), attn_levels=(2,))


def test_one_training_step_reduces_a_fixed_regression_loss():
    # The network learns: 30 Adam steps on one batch must cut the MSE to a fixed target well below
    # its starting value (the target's mean square, since the untrained UNet outputs zeros).
    gen = torch.Generator().manual_seed(4)
    net = UNet(2, 1, channels=16, num_res_blocks=1, num_classes=2)
    x, t = torch.randn(4, 1, 8, 8, generator=gen), torch.rand(4, generator=gen)
    target = torch.randn(4, 1, 8, 8, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    start = nn.functional.mse_loss(net(x, t, torch.tensor([0, 1, -1, 0])), target).item()
    for _ in range(30):
        loss = nn.functional.mse_loss(net(x, t, torch.tensor([0, 1, -1, 0])), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert start == pytest.approx(target.pow(2).mean().item())
    assert loss.item() < 0.5 * start


def test_memory_format_conversion_keeps_the_function():
    # .to() goes through nn.Module._apply, which the UNet must not shadow.
    net = _randomised(UNet(2, 1, channels=16, num_res_blocks=1, num_classes=2))
    x, t, cond = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, -1])
    expected = net(x, t, cond)
    net = net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x.contiguous(memory_format=torch.channels_last), t, cond), expected,
                               rtol=1e-4, atol=1e-5)
