"""Editing (multidiff.editing through multidiff.sample) against closed forms on the analytic mixture.

A mixture of isotropic Gaussians conditioned on some coordinates is again such a mixture over the others:
weights w_k N(x_A; mu_kA, s_k^2 I) renormalised, the same means and stds in the remaining coordinates.
"""
import pytest
import torch

import multidiff
from multidiff import samplers, schedules
from multidiff import steps as placements
from multidiff.analytic import GaussianMixture
from multidiff.parameterizations import Denoiser

COSINE = schedules.get("cosine")
# Components 2 and 3 share their known coordinate, so only the prior tells them apart: exact weights 1/4, 3/4.
THREE = GaussianMixture([0.4, 0.15, 0.45], [[-3.0, 0.0, 0.0], [3.0, 1.5, 1.0], [3.0, -1.5, -1.0]], [0.5, 0.5, 0.5])
# Here the known coordinate tells late (at low noise) which mode to take: replacement alone is biased.
TWO = GaussianMixture([0.3, 0.7], [[-1.0, -1.5], [1.0, 1.5]], [0.6, 0.6])

STOCHASTIC = {"ddpm": {}, "euler_ancestral": {}, "dpmpp_2m_sde": {}, "ddim": {"eta": 1.0}, "heun": {"s_churn": 5.0}}


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def conditional(mix, value, known=1):
    """Exact (weights, mean, covariance) of the last D - known coordinates given the first ``known`` ones."""
    a, b = mix.means[:, :known], mix.means[:, known:]
    logw = mix.weights.log() - known * mix.stds.log() - 0.5 * ((value - a) ** 2).sum(1) / mix.stds**2
    w = torch.softmax(logw, 0)
    mean = w @ b
    second = sum(w[k] * (mix.stds[k] ** 2 * torch.eye(b.shape[1], dtype=torch.float64) + torch.outer(b[k], b[k]))
                 for k in range(len(w)))
    return w, mean, second - torch.outer(mean, mean)


def inpaint(mix, value, n, sampler, resample, seed=0, steps=20, **options):
    known = torch.zeros(n, mix.dim, dtype=torch.float64)
    known[:, 0] = value
    mask = torch.zeros(1, mix.dim)
    mask[0, 0] = 1
    noise = torch.randn(n, mix.dim, generator=seeded(seed), dtype=torch.float64)
    x = multidiff.sample(mix.model("eps", COSINE), (n, mix.dim), schedule=COSINE, sampler=sampler, steps=steps,
                         known=known, known_mask=mask, resample=resample, noise=noise, generator=seeded(seed),
                         **options)
    assert torch.equal(x[:, 0], known[:, 0])                 # the known coordinate comes back exactly
    return x


def mode_weights(mix, x):
    """Share of samples whose most likely component is k."""
    modes = mix.responsibilities(x, 1.0, 0.0).argmax(1)
    return torch.bincount(modes, minlength=len(mix.weights)).double() / len(x)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_inpainting_with_jumps_matches_the_exact_conditional(sampler):
    n = 1000
    x = inpaint(THREE, 2.8, n, sampler, resample=4)
    w, mean, cov = conditional(THREE, torch.tensor([2.8], dtype=torch.float64))
    weights = mode_weights(THREE, x)
    tolerance = 4 * (w * (1 - w) / n).sqrt()
    assert bool(((weights - w).abs() <= tolerance + 1e-12).all()), (weights, w)
    y = x[:, 1:]
    assert torch.allclose(y.mean(0), mean, atol=4 * float(cov.diagonal().max().sqrt()) / n**0.5), (y.mean(0), mean)
    assert torch.allclose(torch.cov(y.T), cov, atol=0.3), (torch.cov(y.T), cov)


def test_more_resampling_jumps_measurably_reduce_the_error():
    n = 800
    w = conditional(TWO, torch.tensor([0.2], dtype=torch.float64))[0]
    errors = {r: float((mode_weights(TWO, inpaint(TWO, 0.2, n, "ddim", resample=r)) - w).abs().max()) for r in (1, 8)}
    sampling_std = float((w * (1 - w) / n).sqrt().max())
    assert errors[1] > 6 * sampling_std                            # replacement alone: clearly biased
    assert errors[1] - errors[8] > 4 * sampling_std, errors        # the jumps remove much of the bias


@pytest.mark.parametrize("sampler", samplers.names())
def test_every_sampler_keeps_the_known_region_and_starts_from_init(sampler):
    options = STOCHASTIC.get(sampler, {})
    shape = (3, 1, 4, 4)
    data = torch.randn(shape, generator=seeded(1))
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1                                             # the top half is known
    model = GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.5, 0.5]).model("v", COSINE)
    common = dict(schedule=COSINE, sampler=sampler, steps=6, prediction="v", **options)
    for resample in (1, 2):
        x = multidiff.sample(model, shape, known=data, known_mask=mask, resample=resample, generator=seeded(2),
                             **common)
        assert torch.isfinite(x).all()
        assert torch.allclose(x[..., :2, :], data[..., :2, :], atol=1e-6)
        assert not torch.allclose(x[..., 2:, :], data[..., 2:, :], atol=0.1)
    again = multidiff.sample(model, shape, known=data, known_mask=mask, resample=2, generator=seeded(2), **common)
    assert torch.equal(again, x)                                     # the same seed, the same result
    other = multidiff.sample(model, shape, known=data, known_mask=mask, resample=2, generator=seeded(3), **common)
    assert not torch.equal(other, x)
    varied = multidiff.sample(model, shape, init=data, strength=0.5, generator=seeded(2), **common)
    assert torch.isfinite(varied).all() and varied.shape == shape


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp_2m"])
def test_strength_one_is_sampling_from_noise_with_the_same_seed(sampler):
    model = TWO.model("eps", COSINE)
    init = torch.randn(5, 2, generator=seeded(3))
    plain = multidiff.sample(model, (5, 2), schedule=COSINE, sampler=sampler, steps=8, generator=seeded(4))
    edited = multidiff.sample(model, (5, 2), schedule=COSINE, sampler=sampler, steps=8, generator=seeded(4),
                              init=init, strength=1.0)
    assert torch.equal(plain, edited)


def test_strength_starts_the_placement_at_its_time_from_the_noised_input():
    model = TWO.model("eps", COSINE)
    init = torch.randn(4, 2, generator=seeded(5), dtype=torch.float64)
    noise = torch.randn(4, 2, generator=seeded(6), dtype=torch.float64)
    x = multidiff.sample(model, (4, 2), schedule=COSINE, sampler="ddim", steps=5, placement="logsnr", noise=noise,
                         init=init, strength=0.4)
    times = placements.logsnr(COSINE, 5, t_max=0.4)
    start = COSINE.alpha(times[:1]).item() * init + COSINE.sigma(times[:1]).item() * noise
    assert torch.equal(x, samplers.ddim(Denoiser(model, COSINE, "eps"), start, times, COSINE))


def test_a_small_strength_returns_nearly_the_input():
    init = TWO.sample(50, seeded(7)).float()
    x = multidiff.sample(TWO.model("eps", COSINE), (50, 2), schedule=COSINE, sampler="dpmpp_2m", steps=4,
                         placement="trailing", init=init, strength=0.02, generator=seeded(8))
    sigma = COSINE.sigma(torch.tensor([0.02])).item()                # 0.044: the noise added at that strength
    assert (x - init).pow(2).mean().sqrt() < sigma
    far = multidiff.sample(TWO.model("eps", COSINE), (50, 2), schedule=COSINE, sampler="dpmpp_2m", steps=4,
                           placement="trailing", init=init, strength=0.9, generator=seeded(8))
    assert (far - init).pow(2).mean().sqrt() > 10 * sigma


def test_a_placement_that_only_starts_at_one_is_rescaled_in_logsnr():
    def from_one(schedule, steps):   # a callable placement, like a fitted pilot, always starts at t = 1
        return placements.logsnr(schedule, steps)

    captured = []
    model = TWO.model("eps", COSINE)

    def recording(x, t, cond=None):
        captured.append(float(t[0]))
        return model(x, t, cond)

    multidiff.sample(recording, (2, 2), schedule=COSINE, sampler="euler", steps=6, placement=from_one,
                     init=torch.zeros(2, 2), strength=0.5)
    full = placements.logsnr(COSINE, 6)
    assert captured[0] == 0.5 and captured[-1] == pytest.approx(float(full[-2]), rel=1e-6)
    lam = COSINE.logsnr(torch.tensor(captured, dtype=torch.float64))
    assert torch.allclose(lam.diff(), lam.diff()[:1].expand(5), rtol=1e-4)    # still uniform in logSNR


def test_a_mask_conditioned_network_is_shown_the_known_data_and_the_mask():
    seen = {}
    model = GaussianMixture([1.0], [0.0], [1.0]).model("eps", COSINE)

    def conditioned(x, t, cond=None, known=None, mask=None):
        seen.update(known=known, mask=mask)
        return model(x, t, cond)

    conditioned.mask_conditioned = True
    data, mask = torch.randn(2, 3), torch.tensor([[1, 0, 0]])
    multidiff.sample(conditioned, (2, 3), schedule=COSINE, steps=3, known=data, known_mask=mask)
    assert torch.equal(seen["known"], data) and torch.equal(seen["mask"], mask.bool())


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_known_guidance_mixes_the_predictions_with_and_without_the_known_data(scale):
    """Reference: the same sampling with a plain network built by hand as unseen + w (shown - unseen)."""
    unseen = THREE.model("eps", COSINE)
    three_d = GaussianMixture([0.5, 0.5], [[-1.0, -1.5, 0.5], [1.0, 1.5, -0.5]], [0.6, 0.6]).model("eps", COSINE)

    def conditioned(x, t, cond=None, known=None, mask=None):
        return unseen(x, t, cond) if known is None else three_d(x, t, cond)

    conditioned.mask_conditioned = True

    def by_hand(x, t, cond=None):
        return unseen(x, t, cond) + scale * (three_d(x, t, cond) - unseen(x, t, cond))

    known, mask = torch.randn(8, 3, dtype=torch.float64), torch.tensor([[1, 0, 0]])
    noise = torch.randn(8, 3, generator=seeded(3), dtype=torch.float64)
    common = dict(schedule=COSINE, sampler="dpmpp_2m", steps=6, known=known, known_mask=mask, noise=noise)
    got = multidiff.sample(conditioned, (8, 3), known_guidance=scale, **common)
    want = multidiff.sample(by_hand, (8, 3), **common)
    assert torch.allclose(got, want, atol=1e-12) and torch.equal(got[:, 0], known[:, 0])
    blind = multidiff.sample(unseen, (8, 3), **common)                 # replacement alone: the network unseen
    assert torch.allclose(got, blind, atol=1e-12) == (scale == 0)


def test_known_guidance_needs_a_mask_conditioned_network_and_a_known_region():
    with pytest.raises(ValueError, match="needs a mask-conditioned network"):
        multidiff.sample(TWO.model("eps", COSINE), (2, 2), schedule=COSINE, steps=3, known=torch.zeros(2, 2),
                         known_mask=torch.tensor([[1, 0]]), known_guidance=2.0)
    with pytest.raises(ValueError, match="pass known= and known_mask="):
        multidiff.sample(TWO.model("eps", COSINE), (2, 2), schedule=COSINE, steps=3, known_guidance=2.0)
    with pytest.raises(ValueError, match=r"known_guidance must be a number in \[0, 1e6\]"):
        multidiff.sample(TWO.model("eps", COSINE), (2, 2), schedule=COSINE, steps=3, known=torch.zeros(2, 2),
                         known_mask=torch.tensor([[1, 0]]), known_guidance=-1.0)


@pytest.mark.parametrize("options, message", [
    ({"init": torch.zeros(2, 2), "strength": 0.0}, "strength must be a number in (0, 1]"),
    ({"init": torch.zeros(2, 2), "strength": 1.5}, "strength must be a number in (0, 1]"),
    ({"init": torch.zeros(2, 2), "strength": True}, "strength must be a number in (0, 1]"),
    ({"strength": 0.5}, "strength needs init="),
    ({"init": torch.zeros(3, 2), "strength": 0.5}, "init must be a tensor of the sample shape"),
    ({"known": torch.zeros(2, 2)}, "needs both known="),
    ({"known": torch.zeros(2, 2), "known_mask": torch.ones(3, 1)}, "does not fit samples of shape"),
    ({"known": torch.zeros(2, 2), "known_mask": torch.zeros(1, 2)}, "the known region is empty"),
    ({"known": torch.zeros(2, 2), "known_mask": torch.ones(1, 2)}, "nothing to generate"),
    ({"known": torch.zeros(2, 2), "known_mask": torch.tensor([[0.5, 1.0]])}, "only 0 (generate) and 1 (known)"),
    ({"known": torch.zeros(2, 2), "known_mask": torch.tensor([[0, 1]]), "resample": 0}, "resample must be"),
    ({"resample": 2}, "resample jumps mix"),
])
def test_bad_editing_requests_get_one_clear_line(options, message):
    with pytest.raises(ValueError) as caught:
        multidiff.sample(TWO.model("eps", COSINE), (2, 2), schedule=COSINE, steps=3, **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)
