import math

import pytest
import torch

from multidiff import schedules, steps

SCHEDULES = {
    "linear": schedules.get("linear"),
    "cosine": schedules.get("cosine"),
    "edm": schedules.get("edm"),
    "linear_zero_snr": schedules.get("linear", zero_terminal_snr=True),
}

# diffusers' timesteps k for 1000 training steps and steps_offset = 0: the 10-step rows are Lin et al.
# (2024), table 2; the 7-step rows are DDIMScheduler.set_timesteps(7) with each timestep_spacing.
DIFFUSERS_TIMESTEPS = {
    ("linspace", 10): [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
    ("leading", 10): [900, 800, 700, 600, 500, 400, 300, 200, 100, 0],
    ("trailing", 10): [999, 899, 799, 699, 599, 499, 399, 299, 199, 99],
    ("linspace", 7): [999, 832, 666, 500, 333, 166, 0],
    ("leading", 7): [852, 710, 568, 426, 284, 142, 0],
    ("trailing", 7): [999, 856, 713, 570, 428, 285, 142],
}


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
@pytest.mark.parametrize("name", ["linspace", "trailing", "leading", "logsnr", "karras"])
@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_placement_falls_strictly_to_zero(schedule, name, n):
    t = steps.get(name)(schedule, n)
    assert t.dtype == torch.float64 and t.shape == (n + 1,)
    assert t[-1] == 0.0 and bool((t[1:] < t[:-1]).all())
    if name != "leading" and (name, n) != ("linspace", 1):   # linspace(0, 999, 1) is diffusers' [0]
        assert t[0] == 1.0


@pytest.mark.parametrize("name,n", list(DIFFUSERS_TIMESTEPS))
def test_uniform_spacings_match_diffusers_timesteps(name, n):
    t = steps.get(name)(SCHEDULES["linear"], n)
    expected = (torch.tensor(DIFFUSERS_TIMESTEPS[name, n], dtype=torch.float64) + 1) / 1000
    assert torch.allclose(t[:-1], expected, atol=1e-12)


def test_logsnr_placement_is_uniform_in_logsnr_down_to_t_min():
    schedule = SCHEDULES["cosine"]
    t = steps.logsnr(schedule, 12)
    lam = schedule.logsnr(t[:-1])
    assert torch.allclose(lam.diff(), lam.diff().mean().expand(11), rtol=1e-9)
    assert lam[0].item() == pytest.approx(schedule.logsnr(torch.tensor(1.0, dtype=torch.float64)).item())
    assert t[-2].item() == pytest.approx(steps.T_MIN, rel=1e-9)


def test_karras_placement_on_edm_matches_the_paper_formula():
    # EDM eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0.
    schedule = SCHEDULES["edm"]
    t = steps.karras(schedule, 18)
    smax, smin, rho = 80.0, float(schedule.sigma(torch.tensor(steps.T_MIN, dtype=torch.float64))), 7.0
    i = torch.arange(18, dtype=torch.float64)
    expected = (smax ** (1 / rho) + i / 17 * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    assert torch.allclose(schedule.sigma(t[:-1]), expected, rtol=1e-9)


def test_karras_spaces_sigma_tilde_for_variance_preserving_schedules():
    schedule = SCHEDULES["linear"]
    t = steps.karras(schedule, 9)
    st = (schedule.sigma(t[:-1]) / schedule.alpha(t[:-1])) ** (1 / 7)
    assert torch.allclose(st.diff(), st.diff().mean().expand(8), rtol=1e-6)


@pytest.mark.parametrize("name", ["logsnr", "karras"])
def test_infinite_sigma_tilde_at_the_start(name):
    schedule = SCHEDULES["linear_zero_snr"]
    assert math.isinf(schedule.logsnr(torch.tensor(1.0, dtype=torch.float64)).item())
    t = steps.get(name)(schedule, 6)
    assert t[0] == 1.0 and t[1].item() == pytest.approx(5 / 6)   # first step to the uniform grid's 2nd point
    assert bool(torch.isfinite(schedule.logsnr(t[1:-1])).all())
    assert t[-2].item() == pytest.approx(steps.T_MIN, rel=1e-6)


def test_register_makes_a_placement_available(monkeypatch):
    monkeypatch.setattr(steps, "_REGISTRY", dict(steps._REGISTRY))   # leave the real registry as it was

    def halves(schedule, n, t_max=1.0):
        return torch.cat([t_max * 0.5 ** torch.arange(n, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])

    steps.register("test_halves", halves)
    assert "test_halves" in steps.names() and steps.get("test_halves") is halves
    with pytest.raises(ValueError, match="already registered"):
        steps.register("test_halves", lambda schedule, n, t_max=1.0: None)


def test_bad_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown step placement 'nope'.*karras"):
        steps.get("nope")
    with pytest.raises(ValueError, match="positive integer"):
        steps.karras(SCHEDULES["linear"], 0)
    with pytest.raises(ValueError, match="at most 1000 steps"):
        steps.linspace(SCHEDULES["linear"], 1001)
