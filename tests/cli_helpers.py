"""The command line driven in this process, and tiny toy2d runs trained through it (for the CLI tests)."""
from pathlib import Path

from click.testing import CliRunner

from multidiff.cli import main


def invoke(*args):
    """``multidiff ARGS`` in this process; paths and numbers are passed as text."""
    return CliRunner().invoke(main, [str(a) for a in args])


def train_toy2d(out: Path, settings) -> Path:
    """A toy2d quick run in ``out`` with ``--set`` for each of ``settings``; the test fails if training does."""
    result = invoke("train", "toy2d", "--preset", "quick", *[a for s in settings for a in ("--set", s)], "--out", out)
    assert result.exit_code == 0, result.output
    return out
