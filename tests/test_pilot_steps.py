"""The pilot step placement, checked on a Gaussian mixture whose probability-flow ODE is solved exactly."""
import json

import pytest
import torch

import multidiff
from multidiff import pilot_steps, schedules, steps
from multidiff.analytic import GaussianMixture

DIM = 16
LINEAR = schedules.get("linear")


def mixture(seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(8, generator=g) + 0.5
    means = 0.05 * torch.randn(8, DIM, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, 0.02 + 0.04 * torch.rand(8, generator=g, dtype=torch.float64))


@pytest.fixture(scope="module")
def setup():
    mix = mixture(0)
    model = mix.model("eps", LINEAR)
    pilot = pilot_steps.fit(model, (128, DIM), schedule=LINEAR, sampler="dpmpp_2m", steps=[1, 2, 10],
                            generator=torch.Generator().manual_seed(1))
    yield mix, model, pilot


def exact_at_t_min(mix, noise):
    """The target every placement can reach: the exact ODE solution at t_min, then the final denoising step."""
    x = mix.ode_solution(noise, LINEAR, rtol=1e-9, atol=1e-9, t_end=steps.T_MIN)
    t_min = torch.tensor(steps.T_MIN, dtype=torch.float64)
    return mix.posterior_mean(x, LINEAR.alpha(t_min), LINEAR.sigma(t_min))


def test_reference_solve_matches_the_exact_solution_in_the_trained_range():
    mix = mixture(0)
    pilot_noise = torch.randn(32, DIM, generator=torch.Generator().manual_seed(1))
    search = pilot_steps._Search(lambda x, t: mix.model("x0", LINEAR)(x, t), LINEAR, "dpmpp_2m",
                                 pilot_noise * float(LINEAR.sigma(torch.tensor(1.0))), steps.T_MIN)
    assert (search.reference - exact_at_t_min(mix, pilot_noise)).abs().max() < 1e-4
    assert search.reference_nfe == pilot_steps.REFERENCE_STEPS


@pytest.mark.parametrize("n", [1, 2, 10])
def test_placement_is_valid_and_in_the_trained_range(setup, n):
    _, _, pilot = setup
    times = pilot(LINEAR, n)
    assert times.dtype == torch.float64 and times.shape == (n + 1,)
    assert times[0] == 1.0 and times[-1] == 0.0
    assert bool((times[1:] < times[:-1]).all()) and times[-2] >= steps.T_MIN
    assert torch.equal(steps.times_for(pilot, LINEAR, n), times)


def test_pilot_beats_uniform_logsnr_on_fresh_noise(setup):
    mix, model, pilot = setup
    noise = torch.randn(300, DIM, generator=torch.Generator().manual_seed(2))
    exact = exact_at_t_min(mix, noise)

    def error(placement):
        x = multidiff.sample(model, noise.shape, schedule=LINEAR, sampler="dpmpp_2m", steps=10, noise=noise,
                             placement=placement)
        return float((x.double() - exact).pow(2).mean().sqrt())

    assert error(pilot) < 0.7 * error("logsnr")


def test_save_and_load_round_trip(setup, tmp_path):
    _, _, pilot = setup
    pilot.save(tmp_path / "pilot.json")
    loaded = pilot_steps.Pilot.load(tmp_path / "pilot.json")
    for n in (1, 2, 10):
        assert torch.equal(loaded(LINEAR, n), pilot(LINEAR, n))          # bit for bit
    assert loaded.fitted_for == pilot.fitted_for and loaded.nfe == pilot.nfe
    assert loaded.fitted_for["sampler"] == "dpmpp_2m" and loaded.fitted_for["t_min"] == steps.T_MIN


@pytest.mark.parametrize("content,words", [
    ("{not json", "not a readable multidiff pilot"),
    (json.dumps({"format": "something-else"}), "format tag"),
    (json.dumps({"format": pilot_steps.FORMAT, "fitted_for": {"schedule": "x"}, "reference_nfe": 1,
                 "tuned": {"2": {"times": [1.0, 0.5, 0.6], "tuning_nfe": 3}}}), "do not fall strictly"),
])
def test_a_bad_pilot_file_is_one_clear_error(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=words) as err:
        pilot_steps.Pilot.load(path)
    assert str(path) in str(err.value)


def test_two_pilots_for_two_models_do_not_interfere():
    """Each pilot keeps its own times: fitting a second one changes nothing the first one gives."""
    models = [mixture(seed).model("eps", LINEAR) for seed in (3, 4)]
    first = pilot_steps.fit(models[0], (32, DIM), schedule=LINEAR, steps=5)
    alone = first(LINEAR, 5)
    second = pilot_steps.fit(models[1], (32, DIM), schedule=LINEAR, steps=5)
    assert torch.equal(first(LINEAR, 5), alone) and not torch.equal(second(LINEAR, 5), alone)
    noise = torch.randn(4, DIM, generator=torch.Generator().manual_seed(5))
    for model, pilot in zip(models, (first, second)):
        got = multidiff.sample(model, noise.shape, schedule=LINEAR, steps=5, noise=noise, placement=pilot)
        direct = multidiff.sample(model, noise.shape, schedule=LINEAR, steps=5, noise=noise,
                                  placement=lambda schedule, n, times=pilot(LINEAR, 5): times)
        assert torch.equal(got, direct)
    assert "pilot" not in steps.names()          # no global "current pilot"


def test_rejects_what_it_was_not_fitted_for(setup):
    _, _, pilot = setup
    with pytest.raises(ValueError, match="schedule"):
        pilot(schedules.get("cosine"), 10)
    with pytest.raises(ValueError, match="fitted for 1, 2, 10 steps, not 7"):
        pilot(LINEAR, 7)
    with pytest.raises(ValueError, match="steps must be positive integers"):
        pilot_steps.fit(lambda x, t, c: x, (4, DIM), schedule=LINEAR, steps=0)
