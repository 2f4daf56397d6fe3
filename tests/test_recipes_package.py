"""The built-in recipes are package data: a wheel carries them, and an installed multidiff lists
and trains them from any folder."""
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from multidiff.engine.config import RECIPES_DIR, list_recipes

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_are_found_as_package_resources():
    found = sorted(p.name for p in (resources.files("multidiff") / "recipes").iterdir() if p.name.endswith(".toml"))
    assert found == sorted(p.name for p in RECIPES_DIR.glob("*.toml"))
    assert {"toy2d", "tones", "shapes", "primitives"} <= {name for name, _ in list_recipes()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built by setuptools from a copy of the sources (the checkout itself stays untouched)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("multidiff", "modalities"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = src / "dist"
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                                          "build_meta.build_wheel(sys.argv[1])", str(dist)],
                   cwd=src, check=True, capture_output=True)
    return next(dist.glob("multidiff-*.whl"))


def test_the_wheel_carries_every_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"multidiff/recipes/{p.name}" for p in RECIPES_DIR.glob("*.toml")}
    assert expected and expected <= names


def test_an_installed_wheel_lists_and_trains_a_recipe_from_any_folder(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "MULTIDIFF_CACHE": str(tmp_path / "cache")}
    tiny = ["model.hidden=8", "model.depth=1", "model.time_dim=8", "data.n_train=64", "data.n_test=64",
            "train.batch_size=16", "train.steps=2", "train.ckpt_every=2", "train.sample_every=0", "sample.n=4",
            "sample.steps=2"]
    train = ["train", "toy2d", *[a for s in tiny for a in ("--set", s)], "--out", "run"]
    # one interpreter, so torch is imported once: `multidiff recipes`, then `multidiff train toy2d ...`
    script = ("import sys, multidiff; from multidiff.cli import main; print(multidiff.__file__); "
              "main(['recipes'], standalone_mode=False); main(sys.argv[1:], standalone_mode=False)")
    done = subprocess.run([sys.executable, "-c", script, *train], cwd=elsewhere, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    where, *printed = done.stdout.splitlines()
    assert where.startswith(str(site))  # the installed copy, not the checkout
    assert {"toy2d", "shapes", "tones"} <= {line.split()[0] for line in printed if line.strip()}
    assert (elsewhere / "run" / "checkpoints" / "last.safetensors").is_file()
