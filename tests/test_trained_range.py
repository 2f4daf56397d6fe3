"""The trained range: no sampler, placement or pilot asks the network about t below t_min."""
import pytest
import torch

import multidiff
from multidiff import pilot_steps, samplers, schedules, steps
from multidiff.analytic import GaussianMixture

MIX = GaussianMixture([0.3, 0.7], [-1.0, 1.5], [0.4, 0.5])
LINEAR = schedules.get("linear")
OPTIONS = {"ddim": {"eta": 0.5}, "heun": {"s_churn": 1.0}}    # stochastic variants too


class Recording:
    """The exact eps of MIX, remembering every time it was asked about."""

    def __init__(self):
        self.exact = MIX.model("eps", LINEAR)
        self.times: list[float] = []

    def __call__(self, x, t, cond=None):
        self.times += t.tolist()
        return self.exact(x, t, cond)


@pytest.mark.parametrize("sampler", samplers.names())
@pytest.mark.parametrize("placement", steps.names())
@pytest.mark.parametrize("t_min", [steps.T_MIN, 0.05])
def test_no_network_call_below_t_min(sampler, placement, t_min):
    model = Recording()
    noise = torch.randn(3, 1, dtype=torch.float64)       # float64: the times reach the model unrounded
    multidiff.sample(model, (3, 1), schedule=LINEAR, sampler=sampler, steps=5, placement=placement, t_min=t_min,
                     noise=noise, **OPTIONS.get(sampler, {}))
    assert min(model.times) >= t_min
    if placement != "trailing":                  # trailing's last step stays a full step above the bottom
        assert min(model.times) == pytest.approx(t_min, rel=1e-12)


@pytest.mark.parametrize("sampler", samplers.names())
def test_the_last_step_returns_the_data_prediction_at_t_min(sampler):
    """The final denoising step: the sampler's result is D at t_min of the state it reached there."""
    seen = []
    exact = MIX.model("x0", LINEAR)

    def model(x, t, cond=None):
        seen.append((x.clone(), t.clone()))
        return exact(x, t, cond)

    out = multidiff.sample(model, (4, 1), schedule=LINEAR, sampler=sampler, steps=4, prediction="x0", t_min=0.02,
                           placement="logsnr", noise=torch.randn(4, 1, dtype=torch.float64),
                           **{"ddim": {"eta": 0.5}}.get(sampler, {}))     # (heun's churn raises t before D)
    x_last, t_last = seen[-1]
    assert t_last.tolist() == [0.02] * 4
    assert torch.equal(out, exact(x_last, t_last))


def test_pilot_stays_in_the_trained_range():
    model = Recording()
    pilot = pilot_steps.fit(model, (8, 1), schedule=LINEAR, sampler="dpmpp_2m", steps=4, t_min=0.05)
    assert min(model.times) >= float(torch.tensor(0.05, dtype=torch.float32))    # the pilot runs in float32
    model.times.clear()
    multidiff.sample(model, (3, 1), schedule=LINEAR, sampler="dpmpp_2m", steps=4, placement=pilot, t_min=0.05,
                     noise=torch.randn(3, 1, dtype=torch.float64))
    assert min(model.times) >= 0.05


def test_a_request_outside_the_range_is_an_error():
    below = lambda schedule, n: torch.tensor([1.0, 0.5, 0.01, 0.0], dtype=torch.float64)   # noqa: E731
    with pytest.raises(ValueError, match=r"asks for t = 0.01, below the trained range.*t_min = 0.05"):
        multidiff.sample(Recording(), (2, 1), schedule=LINEAR, steps=3, placement=below, t_min=0.05)
    pilot = pilot_steps.fit(Recording(), (8, 1), schedule=LINEAR, steps=3, t_min=steps.T_MIN)
    with pytest.raises(ValueError, match="below the trained range"):
        multidiff.sample(Recording(), (2, 1), schedule=LINEAR, steps=3, placement=pilot, t_min=0.05)
    with pytest.raises(ValueError, match=r"t_min must be in \[0, 1\)"):
        multidiff.sample(Recording(), (2, 1), schedule=LINEAR, steps=3, t_min=-0.1)


def test_default_placements_unchanged_by_the_default_range():
    """With t_min = 1e-3 the uniform spacings are diffusers' grid, bit for bit, and stop at its first timestep."""
    for name in ("linspace", "trailing", "leading"):
        times = steps.get(name)(LINEAR, 10)
        k = torch.round(times[:-1] * 1000) - 1
        assert torch.equal(times[:-1], (k + 1) / 1000) and (times[-2] == steps.T_MIN or name == "trailing")
    for name in ("logsnr", "karras"):
        assert steps.get(name)(LINEAR, 10)[-2] == steps.T_MIN
    # t_min = 0 (a model exact everywhere) leaves every placement as it is at the default
    for name in steps.names():
        assert torch.equal(steps.get(name)(LINEAR, 7, t_min=0.0), steps.get(name)(LINEAR, 7))


def test_uniform_spacing_is_stretched_over_a_higher_range():
    times = steps.trailing(LINEAR, 4, t_min=0.1)
    # diffusers' trailing timesteps k = 999, 749, 499, 249 on t = 0.1 + k / 999 * 0.9
    expected = 0.1 + torch.tensor([999, 749, 499, 249], dtype=torch.float64) / 999 * 0.9
    assert torch.allclose(times[:-1], expected, rtol=0, atol=1e-15) and times[0] == 1.0
