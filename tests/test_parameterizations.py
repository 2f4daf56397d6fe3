"""Predictions, the loss and guidance against closed forms."""
import math

import pytest
import torch

import multidiff
from multidiff import pilot_steps, schedules
from multidiff.analytic import GaussianMixture
from multidiff.guidance import drop_labels, guided
from multidiff.losses import diffusion_loss
from multidiff.parameterizations import (Denoiser, EDMPrediction, EpsPrediction, VPrediction, X0Prediction, get,
                                         names)
from multidiff.weightings import EDMWeighting

SCHEDULES = {"cosine": schedules.get("cosine"), "edm": schedules.get("edm"), "linear": schedules.get("linear")}
MIX = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, 0.0]], [0.5, 0.6])


def oracle(x0, noise, schedule, prediction):
    """A network that knows the clean data and the noise: it returns the exact target."""
    def model(x_in, t, cond):
        t = t.double()
        return get(prediction).target(x0, noise, schedule.alpha(t), schedule.sigma(t)).to(x_in.dtype)
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


PREDICTION_OBJECTS = [EpsPrediction(), X0Prediction(), VPrediction(), EDMPrediction(), EDMPrediction(sigma_data=1.7)]


@pytest.mark.parametrize("prediction", PREDICTION_OBJECTS, ids=repr)
def test_target_round_trips_to_x0_and_the_error_scale_is_the_output_coefficient(prediction):
    # At random (alpha, sigma) (on the unit circle for v), x_t = alpha x0 + sigma noise: the target fed back
    # through the x0 coefficients gives x0, and an output error delta moves x0_hat by x0_error_scale * delta.
    gen = torch.Generator().manual_seed(3)
    alpha = 0.05 + 2 * torch.rand(7, generator=gen, dtype=torch.float64)
    sigma = 0.01 + 5 * torch.rand(7, generator=gen, dtype=torch.float64)
    if isinstance(prediction, VPrediction):
        alpha, sigma = alpha / alpha.hypot(sigma), sigma / alpha.hypot(sigma)
    x0, noise, delta = (torch.randn(7, 2, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    x_t = alpha[:, None, None] * x0 + sigma[:, None, None] * noise
    coefficients = [c[:, None, None] for c in prediction.x0_coefficients(alpha, sigma)]
    target = prediction.target(x0, noise, alpha, sigma)
    assert torch.allclose(prediction.to_x0(x_t, target, *coefficients), x0, atol=1e-10)
    moved = prediction.to_x0(x_t, target + delta, *coefficients) - x0
    assert torch.allclose(moved.abs(), prediction.x0_error_scale(alpha, sigma)[:, None, None] * delta.abs(), atol=1e-10)
    assert prediction.needs_alpha == (prediction.name in ("eps", "edm"))


def test_v_target_is_salimans_ho():
    # v = alpha eps - sigma x0, and at logSNR 0 (alpha = sigma = 1/sqrt2): v = (eps - x0)/sqrt2
    a = s = torch.tensor([1 / math.sqrt(2)], dtype=torch.float64)
    x0, eps = torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float64)
    assert get("v").target(x0, eps, a, s).item() == pytest.approx(2 / math.sqrt(2))


@pytest.mark.parametrize("sigma_data,sigma", [(0.5, 2.0), (1.3, 0.2), (0.25, 40.0)])
def test_edm_coefficients_match_the_paper_table(sigma_data, sigma):
    # Karras et al. Table 1 (alpha = 1): c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2),
    # c_in = 1 / sqrt(s^2 + sd^2); the loss weight (s^2 + sd^2) / (s sd)^2 is 1 / c_out^2.
    edm = EDMPrediction(sigma_data=sigma_data)
    one, s = torch.tensor([1.0], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64)
    c_skip, c_out, c_in = (c.item() for c in edm.preconditioning(one, s))
    norm = math.sqrt(sigma**2 + sigma_data**2)
    assert (c_skip, c_out, c_in) == pytest.approx((sigma_data**2 / norm**2, sigma * sigma_data / norm, 1 / norm))
    assert edm.input_scale(one, s).item() == pytest.approx(1 / norm)
    assert edm.x0_error_scale(one, s).item() == pytest.approx(c_out)
    # Another alpha: the same table at sigma~ = sigma / alpha, and the network sees c_in x_t / alpha.
    half = torch.tensor([0.5], dtype=torch.float64)
    assert edm.preconditioning(half, s / 2)[0].item() == pytest.approx(c_skip)
    assert edm.input_scale(half, s / 2).item() == pytest.approx(2 / norm)
    assert EDMWeighting(sigma_data=sigma_data).weight(edm, one, s).item() == pytest.approx(1.0)


def test_get_by_name_by_object_and_unknown_names():
    assert names() == ["eps", "x0", "v", "edm"]
    for name, cls in zip(names(), (EpsPrediction, X0Prediction, VPrediction, EDMPrediction)):
        assert type(get(name)) is cls and get(name).name == name
    assert get("edm").sigma_data == 0.5 and get("edm", sigma_data=0.7).sigma_data == 0.7
    edm = EDMPrediction(sigma_data=2.0)
    assert get(edm) is edm
    for bad, message in [(lambda: get("epsilon"), "unknown prediction 'epsilon'; known: eps, x0, v, edm"),
                         (lambda: get(None), "unknown prediction None; known: eps, x0, v, edm"),
                         (lambda: get("eps", sigma_data=1.0), "bad parameters for prediction 'eps'"),
                         (lambda: get(edm, sigma_data=1.0), "go with a prediction name"),
                         (lambda: EDMPrediction(sigma_data=0.0), "sigma_data > 0")]:
        with pytest.raises(ValueError, match=message) as err:
            bad()
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,obj", [("v", VPrediction()), ("edm", EDMPrediction()), ("eps", EpsPrediction())],
                         ids=["v", "edm", "eps"])
def test_a_name_and_its_object_give_identical_results(name, obj):
    schedule = SCHEDULES["cosine"]
    model = MIX.model(name, schedule)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.1, 0.9, 4, dtype=torch.float64)
    assert torch.equal(Denoiser(model, schedule, name)(x, t), Denoiser(model, schedule, obj)(x, t))
    loss = [diffusion_loss(model, x, schedule=schedule, prediction=p, weighting="min_snr",
                           generator=torch.Generator().manual_seed(2)) for p in (name, obj)]
    assert torch.equal(*loss)
    drawn = [multidiff.sample(model, (3, 2), schedule=schedule, sampler="dpmpp_2m_sde", steps=5, prediction=p,
                              generator=torch.Generator().manual_seed(3)) for p in (name, obj)]
    assert torch.equal(*drawn)
    if name == "edm":   # the pilot's reference solve is 400 network calls: one prediction is enough
        pilots = [pilot_steps.fit(model, (4, 2), schedule=schedule, prediction=p, steps=3, reference_steps=100,
                                  generator=torch.Generator().manual_seed(4)) for p in (name, obj)]
        assert pilots[0].tuned == pilots[1].tuned and pilots[0].fitted_for == pilots[1].fitted_for


def test_edm_with_its_own_sigma_data_through_sample_and_loss():
    # A perfect network for EDM preconditioning with sigma_data = 2 samples the exact ODE solution when
    # the sampler is given that prediction, and a wrong answer with the default sigma_data = 0.5.
    schedule = SCHEDULES["edm"]
    edm = EDMPrediction(sigma_data=2.0)
    model = MIX.model(edm, schedule)
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = MIX.ode_solution(noise, schedule)

    def error(prediction):
        x = multidiff.sample(model, noise.shape, schedule=schedule, sampler="dpmpp_3m", steps=60, noise=noise,
                             prediction=prediction)
        return (x - exact).abs().max().item()

    assert error(edm) < 1e-2    # 5e-4
    assert error("edm") > 0.1   # 1.5
    # The oracle for sigma_data = 2 has zero loss under that prediction and a positive one under the default.
    x0, nz = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64), torch.randn(
        5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    perfect = oracle(x0, nz, schedule, edm)
    matched = diffusion_loss(perfect, x0, schedule=schedule, prediction=edm, weighting=EDMWeighting(sigma_data=2.0),
                             t=t, noise=nz)
    assert matched.item() < 1e-20
    assert diffusion_loss(perfect, x0, schedule=schedule, prediction="edm", t=t, noise=nz).item() > 1e-3


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
    with pytest.raises(ValueError, match="unknown prediction 'epsilon'"):
        pilot_steps.fit(lambda x, t, c: x, (2, 1), schedule=s, prediction="epsilon")
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
    # v and x0 need no alpha: at alpha = 0, sigma = 1 the data prediction of v is -v_hat.
    out = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(Denoiser(lambda x, t, c: out, zero_snr, "v")(torch.zeros(2, 3), torch.ones(2)), -out)
    with pytest.raises(ValueError, match="unknown loss weighting"):
        diffusion_loss(lambda x, t, c: x, torch.zeros(2, 3), schedule=s, weighting="snr")
