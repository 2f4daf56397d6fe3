"""multidiff.sample: resolution of names, per-sample randomness, guidance, shapes, dtypes and errors."""
import math

import pytest
import torch

import multidiff
from multidiff import samplers, schedules
from multidiff import steps as placements
from multidiff.analytic import GaussianMixture
from multidiff.parameterizations import Denoiser

MIX = GaussianMixture([0.3, 0.7], [-1.0, 1.5], [0.4, 0.5])
CLASS_MIXES = [GaussianMixture([1.0], [-1.0], [0.4]), GaussianMixture([1.0], [1.5], [0.5])]
LINEAR = schedules.get("linear")



def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["ddpm", "dpmpp_2m_sde", "heun", "dpmpp_2m"])
def test_a_seeded_sample_does_not_depend_on_its_batch(name):
    model = MIX.model("eps", LINEAR)
    options = {"s_churn": 10.0} if name == "heun" else {}
    big = multidiff.sample(model, (5, 3), schedule="linear", sampler=name, steps=6, generator=seeded(7), **options)
    small = multidiff.sample(model, (2, 3), schedule="linear", sampler=name, steps=6, generator=seeded(7), **options)
    assert torch.equal(big[:2], small)
    other = multidiff.sample(model, (2, 3), schedule="linear", sampler=name, steps=6, generator=seeded(8), **options)
    assert not torch.allclose(small, other)


def test_chunked_draws_with_first_index_equal_one_batch():
    model = MIX.model("eps", LINEAR)
    whole = multidiff.sample(model, (5, 3), schedule="linear", sampler="ddpm", steps=6, generator=seeded(3))
    tail = multidiff.sample(model, (3, 3), schedule="linear", sampler="ddpm", steps=6, generator=seeded(3),
                            first_index=2)
    assert torch.equal(whole[2:], tail)


def test_sample_runs_the_sampler_from_sigma_max_times_noise():
    noise = torch.randn(4, 2, generator=seeded(0), dtype=torch.float64)
    x = multidiff.sample(MIX.model("x0", LINEAR), (4, 2), schedule="linear", sampler="dpmpp_3m", steps=30,
                         prediction="x0", noise=noise)
    assert x.dtype == torch.float64                               # float64 noise keeps the run in float64
    times = placements.logsnr(LINEAR, 30)                         # dpmpp_3m's default placement
    denoise = Denoiser(MIX.model("x0", LINEAR), LINEAR, "x0")
    direct = samplers.dpmpp_3m(denoise, noise * LINEAR.sigma(times[:1]).item(), times, LINEAR)
    assert torch.equal(x, direct)
    assert torch.allclose(x, MIX.ode_solution(noise, LINEAR), atol=5e-3)   # and lands on the exact flow


def class_model(schedule):
    """Class 0 / 1: a single Gaussian each; -1 (unconditional): their equal mixture."""
    per_class = [m.model("eps", schedule) for m in CLASS_MIXES]
    uncond = GaussianMixture([0.5, 0.5], [-1.0, 1.5], [0.4, 0.5]).model("eps", schedule)

    def model(x, t, cond):
        outs = [uncond(x, t), per_class[0](x, t), per_class[1](x, t)]
        return torch.stack(outs)[cond + 1, torch.arange(len(x))]
    return model


def test_conditioning_and_guidance_reach_the_network():
    noise = torch.randn(6, 1, generator=seeded(1), dtype=torch.float64)
    cond = torch.tensor([0, 1, 0, 1, -1, 1])
    x = multidiff.sample(class_model(LINEAR), (6, 1), schedule="linear", sampler="unipc", steps=40, cond=cond,
                         noise=noise)
    for i, label in enumerate(cond.tolist()):
        mix = CLASS_MIXES[label] if label >= 0 else GaussianMixture([0.5, 0.5], [-1.0, 1.5], [0.4, 0.5])
        assert torch.allclose(x[i], mix.ode_solution(noise[i:i + 1], LINEAR)[0], atol=1e-3)
    # Guidance scale 0 is the unconditional model, whatever the labels.
    x0 = multidiff.sample(class_model(LINEAR), (6, 1), schedule="linear", sampler="unipc", steps=40, cond=cond,
                          noise=noise, guidance_scale=0.0)
    uncond = multidiff.sample(class_model(LINEAR), (6, 1), schedule="linear", sampler="unipc", steps=40,
                              cond=torch.full((6,), -1), noise=noise)
    assert torch.allclose(x0, uncond, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3), (2, 2, 16), (2, 1, 4, 4), (3, 10, 3)])
def test_any_shape_and_batch_size(shape):
    x = multidiff.sample(MIX.model("v", LINEAR), shape, schedule=LINEAR, sampler="dpmpp_2m", steps=4,
                         prediction="v", generator=seeded(0))
    assert x.shape == shape and x.dtype == torch.float32 and bool(torch.isfinite(x).all())


def test_half_precision_network_output_is_taken_to_float32():
    exact = MIX.model("eps", LINEAR)
    for dtype in (torch.bfloat16, torch.float16):
        x = multidiff.sample(lambda x, t, c: exact(x, t, c).to(dtype), (4, 2), schedule="cosine", sampler="heun",
                             steps=5, generator=seeded(0))
        assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model = MIX.model("eps", LINEAR)
    cpu = multidiff.sample(model, (4, 2), schedule="linear", sampler="ddpm", steps=8, generator=seeded(3))
    cond_on_gpu = torch.zeros(4, dtype=torch.long, device="cuda")   # a cond on CUDA puts the run there
    gpu = multidiff.sample(lambda x, t, c: model(x, t, None), (4, 2), schedule="linear", sampler="ddpm", steps=8,
                           generator=seeded(3), cond=cond_on_gpu)
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_schedule_and_placement_options():
    zero_snr = schedules.get("linear", zero_terminal_snr=True)
    x = multidiff.sample(MIX.model("v", zero_snr), (3, 1), schedule=zero_snr, sampler="unipc", steps=8,
                         prediction="v", placement="karras", generator=seeded(0))
    assert bool(torch.isfinite(x).all())
    assert set(placements.names()) >= {"linspace", "trailing", "leading", "logsnr", "karras"}


def bad_call(**overrides):
    kwargs = dict(schedule="linear", sampler="ddim", steps=3, generator=seeded(0))
    model = overrides.pop("model", MIX.model("eps", LINEAR))
    shape = overrides.pop("shape", (2, 3))
    kwargs.update(overrides)
    return lambda: multidiff.sample(model, shape, **kwargs)


@pytest.mark.parametrize("overrides,message", [
    ({"schedule": "warp"}, r"unknown schedule 'warp'.*cosine"),
    ({"sampler": "plms"}, r"unknown sampler 'plms'.*dpmpp_2m"),
    ({"placement": "random"}, r"unknown step placement 'random'.*karras"),
    ({"prediction": "score"}, r"unknown prediction 'score'"),
    ({"steps": 0}, r"steps must be a positive integer, got 0"),
    ({"steps": 2.5}, r"steps must be a positive integer"),
    ({"noise": torch.zeros(3, 3)}, r"noise has shape \(3, 3\), expected \(2, 3\)"),
    ({"cond": torch.tensor([0, 1, 1])}, r"cond must be a LongTensor of shape \(2,\)"),
    ({"eta": 0.5, "sampler": "dpmpp_2m"}, r"sampler 'dpmpp_2m' takes no option\(s\) \['eta'\]"),
    ({"model": lambda x, t, c: x[:, :2]}, r"model returned shape \(2, 2\)"),
    ({"model": lambda x, t, c: torch.full_like(x, math.nan)}, r"NaN or Inf at t = 1"),
    ({"schedule": schedules.get("linear", zero_terminal_snr=True)}, r"prediction 'eps' cannot give x0 where alpha = 0"),
])
def test_bad_input_raises_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        bad_call(**overrides)()
