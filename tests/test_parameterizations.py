"""Parameterizations, the loss and guidance against closed forms."""
import math

import pytest
import torch

from multidiff import schedules
from multidiff.guidance import drop_labels, guided
from multidiff.losses import diffusion_loss, loss_weight
from multidiff.parameterizations import Denoiser, edm_coefficients, names, training_target

SCHEDULES = {"cosine": schedules.get("cosine"), "edm": schedules.get("edm"), "linear": schedules.get("linear")}


def oracle(x0, noise, schedule, prediction):
    """A network that knows the clean data and the noise: it returns the exact target."""
    def model(x_in, t, cond):
        t = t.double()
        return training_target(prediction, x0, noise, schedule.alpha(t), schedule.sigma(t)).to(x_in.dtype)
    return model


@pytest.mark.parametrize("prediction", names())
@pytest.mark.parametrize("sched", ["cosine", "linear", "edm"])
def test_denoiser_recovers_x0_from_the_exact_target(prediction, sched):
    if prediction == "v" and sched == "edm":
        pytest.skip("v is defined for variance-preserving schedules")
    s = SCHEDULES[sched]
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, 4, generator=gen, dtype=torch.float64), torch.randn(6, 3, 4, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 6, dtype=torch.float64)
    x_t = s.alpha(t)[:, None, None] * x0 + s.sigma(t)[:, None, None] * noise
    d = Denoiser(oracle(x0, noise, s, prediction), s, prediction)
    assert torch.allclose(d(x_t, t), x0, atol=1e-8)
    # Each loss of the oracle is zero.
    for w in ["uniform", "min_snr", "edm"]:
        loss = diffusion_loss(oracle(x0, noise, s, prediction), x0, schedule=s, prediction=prediction,
                              weighting=w, t=t, noise=noise)
        assert loss.item() < 1e-12


def test_v_target_is_salimans_ho():
    # v = alpha eps - sigma x0, and at logSNR 0 (alpha = sigma = 1/sqrt2): v = (eps - x0)/sqrt2
    a = s = torch.tensor([1 / math.sqrt(2)], dtype=torch.float64)
    x0, eps = torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float64)
    assert training_target("v", x0, eps, a, s).item() == pytest.approx(2 / math.sqrt(2))


def test_edm_coefficients_match_the_paper_table():
    # Karras et al. Table 1 with sigma = 2, sigma_data = 0.5 (alpha = 1).
    c_skip, c_out, c_in = edm_coefficients(torch.tensor([1.0]), torch.tensor([2.0]), 0.5)
    assert c_skip.item() == pytest.approx(0.25 / 4.25)
    assert c_out.item() == pytest.approx(2 * 0.5 / math.sqrt(4.25))
    assert c_in.item() == pytest.approx(1 / math.sqrt(4.25))


def test_min_snr_weights_match_hang_et_al():
    # Hang et al. 2023: eps-prediction weight min(snr, g)/snr; v-prediction min(snr, g)/(snr + 1).
    s = SCHEDULES["cosine"]
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    a, sig = s.alpha(t), s.sigma(t)
    snr = (a / sig) ** 2
    assert torch.allclose(loss_weight("eps", "min_snr", a, sig, min_snr_gamma=5.0), snr.clamp(max=5) / snr)
    assert torch.allclose(loss_weight("v", "min_snr", a, sig, min_snr_gamma=5.0), snr.clamp(max=5) / (snr + 1))
    assert torch.allclose(loss_weight("x0", "min_snr", a, sig, min_snr_gamma=5.0), snr.clamp(max=5))
    assert torch.allclose(loss_weight("edm", "edm", a, sig), torch.ones_like(a))


def test_mask_excludes_padding_from_the_loss():
    s = SCHEDULES["cosine"]
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 2, 10, generator=gen)
    noise = torch.randn(4, 2, 10, generator=gen)
    t = torch.rand(4, generator=gen, dtype=torch.float64)
    mask = torch.zeros(4, 1, 10)
    mask[..., :6] = 1
    model = lambda x, t, c: torch.zeros_like(x)
    masked = diffusion_loss(model, x0, schedule=s, prediction="eps", t=t, noise=noise, mask=mask)
    cropped = diffusion_loss(model, x0[..., :6], schedule=s, prediction="eps", t=t, noise=noise[..., :6])
    assert masked.item() == pytest.approx(cropped.item(), rel=1e-6)
    # Changing the padded region changes nothing.
    x0b = x0.clone()
    x0b[..., 6:] = 100.0
    assert diffusion_loss(model, x0b, schedule=s, prediction="eps", t=t, noise=noise, mask=mask).item() == pytest.approx(masked.item(), rel=1e-6)


def test_edm_time_sampling_is_log_normal():
    from multidiff.losses import sample_times
    s = SCHEDULES["edm"]
    gen = torch.Generator().manual_seed(0)
    t = sample_times(s, 200_000, "edm", generator=gen)
    log_sigma = torch.log(s.sigma(t))
    inside = (log_sigma > math.log(0.002) + 1e-9) & (log_sigma < math.log(80) - 1e-9)
    # Inside the schedule's range the draws are N(-1.2, 1.2^2) (only the far tails are clamped).
    assert inside.float().mean() > 0.999
    assert log_sigma[inside].mean().item() == pytest.approx(-1.2, abs=0.01)
    assert log_sigma[inside].std().item() == pytest.approx(1.2, abs=0.01)


def test_guidance_combines_branches():
    # D(x, t, c) = x + c: guided output is D_u + w (D_c - D_u) = x + (-1) + w (c + 1).
    def d(x, t, cond):
        return x + cond.to(x.dtype).reshape(-1, 1)
    x = torch.zeros(3, 2)
    cond = torch.tensor([0, 1, 2])
    out = guided(d, 3.0)(x, torch.full((3,), 0.5), cond)
    assert torch.allclose(out, (-1 + 3.0 * (cond + 1)).float().reshape(-1, 1).expand(3, 2))
    assert guided(d, 1.0) is d


def test_drop_labels_fraction():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (20_000,), generator=gen)
    dropped = drop_labels(labels, 0.1, gen)
    frac = (dropped == -1).float().mean().item()
    assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20_000)
    kept = dropped != -1
    assert torch.equal(dropped[kept], labels[kept])


def test_bad_inputs():
    s = SCHEDULES["cosine"]
    with pytest.raises(ValueError, match="unknown prediction 'epsilon'"):
        Denoiser(lambda *a: None, s, "epsilon")
    d = Denoiser(lambda x, t, c: x[:, :1], s, "eps")
    with pytest.raises(ValueError, match="returned shape"):
        d(torch.zeros(2, 3), torch.full((2,), 0.5))
    d = Denoiser(lambda x, t, c: x * float("nan"), s, "eps")
    with pytest.raises(ValueError, match="NaN or Inf at t = 0.5"):
        d(torch.zeros(2, 3), torch.full((2,), 0.5))
    zero_snr = schedules.get("cosine", zero_terminal_snr=True)
    d = Denoiser(lambda x, t, c: x, zero_snr, "eps")
    with pytest.raises(ValueError, match="alpha = 0"):
        d(torch.zeros(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="unknown loss weighting"):
        diffusion_loss(lambda x, t, c: x, torch.zeros(2, 3), schedule=s, weighting="snr")
