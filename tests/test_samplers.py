"""Samplers against closed forms: the analytic Gaussian mixture stands in for a perfect network."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from multidiff import samplers, schedules
from multidiff import steps as placements
from multidiff.analytic import GaussianMixture
from multidiff.parameterizations import Denoiser
from multidiff.sampling import sample

MIX_2D = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, 0.0]], [0.5, 0.6])
MIX_1D = GaussianMixture([0.3, 0.7], [-1.0, 1.5], [0.4, 0.5])



def perfect_denoiser(mixture, schedule, prediction="eps"):
    return Denoiser(mixture.model(prediction, schedule), schedule, prediction)


def batch_noise(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return lambda: torch.randn(shape, generator=gen, dtype=torch.float64)


# (sampler, options, expected order). UniPC's corrector raises its predictor's order p to p + 1.
DETERMINISTIC = [
    ("ddim", {}, 1), ("euler", {}, 1), ("heun", {}, 2), ("dpmpp_2m", {}, 2), ("dpmpp_2m_sde", {"eta": 0.0}, 2),
    ("dpmpp_3m", {}, 3), ("unipc", {"order": 1}, 2), ("unipc", {"order": 2}, 3),
    ("unipc", {"order": 2, "variant": "bh1"}, 3), ("unipc", {"order": 3}, 4),
]


def convergence_slope(name, options, schedule, placement, step_counts=(16, 32, 64)):
    """Slope of log RMS error against log steps, the reference being the exact ODE solution.

    Every run ends with the same last step, D at t = T_MIN, so the reference is D applied to the exact
    ODE state there: the error is the sampler's integration error alone.
    """
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t_min = torch.tensor(placements.T_MIN, dtype=torch.float64)
    exact = MIX_2D.ode_solution(noise, schedule, t_end=placements.T_MIN)
    reference = MIX_2D.posterior_mean(exact, schedule.alpha(t_min), schedule.sigma(t_min))
    denoise = perfect_denoiser(MIX_2D, schedule)
    errors = []
    for n in step_counts:
        times = placements.get(placement)(schedule, n)
        out = samplers.get(name)(denoise, noise * schedule.sigma(times[:1]).item(), times, schedule, **options)
        errors.append((out - reference).pow(2).mean().sqrt().item())
    return -np.polyfit(np.log(step_counts), np.log(errors), 1)[0]


@pytest.mark.parametrize("name,options,order", DETERMINISTIC, ids=lambda v: str(v))
def test_deterministic_samplers_converge_to_the_ode_solution_at_their_order(name, options, order):
    slope = convergence_slope(name, options, schedules.get("linear"), "logsnr")
    assert order - 0.3 <= slope <= order + 0.75, f"{name} {options}: slope {slope:.2f}, expected about {order}"


@pytest.mark.parametrize("name,options,order", [("heun", {}, 2), ("dpmpp_3m", {}, 3), ("unipc", {"order": 3}, 4)])
def test_convergence_order_holds_on_the_edm_schedule(name, options, order):
    slope = convergence_slope(name, options, schedules.get("edm"), "karras")
    assert order - 0.3 <= slope <= order + 0.75, f"{name} {options}: slope {slope:.2f}, expected about {order}"


def _exponential_integrator_increments(name, degree):
    """Run ``name`` on a denoiser whose output is a polynomial in lam = log(alpha / sigma), independent of x.

    The probability-flow ODE then reads d(x / sigma)/dlam = e^lam D(lam): the exact change of x / sigma
    over a step is the integral of e^lam p(lam), in closed form. Returns (sampler's, exact) per step.
    """
    schedule = schedules.get("linear")
    times = placements.karras(schedule, 9)
    coef = [0.3, -0.2, 0.05, 0.01][: degree + 1]
    seen = []

    def denoise(x, t):
        lam = 0.5 * schedule.logsnr(t[:1].double()).item()
        seen.append((lam, schedule.sigma(t[:1].double()).item(), x.clone()))
        return torch.full_like(x, sum(c * lam**k for k, c in enumerate(coef)))

    def antiderivative(lam):  # of e^lam * sum_k c_k lam^k
        return sum(c * math.exp(lam) * sum((-1) ** j * math.perm(k, j) * lam ** (k - j) for j in range(k + 1))
                   for k, c in enumerate(coef))

    samplers.get(name)(denoise, torch.full((1, 1), 0.7, dtype=torch.float64), times, schedule)
    got = [(x1 / s1 - x0 / s0).item() for (_, s0, x0), (_, s1, x1) in zip(seen, seen[1:])]
    exact = [antiderivative(l1) - antiderivative(l0) for (l0, _, _), (l1, _, _) in zip(seen, seen[1:])]
    return got, exact


@pytest.mark.parametrize("name,warmup,degree", [("ddim", 0, 0), ("dpmpp_3m", 1, 1), ("dpmpp_3m", 2, 2)])
def test_exponential_integrators_are_exact_for_polynomial_denoisers(name, warmup, degree):
    # With the exact phi functions, a multistep exponential integrator using k - 1 earlier evaluations
    # integrates D polynomial of degree k - 1 exactly, whatever the step sizes. (DPM-Solver++(2M) replaces
    # phi_2 by h/2 phi_1, so it is second order without this property.) This pins dpmpp_3m's coefficients.
    got, exact = _exponential_integrator_increments(name, degree)
    assert np.allclose(got[warmup:], exact[warmup:], rtol=1e-9, atol=1e-12)
    got, exact = _exponential_integrator_increments(name, degree + 1)
    assert not np.allclose(got[warmup:], exact[warmup:], rtol=1e-6)   # and only up to that degree


def test_ancestral_family_agrees_step_for_step():
    # DDPM's posterior, DDIM with eta = 1 and k-diffusion's Euler ancestral are one update written three
    # ways; Euler is DDIM with eta = 0; the 2M SDE with eta = 0 is 2M. Same noise, same numbers.
    schedule = schedules.get("cosine")
    denoise = perfect_denoiser(MIX_2D, schedule, "v")
    times = placements.karras(schedule, 12)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * schedule.sigma(times[:1])

    def run(name, **options):
        return samplers.get(name)(denoise, x, times, schedule, **options)

    ddpm = run("ddpm", noise=batch_noise((16, 2), 5))
    assert torch.allclose(run("ddim", eta=1.0, noise=batch_noise((16, 2), 5)), ddpm, atol=1e-10)
    assert torch.allclose(run("euler_ancestral", eta=1.0, noise=batch_noise((16, 2), 5)), ddpm, atol=1e-10)
    assert torch.allclose(run("euler"), run("ddim"), atol=1e-10)
    assert torch.allclose(run("dpmpp_2m_sde", eta=0.0), run("dpmpp_2m"), atol=1e-10)


def _mixture_cdf(x):
    w, mu, sd = MIX_1D.weights.numpy(), MIX_1D.means[:, 0].numpy(), MIX_1D.stds.numpy()
    return (w * stats.norm.cdf((np.asarray(x)[..., None] - mu) / sd)).sum(-1)


@pytest.mark.parametrize("name,options,steps,placement", [
    ("ddpm", {}, 100, "trailing"),
    ("ddim", {"eta": 1.0}, 100, "trailing"),
    ("euler_ancestral", {}, 100, "karras"),
    ("dpmpp_2m_sde", {}, 50, "logsnr"),
    ("heun", {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 50.0}, 25, "karras"),   # EDM ImageNet churn per step
])
def test_stochastic_samplers_reproduce_the_mixture(name, options, steps, placement):
    n = 3000
    schedule = schedules.get("linear")
    times = placements.get(placement)(schedule, steps)
    noise = batch_noise((n, 1), seed=3)
    x = samplers.get(name)(perfect_denoiser(MIX_1D, schedule), noise() * schedule.sigma(times[:1]).item(), times,
                           schedule, noise=noise, **options)[:, 0].numpy()
    # Sampling error at n = 3000: mean 0.023, variance ~3 %, mode weight 0.008 (one standard deviation).
    assert abs(x.mean() - MIX_1D.mean.item()) < 0.1
    assert abs(x.var() / MIX_1D.variance.item() - 1) < 0.1
    assert abs((x < 0.25).mean() - _mixture_cdf(0.25)) < 0.03      # weight of the mode at -1


SCHEDULE_CASES = {
    "linear": (schedules.get("linear"), ["eps", "x0", "v", "edm"]),
    "scaled_linear": (schedules.get("scaled_linear"), ["eps", "x0", "v", "edm"]),
    "cosine": (schedules.get("cosine"), ["eps", "x0", "v", "edm"]),
    "sigmoid": (schedules.get("sigmoid"), ["eps", "x0", "v", "edm"]),
    "edm": (schedules.get("edm"), ["eps", "x0", "edm"]),                     # v is a VP parameterization
    "linear_zero_snr": (schedules.get("linear", zero_terminal_snr=True), ["x0", "v"]),  # eps, edm: x0 undefined
}


@pytest.mark.parametrize("schedule_name", SCHEDULE_CASES)
@pytest.mark.parametrize("name", samplers.names())
def test_every_sampler_stays_finite_at_one_and_two_steps(name, schedule_name):
    schedule, predictions = SCHEDULE_CASES[schedule_name]
    options = {"s_churn": 10.0} if name == "heun" else {}
    for prediction in predictions:
        exact = MIX_1D.model(prediction, schedule)
        for network in (exact, lambda x, t, c: exact(x.bfloat16(), t, c)):   # fp32 and bf16 networks
            for steps in (1, 2):
                x = sample(network, (3, 2), schedule=schedule, sampler=name, steps=steps, prediction=prediction,
                           generator=torch.Generator().manual_seed(0), **options)
                assert x.dtype == torch.float32 and bool(torch.isfinite(x).all()), (prediction, steps)


def test_a_thousand_steps_stay_finite_and_accurate():
    # Tiny steps are where UniPC's coefficients cancel the most; bf16 rounding bounds the accuracy.
    schedule = schedules.get("cosine")
    exact = MIX_1D.model("v", schedule)
    noise = torch.randn(4, 1, generator=torch.Generator().manual_seed(0))
    x = sample(lambda x, t, c: exact(x.bfloat16(), t, c), (4, 1), schedule=schedule, sampler="unipc", steps=1000,
               prediction="v", noise=noise, order=3)
    assert bool(torch.isfinite(x).all())
    assert torch.allclose(x.double(), MIX_1D.ode_solution(noise, schedule), atol=0.05)


def test_network_evaluations_per_sampler():
    schedule = schedules.get("linear")
    zero_snr = schedules.get("linear", zero_terminal_snr=True)
    for name in samplers.names():
        for sched, heun_saved in ((schedule, 0), (zero_snr, 1)):
            calls = []
            denoise = perfect_denoiser(MIX_1D, sched, "v")
            stochastic = name in ("ddpm", "euler_ancestral", "dpmpp_2m_sde")
            samplers.get(name)(lambda x, t: calls.append(1) or denoise(x, t), torch.randn(2, 1, dtype=torch.float64),
                               placements.trailing(sched, 7), sched,
                               **({"noise": batch_noise((2, 1), 0)} if stochastic else {}))
            expected = 2 * 7 - 1 - heun_saved if name == "heun" else 7
            assert len(calls) == expected, (name, sched)


def test_ode_solution_matches_the_single_gaussian_closed_form():
    # For x0 ~ N(mu, s0^2) the flow is linear in x~ = x / alpha: x~(s) - mu scales as sqrt(s0^2 + s^2).
    gauss = GaussianMixture([1.0], [[0.4, -0.3]], [0.7])
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for schedule in (schedules.get("edm"), schedules.get("cosine"), schedules.get("linear", zero_terminal_snr=True)):
        one = torch.ones(1, dtype=torch.float64)
        a, s = schedule.alpha(one).item(), schedule.sigma(one).item()
        if a > 0:   # x~ starts at sigma~ * noise
            st = s / a
            expected = gauss.means + (st * noise - gauss.means) * 0.7 / math.sqrt(0.49 + st**2)
        else:       # sigma~ = inf: the limit of the same expression
            expected = gauss.means + 0.7 * noise
        assert torch.allclose(gauss.ode_solution(noise, schedule), expected, atol=1e-8)


def test_posterior_mean_is_tweedies_formula():
    # E[x0 | x_t] = (x_t + sigma^2 grad log p_t(x_t)) / alpha, p_t by torch.distributions and autograd.
    alpha, sigma = 0.8, 0.6
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64).requires_grad_()
    comps = torch.distributions.Independent(torch.distributions.Normal(
        alpha * MIX_2D.means, torch.sqrt(alpha**2 * MIX_2D.stds**2 + sigma**2)[:, None].expand(-1, 2)), 1)
    marginal = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(MIX_2D.weights), comps)
    score, = torch.autograd.grad(marginal.log_prob(x).sum(), x)
    expected = (x + sigma**2 * score) / alpha
    assert torch.allclose(MIX_2D.posterior_mean(x.detach(), alpha, sigma), expected.detach(), atol=1e-12)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "edm"])
def test_exact_model_feeds_the_denoiser_the_posterior_mean(prediction):
    schedule = schedules.get("cosine")
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    x = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    d = perfect_denoiser(MIX_2D, schedule, prediction)(x, t)
    expected = MIX_2D.posterior_mean(x.reshape(-1, 2), schedule.alpha(t).repeat_interleave(4),
                                     schedule.sigma(t).repeat_interleave(4))
    assert torch.allclose(d.reshape(-1, 2), expected, atol=1e-10)
