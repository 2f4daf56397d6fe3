"""The engine's diffusion from a recipe's [diffusion] section, and the shared cache folder."""
import copy
import json
from pathlib import Path

import pytest
import torch

from multidiff import schedules
from multidiff.cache import cache_dir
from multidiff.engine.config import ENGINE_DEFAULTS, load_recipe
from multidiff.engine.diffusion import from_config
from multidiff.engine.errors import UserError
from multidiff.parameterizations import EDMPrediction, VPrediction
from multidiff.weightings import EDMWeighting, MinSNR

SAVED_RUN = Path(__file__).resolve().parents[2] / "runs-shared" / "mnist" / "config.json"


def section(**values):
    return {**copy.deepcopy(ENGINE_DEFAULTS["diffusion"]), **values}


def test_every_value_reaches_its_object():
    d = from_config(section(schedule="linear", schedule_args={"logsnr_shift": -1.0}, prediction="edm",
                            sigma_data=0.8, weighting="edm", p_mean=-0.5, p_std=1.5))
    assert repr(d.schedule) == repr(schedules.get("linear", logsnr_shift=-1.0))
    assert isinstance(d.prediction, EDMPrediction) and d.prediction.sigma_data == 0.8
    assert isinstance(d.weighting, EDMWeighting)
    assert (d.weighting.sigma_data, d.weighting.p_mean, d.weighting.p_std) == (0.8, -0.5, 1.5)
    d = from_config(section(prediction="v", weighting="min_snr", min_snr_gamma=3.0))
    assert isinstance(d.prediction, VPrediction) and isinstance(d.weighting, MinSNR) and d.weighting.gamma == 3.0


@pytest.mark.skipif(not SAVED_RUN.is_file(), reason="no reference run in /work/runs-shared")
def test_a_config_written_by_an_earlier_version_builds():
    d = from_config(json.loads(SAVED_RUN.read_text())["diffusion"])
    t = torch.tensor([0.5], dtype=torch.float64)
    assert torch.isfinite(d.prediction.x0_error_scale(d.schedule.alpha(t), d.schedule.sigma(t))).all()


def test_a_bad_value_is_one_line_naming_the_section():
    with pytest.raises(UserError, match=r"\[diffusion\]: edm prediction needs sigma_data > 0") as err:
        load_recipe("toy2d", overrides=["diffusion.prediction=edm", "diffusion.sigma_data=0"])
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown diffusion.weighting 'snr'; choose one of: uniform, min_snr, edm"):
        load_recipe("toy2d", overrides=["diffusion.weighting=snr"])


def test_cache_dir_follows_multidiff_cache(monkeypatch, tmp_path):
    from modalities.points.data import cache_root

    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path))
    assert cache_dir("image") == tmp_path / "image" and cache_root() == tmp_path / "points"
    monkeypatch.delenv("MULTIDIFF_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "multidiff"
