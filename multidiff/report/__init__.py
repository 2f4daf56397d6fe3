"""``multidiff report``: a self-contained HTML report of one run, or of several side by side.

The folder holds index.html, assets/ (the page's CSS and JavaScript, from this package) and media/
(copies of the previews and samples), so it opens offline and can be moved or shared as it is.
"""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from multidiff.engine.errors import UserError
from multidiff.report import page
from multidiff.report.run_data import read_run
from multidiff.report.samples import collect

ASSETS = ("report.css", "viewer.js", "timeline.js")


def write_report(runs: list[str | Path], out: str | Path | None = None) -> Path:
    """Write the report of ``runs`` into ``out`` (default RUN/report for one run); return its index.html."""
    if not runs:
        raise UserError("name at least one run folder")
    data = [read_run(r) for r in runs]
    if out is None:
        if len(data) > 1:
            raise UserError("several runs: choose the comparison's folder with --out DIR")
        out = data[0].path / "report"
    out = Path(out)
    _prepare(out)
    assets = out / "assets"
    assets.mkdir(parents=True)
    for name in ASSETS:
        (assets / name).write_bytes(resources.files("multidiff.report").joinpath("static", name).read_bytes())
    previews, samples = [], []
    for i, run in enumerate(data):
        media = out / "media" / f"{i}-{run.name}"
        (media / "previews").mkdir(parents=True)
        previews.append([(step, Path(shutil.copy2(p, media / "previews" / p.name)).relative_to(out).as_posix())
                         for step, p in run.previews])
        samples.append(collect(run, out, media / "samples"))
    index = out / "index.html"
    index.write_text(page.render(data, previews, samples), encoding="utf-8")
    return index


def _prepare(out: Path) -> None:
    """Clear a previous report in ``out``; refuse a folder that holds something else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    index = out / "index.html"
    ours = index.is_file() and f'content="{page.GENERATOR}"' in index.read_text(errors="replace")[:2000]
    if not ours:
        if any(out.iterdir()):
            raise UserError(f"{out} is not empty and holds no multidiff report; choose another --out")
        return
    for name in ("assets", "media"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    index.unlink()
