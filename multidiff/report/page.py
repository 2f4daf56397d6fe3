"""The HTML of a report: one page for one run, or for several side by side.

Every section takes the list of runs; each run gets a colour in the charts and a column in the tables
and media grids, so one run is the one-column case of a comparison.
"""
from __future__ import annotations

import json
import math
import time
from html import escape
from pathlib import Path

from multidiff.engine import evaluations
from multidiff.engine.metrics_log import smoothed, smoothing_span
from multidiff.report.ceilings import split_ceilings
from multidiff.report.charts import PALETTE, Level, Series, line_chart
from multidiff.report.run_data import RunData
from multidiff.report.samples import SampleSet

GENERATOR = "multidiff report"


def render(runs: list[RunData], previews: list[list[tuple[int, str]]], samples: list[SampleSet | None]) -> str:
    """The page; ``previews`` and ``samples`` are per run, their files relative to the report folder."""
    title = (f"{runs[0].name}: multidiff report" if len(runs) == 1
             else f"multidiff: {len(runs)} runs compared ({', '.join(r.name for r in runs)})")
    style = f"--runs: {len(runs)}"
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">Generated {escape(time.strftime("%Y-%m-%d %H:%M"))} from '
            f'{", ".join(f"<code>{escape(str(r.path))}</code>" for r in runs)}.</p>',
            _nav(),
            _section("summary", "Summary", _summary(runs)),
            _section("config", "Recipe and resolved config", _config(runs)),
            _section("training", "Training curves", _curves(runs)),
            _section("evaluation", "Evaluation", _evaluation(runs)),
            _section("previews", "Previews over training", _columns(runs, [_timeline(p) for p in previews], style)),
            _section("samples", "Latest samples", _columns(runs, [_samples(s) for s in samples], style))]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="{GENERATOR}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>"
            f'<link rel="stylesheet" href="assets/report.css"></head>\n<body>\n' + "\n".join(body) +
            '\n<script src="assets/viewer.js"></script>\n<script src="assets/timeline.js"></script>\n</body></html>\n')


def _nav() -> str:
    links = [("summary", "Summary"), ("config", "Config"), ("training", "Curves"), ("evaluation", "Evaluation"),
             ("previews", "Previews"), ("samples", "Samples")]
    return "<nav>" + " ".join(f'<a href="#{k}">{v}</a>' for k, v in links) + "</nav>"


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n{content}\n</section>'


def _columns(runs: list[RunData], cells: list[str], style: str) -> str:
    return (f'<div class="runs" style="{style}">' +
            "".join(f'<div class="run"><h3 style="color:{_colour(i)}">{escape(r.name)}</h3>{cell}</div>'
                    for i, (r, cell) in enumerate(zip(runs, cells))) + "</div>")


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _number(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&mdash;"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}g}"


def _duration(seconds) -> str:
    if seconds is None:
        return "&mdash;"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02d} s" if minutes else f"{seconds:.1f} s"


def _summary(runs: list[RunData]) -> str:
    def memory(s):
        parts = [f"{s['peak_rss_mib']:,.0f} MiB RAM" if "peak_rss_mib" in s else "",
                 f"{s['peak_cuda_mib']:,.0f} MiB GPU" if "peak_cuda_mib" in s else ""]
        return ", ".join(p for p in parts if p) or "&mdash;"

    def best(r):
        metric = r.cfg["train"].get("best_metric")
        best_file = r.path / "checkpoints" / evaluations.BEST_NAME
        if not metric or not best_file.is_file() or not r.training_evals:
            return "&mdash;"
        from multidiff.engine.checkpoint import read_metadata

        step = read_metadata(best_file)[1]
        row = next((row for row in r.training_evals if row["step"] == step), {})
        return f"step {step:,}: {escape(metric)} = {_number(row.get(metric))}"

    def last_loss(r):
        if not r.metrics:
            return "&mdash;"
        loss = [m["loss"] for m in r.metrics]
        return f"{_number(loss[-1])} (smoothed {_number(smoothed(loss)[-1])})"

    not_recorded = '<span class="faint">not recorded</span>'
    fields = [
        ("recipe", lambda r: escape(r.cfg["name"] + (f" (preset {r.cfg['preset']})" if r.cfg.get("preset") else ""))),
        ("modality", lambda r: escape(r.cfg["modality"])),
        ("description", lambda r: escape(r.cfg.get("description", ""))),
        ("trained steps", lambda r: f"{_number(r.step)} of {_number(r.cfg['train']['steps'])}"),
        ("parameters", lambda r: _number(r.parameters)),
        ("data", lambda r: escape(_data_text(r.cfg))),
        ("wall time", lambda r: _duration(r.summary.get("wall_time_s"))),
        ("steps / s", lambda r: _number(r.summary.get("steps_per_s"), 3)),
        ("peak memory", lambda r: memory(r.summary)),
        ("device", lambda r: escape(" ".join(str(r.summary[k]) for k in ("device", "device_name") if k in r.summary))
         + (f" &times; {r.summary['processes']}" if r.summary.get("processes", 1) > 1 else "") or not_recorded),
        ("torch", lambda r: escape(r.summary.get("torch", "")) or not_recorded),
        ("multidiff", lambda r: escape(r.summary.get("multidiff", "")) or not_recorded),
        ("finished", lambda r: escape(r.summary.get("finished", "")) or not_recorded),
        ("last loss", last_loss),
        ("best checkpoint", best),
    ]
    return _table(["", *[_run_head(i, r) for i, r in enumerate(runs)]],
                  [[name, *[get(r) for r in runs]] for name, get in fields], "summary")


def _run_head(i: int, r: RunData) -> str:
    return f'<span style="color:{_colour(i)}">{escape(r.name)}</span>'


def _data_text(cfg: dict) -> str:
    d = cfg.get("dataset")
    if not d:
        return ""
    classes = d.get("class_names") or []
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    return (f"{d['size']:,} examples of shape {tuple(d['shape'])}" +
            (f"; {len(classes)} classes: {shown}" if classes else "; no classes"))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config(runs: list[RunData]) -> str:
    parts = []
    if len(runs) > 1:
        flat = [_flatten({k: v for k, v in r.cfg.items() if k != "dataset"}) for r in runs]
        keys = sorted({k for f in flat for k in f if len({json.dumps(g.get(k)) for g in flat}) > 1})
        rows = [[f"<code>{escape(k)}</code>", *[escape(json.dumps(f.get(k))) if k in f else "&mdash;" for f in flat]]
                for k in keys]
        parts.append("<p>Settings that differ between the runs:</p>" +
                     (_table(["key", *[_run_head(i, r) for i, r in enumerate(runs)]], rows, "config")
                      if rows else "<p>none: the runs share one config.</p>"))
    for r in runs:
        shown = {k: v for k, v in r.cfg.items() if k != "dataset"}
        parts.append(f"<details><summary>{escape(r.name)}: resolved config "
                     f"(recipe <code>{escape(r.cfg['name'])}</code>)</summary>"
                     f"<pre>{escape(json.dumps(shown, indent=2))}</pre></details>")
    return "\n".join(parts)


def _curves(runs: list[RunData]) -> str:
    loss, lr = [], []
    for i, r in enumerate(runs):
        if not r.metrics:
            continue
        steps = [m["step"] for m in r.metrics]
        values = [m["loss"] for m in r.metrics]
        prefix = f"{r.name}: " if len(runs) > 1 else ""
        loss.append(Series(f"{prefix}raw", steps, values, _colour(i), 1.0, 0.3, in_legend=False))
        span = smoothing_span(len(values))
        loss.append(Series(f"{prefix}loss" + (f", EMA over ~{span} points" if span > 1 else ""), steps,
                           smoothed(values, span), _colour(i)))
        lr.append(Series(f"{prefix}learning rate", steps, [m["lr"] for m in r.metrics], _colour(i)))
    if not loss:
        return '<p class="empty">No metrics.csv: nothing was logged.</p>'
    return ('<div class="charts">' + line_chart(loss, title="loss (raw faint, smoothed bold)", ylabel="loss",
                                                log_y=all(v > 0 for s in loss for v in s.ys)) +
            line_chart(lr, title="learning rate", ylabel="lr") + "</div>")


def _evaluation(runs: list[RunData]) -> str:
    return _evaluation_curves(runs) + "\n" + _evaluation_table(runs) + "\n" + _evaluation_records(runs)


def _evaluation_curves(runs: list[RunData]) -> str:
    """One chart per metric over the training steps: evals.csv, else the saved evaluations."""
    per_run = []
    for r in runs:
        rows = r.training_evals or [{"step": e["step"], **evaluations.metrics_of(e)} for e in r.evals]
        per_run.append(rows)
    names = list(dict.fromkeys(k for rows in per_run for row in rows for k in split_ceilings(row)[0] if k != "step"))
    if not names:
        return ('<p class="empty">No evaluations yet: set <code>train.eval_every</code> to evaluate during training, '
                'or run <code>multidiff eval RUN</code>.</p>')
    charts = []
    for name in names:
        series, levels = [], []
        for i, (r, rows) in enumerate(zip(runs, per_run)):
            prefix = f"{r.name}: " if len(runs) > 1 else ""
            points = [(row["step"], row[name]) for row in rows if name in row]
            if points:
                series.append(Series(f"{prefix}{name}", [p[0] for p in points], [p[1] for p in points], _colour(i)))
            if rows:
                for kind, value in split_ceilings({k: v for k, v in rows[-1].items() if k != "step"})[1].get(name, {}).items():
                    levels.append(Level(f"{prefix}{kind}", value, _colour(i)))
        charts.append(line_chart(series, title=name, ylabel=name, levels=levels, width=420, height=260))
    source = ("Evaluations during training (<code>evals.csv</code>; dashed: the same metric on real data)"
              if any(r.training_evals for r in runs) else "Saved evaluations by checkpoint step")
    return f"<p>{source}.</p><div class=\"charts\">{''.join(charts)}</div>"


def _evaluation_table(runs: list[RunData]) -> str:
    latest = [evaluations.latest(r.path) for r in runs]
    if not any(latest):
        return ""
    kinds, names, split = [], [], []
    for found in latest:
        model, ceilings = split_ceilings(evaluations.metrics_of(found[1])) if found else ({}, {})
        split.append((model, ceilings))
        names += [k for k in [*model, *ceilings] if k not in names]
        kinds += [k for c in ceilings.values() for k in c if k not in kinds]
    header = ["metric"]
    for i, r in enumerate(runs):
        header += [_run_head(i, r)] + [f"{_run_head(i, r)}<br><small>ceiling: {escape(k)}</small>" for k in kinds]
    rows = []
    for name in names:
        row = [f"<code>{escape(name)}</code>"]
        for model, ceilings in split:
            row += [_number(model.get(name))] + [_number(ceilings.get(name, {}).get(k)) for k in kinds]
        rows.append(row)
    origin = "; ".join(f"{escape(r.name)}: {_origin(found)}" for r, found in zip(runs, latest) if found)
    return f"<h3>Latest evaluation</h3><p class=\"meta\">{origin}</p>" + _table(header, rows, "evaluation")


def _origin(found) -> str:
    origin, result = found
    settings = result.get("settings") or {}
    text = f"<code>{escape(origin)}</code>, step {result['step']:,}"
    if "n" in result:
        text += f", {result['n']} samples"
    if settings:
        text += ", " + ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in settings.items())
    return text


def _evaluation_records(runs: list[RunData]) -> str:
    out = []
    for r in runs:
        if len(r.evals) < 2:
            continue
        names = list(dict.fromkeys(k for e in r.evals for k in evaluations.metrics_of(e)))
        rows = [[escape(e["file"]), _number(e["step"]), _number(e.get("n")),
                 escape(", ".join(f"{k} {v}" for k, v in (e.get("settings") or {}).items())),
                 *[_number(evaluations.metrics_of(e).get(k)) for k in names]] for e in r.evals]
        out.append(f"<details><summary>{escape(r.name)}: all {len(r.evals)} saved evaluations</summary>" +
                   _table(["file", "step", "n", "settings", *[escape(k) for k in names]], rows, "records") + "</details>")
    return "\n".join(out)


def _timeline(previews: list[tuple[int, str]]) -> str:
    if not previews:
        return '<p class="empty">No previews (RUN/previews/step_*.png).</p>'
    frames = json.dumps([{"step": s, "src": src} for s, src in previews])
    last_step, last_src = previews[-1]
    thumbs = "".join(f'<button type="button" data-index="{i}" title="step {s:,}"><img src="{escape(src)}" alt="step {s}" '
                     f'><span>{s:,}</span></button>' for i, (s, src) in enumerate(previews))
    return (f'<div class="timeline" data-frames="{escape(frames)}">'
            f'<label>step <output>{last_step:,}</output> '
            f'<input type="range" min="0" max="{len(previews) - 1}" value="{len(previews) - 1}" step="1"></label>'
            f'<img class="frame" src="{escape(last_src)}" alt="preview at step {last_step}">'
            f'<div class="strip">{thumbs}</div></div>')


def _samples(sample_set: SampleSet | None) -> str:
    if sample_set is None:
        return '<p class="empty">No samples and no checkpoint to draw them from.</p>'
    out = [f'<p class="meta">Samples: {escape(sample_set.origin)}.</p>']
    for src in sample_set.pictures:
        out.append(f'<img class="picture" src="{escape(src)}" alt="samples">')
    for label, items in sample_set.classes.items():
        out.append(f'<div class="class"><h4>{escape(label) or "no class"}</h4>')
        images = [s for s in items if s.kind == "image"]
        if images:
            out.append('<div class="images">' + "".join(f'<img src="{escape(s.src)}" alt="{escape(label)}">'
                                                          for s in images) + "</div>")
        for s in (s for s in items if s.kind == "audio"):
            out.append(f'<figure class="clip"><img src="{escape(s.picture)}" alt="spectrogram of {escape(s.src)}">'
                       f'<audio controls preload="metadata" src="{escape(s.src)}"></audio>'
                       f'<figcaption>{escape(Path(s.src).name)}</figcaption></figure>')
        clouds = [s for s in items if s.kind == "cloud"]
        if clouds:
            out.append('<div class="clouds">')
            for s in clouds:
                data_id = "cloud-" + "".join(c if c.isalnum() else "-" for c in s.src)
                out.append(f'<figure><canvas class="cloud" width="260" height="260" data-points="{data_id}" '
                           f'title="drag to rotate, wheel to zoom, double-click to reset"></canvas>'
                           f'<figcaption>{escape(Path(s.src).name)}</figcaption></figure>'
                           f'<script type="application/json" id="{data_id}">{json.dumps(s.points)}</script>')
            out.append("</div>")
        out.append("</div>")
    return "\n".join(out)
