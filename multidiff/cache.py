"""Where multidiff keeps files it can rebuild (evaluation classifiers, sampled meshes, ...)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$MULTIDIFF_CACHE/parts...``, else ``~/.cache/multidiff/parts...`` (not created here)."""
    base = os.environ.get("MULTIDIFF_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "multidiff").joinpath(*parts)
