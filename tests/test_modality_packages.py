"""Conventions every modality package keeps: relative imports inside the package (so it can be
vendored or renamed), and one naming for the real-data ceilings of its evaluation."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from modalities.toy2d import Toy2DModality
from multidiff.engine.config import load_recipe
from multidiff.metrics import frechet_distance

MODALITIES = Path(__file__).resolve().parents[1] / "modalities"


@pytest.mark.parametrize("package", sorted(p.name for p in MODALITIES.iterdir() if (p / "__init__.py").is_file()))
def test_a_modality_imports_its_own_modules_relatively(package):
    absolute = []
    for path in sorted((MODALITIES / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            absolute += [f"{path.name}: {n}" for n in names if n == "modalities" or n.startswith("modalities.")]
    assert absolute == []


def test_toy2d_reports_its_ceiling_as_ceiling_frechet():
    cfg = load_recipe("toy2d", overrides=["data.n_train=600", "data.n_test=500"])
    toy = Toy2DModality()
    train, test = toy.dataset(cfg, "train"), toy.dataset(cfg, "test")
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    scores = toy.evaluate(x, None, cfg, Path("unused"))
    assert set(scores) == {"frechet", "ceiling_frechet"}
    real = train.points[np.random.default_rng(0).permutation(600)[:200]].double().numpy()
    assert scores["ceiling_frechet"] == pytest.approx(frechet_distance(real, test.points.double().numpy()))
    assert scores["frechet"] > 10 * scores["ceiling_frechet"]  # unit noise is far from a ring of radius 2
