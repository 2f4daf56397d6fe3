"""Loss weightings against their published forms."""
import math

import pytest
import torch

from multidiff import schedules, weightings
from multidiff.parameterizations import get
from multidiff.weightings import EDMWeighting, MinSNR, Uniform

COSINE = schedules.get("cosine")


def test_min_snr_weights_match_hang_et_al():
    # Hang et al. 2023: eps-prediction weight min(snr, g)/snr; v-prediction min(snr, g)/(snr + 1).
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    a, sig = COSINE.alpha(t), COSINE.sigma(t)
    snr = (a / sig) ** 2
    weighting = MinSNR(gamma=5.0)
    assert torch.allclose(weighting.weight(get("eps"), a, sig), snr.clamp(max=5) / snr)
    assert torch.allclose(weighting.weight(get("v"), a, sig), snr.clamp(max=5) / (snr + 1))
    assert torch.allclose(weighting.weight(get("x0"), a, sig), snr.clamp(max=5))
    assert torch.allclose(EDMWeighting().weight(get("edm"), a, sig), torch.ones_like(a))
    assert torch.equal(Uniform().weight(get("v"), a, sig), torch.ones_like(a))


def test_edm_time_sampling_is_log_normal():
    s = schedules.get("edm")
    t = EDMWeighting(p_mean=-1.0, p_std=1.1).times(s, 200_000, generator=torch.Generator().manual_seed(0))
    log_sigma = torch.log(s.sigma(t))
    inside = (log_sigma > math.log(0.002) + 1e-9) & (log_sigma < math.log(80) - 1e-9)
    # Inside the schedule's range the draws are N(p_mean, p_std^2) (only the far tails are clamped).
    assert inside.float().mean() > 0.999
    assert log_sigma[inside].mean().item() == pytest.approx(-1.0, abs=0.01)
    assert log_sigma[inside].std().item() == pytest.approx(1.1, abs=0.01)


def test_uniform_times_cover_the_unit_interval_off_zero():
    t = MinSNR().times(COSINE, 100_000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.float64 and t.min() >= weightings.T_MIN and t.max() <= 1
    assert t.mean().item() == pytest.approx(0.5, abs=0.005)


def test_get_by_name_by_object_and_unknown_names():
    assert weightings.names() == ["uniform", "min_snr", "edm"]
    assert weightings.get("min_snr", gamma=3.0).gamma == 3.0
    edm = EDMWeighting(sigma_data=1.0)
    assert weightings.get(edm) is edm
    with pytest.raises(ValueError, match="unknown loss weighting 'snr'; known: uniform, min_snr, edm"):
        weightings.get("snr")
    with pytest.raises(ValueError, match="bad parameters for loss weighting 'uniform'"):
        weightings.get("uniform", gamma=1.0)
