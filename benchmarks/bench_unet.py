"""Forward + backward time of multidiff's UNet against diffusers' UNet2DModel on CPU.

Both networks have the same layout (three levels of 64/128/128 channels, two residual blocks per level,
attention at the 16x16 level and in the middle, scale-shift time conditioning), so their parameter
counts match within a few percent; the table prints both counts. The two are timed in alternation so
that load from other processes on a shared machine hits both alike; the figure is the median.

    python benchmarks/bench_unet.py [--batch 16] [--repeats 5] [--in-channels 1] [--channels-last] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from multidiff.nn.unet import UNet


def diffusers_unet(in_channels: int):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32, in_channels=in_channels, out_channels=in_channels,
        block_out_channels=(64, 128, 128), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32, resnet_time_scale_shift="scale_shift", norm_num_groups=32,
    )


def ours(in_channels: int) -> UNet:
    return UNet(2, in_channels, channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attn_levels=(1,), num_heads=4)


def step_time(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def make_step(net, x, t, diffusers_api: bool):
    def step():
        out = net(x, t * 999).sample if diffusers_api else net(x, t)
        out.square().mean().backward()
        net.zero_grad(set_to_none=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--in-channels", type=int, default=1, help="1 (MNIST-like) or 3 (RGB)")
    parser.add_argument("--channels-last", action="store_true", help="run both in channels_last memory format")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); "
                        "1 is steadier on a machine shared with other jobs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}, "
          f"median of {args.repeats} fwd+bwd steps after 2 warm-up steps"
          + (", channels_last" if args.channels_last else ""))
    print(f"{'input':>10} {'multidiff params':>17} {'diffusers params':>17} {'multidiff ms':>13} "
          f"{'diffusers ms':>13} {'ratio':>6}")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.in_channels, 32, 32, generator=gen)
    t = torch.rand(args.batch, generator=gen)
    nets = {"ours": ours(args.in_channels), "diffusers": diffusers_unet(args.in_channels)}
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        nets = {k: v.to(memory_format=torch.channels_last) for k, v in nets.items()}
    steps = {k: make_step(v, x, t, k == "diffusers") for k, v in nets.items()}
    times = {k: [] for k in steps}
    for i in range(args.repeats + 2):
        for k, step in steps.items():
            elapsed = step_time(step)
            if i >= 2:
                times[k].append(elapsed)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    params = {k: sum(p.numel() for p in v.parameters()) for k, v in nets.items()}
    print(f"{f'{args.in_channels}x32x32':>10} {params['ours']:>17,} {params['diffusers']:>17,} {med['ours']:>13.1f} "
          f"{med['diffusers']:>13.1f} {med['ours'] / med['diffusers']:>6.2f}")
    print("ratio = multidiff / diffusers time (below 1: multidiff is faster)")


if __name__ == "__main__":
    main()
