"""The pilot step placement, checked on a Gaussian mixture whose probability-flow ODE is solved exactly."""
import pytest
import torch

import multidiff
from multidiff import pilot_steps, schedules, steps
from multidiff.analytic import GaussianMixture

DIM = 16


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(8, generator=g) + 0.5
    means = 0.05 * torch.randn(8, DIM, generator=g, dtype=torch.float64)
    mix = GaussianMixture(weights, means, 0.02 + 0.04 * torch.rand(8, generator=g, dtype=torch.float64))
    schedule = schedules.get("linear")
    model = mix.model("eps", schedule)
    pilot = pilot_steps.fit(model, (128, DIM), schedule=schedule, sampler="dpmpp_2m",
                            generator=torch.Generator().manual_seed(1))
    yield mix, schedule, model, pilot


def test_reference_solve_matches_the_exact_ode_solution(setup):
    mix, schedule, _, pilot = setup
    noise = pilot.start.to(torch.float64) / float(schedule.sigma(torch.tensor(1.0, dtype=torch.float64)))
    exact = mix.ode_solution(noise, schedule, rtol=1e-9, atol=1e-9)
    assert (pilot.reference - exact).abs().max() < 1e-4
    assert pilot.reference_nfe == pilot_steps.REFERENCE_STEPS


@pytest.mark.parametrize("n", [1, 2, 10])
def test_placement_is_valid_and_registered(setup, n):
    _, schedule, _, pilot = setup
    times = steps.get("pilot")(schedule, n)
    assert times.dtype == torch.float64 and times.shape == (n + 1,)
    assert times[0] == 1.0 and times[-1] == 0.0
    assert bool((times[1:] < times[:-1]).all())
    assert torch.equal(times, pilot(schedule, n))


def test_pilot_beats_uniform_logsnr_on_fresh_noise(setup):
    mix, schedule, model, _ = setup
    noise = torch.randn(300, DIM, generator=torch.Generator().manual_seed(2))
    exact = mix.ode_solution(noise, schedule, rtol=1e-9, atol=1e-9)

    def error(placement):
        x = multidiff.sample(model, noise.shape, schedule=schedule, sampler="dpmpp_2m", steps=10, noise=noise,
                             placement=placement)
        return float((x.double() - exact).pow(2).mean().sqrt())

    # 0.31 to 0.56 over eight seeds of mixture, pilot and test noise
    assert error("pilot") < 0.7 * error("logsnr")


def test_rejects_what_it_was_not_fitted_for(setup):
    _, _, _, pilot = setup
    with pytest.raises(ValueError, match="schedule"):
        pilot(schedules.get("cosine"), 10)
    with pytest.raises(ValueError, match="t_max"):
        pilot(schedules.get("linear"), 10, t_max=0.5)
    with pytest.raises(ValueError, match="steps"):
        pilot(schedules.get("linear"), 0)
