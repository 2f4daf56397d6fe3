"""Schedules against their published formulas and against diffusers' discrete tables."""
import math

import pytest
import torch

from multidiff import schedules

T = torch.linspace(0.0005, 0.9995, 997, dtype=torch.float64)


@pytest.mark.parametrize("name", schedules.names())
@pytest.mark.parametrize("extra", [{}, {"logsnr_shift": -2.0}, {"zero_terminal_snr": True}])
def test_monotone_invertible_and_variance(name, extra):
    if name == "edm" and extra.get("zero_terminal_snr"):
        pytest.skip("zero terminal SNR is defined for variance-preserving schedules only")
    s = schedules.get(name, **extra)
    lam = s.logsnr(T)
    assert bool((lam[1:] < lam[:-1]).all()), "logSNR must fall strictly with t"
    assert torch.allclose(s.t_from_logsnr(lam), T, atol=1e-9)
    a, sig = s.alpha(T), s.sigma(T)
    assert torch.allclose(torch.log(a**2 / sig**2), lam, atol=1e-8)
    if s.variance_preserving:
        assert torch.allclose(a**2 + sig**2, torch.ones_like(a), atol=1e-12)
    assert s.sigma(torch.tensor(0.0, dtype=torch.float64)) < 1e-2 * s.sigma(torch.tensor(1.0, dtype=torch.float64))


def test_ddpm_linear_formula():
    # Ho et al.: beta_k = 1e-4 + (0.02 - 1e-4) k / 999, alphas_cumprod_k = prod_{j<=k} (1 - beta_j).
    s = schedules.get("linear")
    k = torch.arange(1000, dtype=torch.float64)
    betas = 1e-4 + (0.02 - 1e-4) * k / 999
    expected = torch.cumprod(1 - betas, 0)
    assert torch.allclose(s.alpha((k + 1) / 1000) ** 2, expected, rtol=1e-5)
    assert s.alpha(torch.tensor(0.0)) == 1.0


@pytest.mark.parametrize("name,kwargs", [("linear", {}), ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
                                         ("linear", {"rescale_betas_zero_snr": True}),
                                         ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012,
                                                            "rescale_betas_zero_snr": True})])
def test_matches_diffusers_alphas_cumprod(name, kwargs):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed")
    ref = diffusers.DDPMScheduler(beta_schedule=name, **kwargs).alphas_cumprod.double()
    zero = kwargs.pop("rescale_betas_zero_snr", False)
    s = schedules.get(name, zero_terminal_snr=zero, **kwargs)
    if not zero:
        assert torch.equal(s.alphas_cumprod.float(), ref.float())
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000  # diffusers timestep k is t = (k + 1) / 1000
    assert torch.allclose(s.alpha(t) ** 2, ref, rtol=2e-6, atol=1e-9)


def test_cosine_formula():
    # Nichol & Dhariwal eq. 17: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t + s) / (1 + s) * pi / 2).
    s = schedules.get("cosine")
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in [0.1, 0.3, 0.5, 0.7, 0.9, 0.99]:
        # The cap rescales time by t_end (within 3e-5 of 1): compare at the rescaled time.
        assert s.alpha(torch.tensor(t, dtype=torch.float64)) ** 2 == pytest.approx(f(t * s.t_end) / f(0), rel=1e-10)
        assert s.alpha(torch.tensor(t, dtype=torch.float64)) ** 2 == pytest.approx(f(t) / f(0), abs=1e-4)
    assert s.logsnr(torch.tensor(1.0)).item() == pytest.approx(-20.0, abs=1e-4)


def test_sigmoid_formula():
    # Chen (2023), Algorithm 1: gamma(t) = (v_end - sigmoid((t (end - start) + start) / tau)) / (v_end - v_start).
    start, end, tau = -3.0, 3.0, 0.7
    s = schedules.get("sigmoid", start=start, end=end, tau=tau)
    sig = lambda x: 1 / (1 + math.exp(-x))
    for t in [0.05, 0.4, 0.8]:
        gamma = (sig(end / tau) - sig((t * s.t_end * (end - start) + start) / tau)) / (sig(end / tau) - sig(start / tau))
        assert s.alpha(torch.tensor(t, dtype=torch.float64)) ** 2 == pytest.approx(gamma, rel=1e-10)


def test_edm_sigma_formula_and_karras_spacing():
    s = schedules.get("edm", sigma_min=0.002, sigma_max=80.0, rho=7.0)
    n = 18
    i = torch.arange(n, dtype=torch.float64)
    # Karras et al. eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho.
    karras = (80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(s.sigma(1 - i / (n - 1)), karras, rtol=1e-12)
    assert torch.equal(s.alpha(torch.rand(5)), torch.ones(5))


def test_logsnr_shift_adds_a_constant():
    base, shifted = schedules.get("cosine"), schedules.get("cosine", logsnr_shift=-2 * math.log(4))
    assert torch.allclose(shifted.logsnr(T) - base.logsnr(T), torch.full_like(T, -2 * math.log(4)))


def test_zero_terminal_snr_reaches_pure_noise():
    s = schedules.get("cosine", zero_terminal_snr=True)
    assert s.alpha(torch.tensor(1.0, dtype=torch.float64)) == 0.0
    assert s.logsnr(torch.tensor(1.0, dtype=torch.float64)) == -math.inf
    # Lin et al. (2024) eq.: sqrt(alpha_bar') = (sqrt(alpha_bar) - sqrt(alpha_bar_T)) / (1 - sqrt(alpha_bar_T))
    base = schedules.get("cosine")
    a, a_end = base.alpha(T), base.alpha(torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(s.alpha(T), (a - a_end) / (1 - a_end), atol=1e-12)


def test_unknown_name_and_bad_parameters():
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        schedules.get("cosin")
    with pytest.raises(ValueError, match="bad parameters"):
        schedules.get("edm", sigma_mn=1.0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        schedules.get("edm", sigma_min=5.0, sigma_max=1.0)


def test_float32_input_comes_back_float32():
    s = schedules.get("linear")
    assert s.alpha(torch.rand(4)).dtype == torch.float32
    assert s.sigma(torch.rand(4, dtype=torch.float64)).dtype == torch.float64
