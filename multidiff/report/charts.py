"""Line charts as inline SVG: no plotting library in the page, nothing fetched, text a browser can search."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

#: Colours of successive runs (colour-blind friendly, after Okabe and Ito).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")
MARGIN = {"left": 64, "right": 16, "top": 28, "bottom": 40}


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    color: str = PALETTE[0]
    width: float = 1.8
    opacity: float = 1.0
    in_legend: bool = True


@dataclass
class Level:
    """A horizontal reference line (e.g. the score of real data)."""
    label: str
    y: float
    color: str = "#555555"


@dataclass
class Axis:
    lo: float
    hi: float
    start: float  # pixel of lo
    end: float    # pixel of hi
    log: bool = False
    ticks: list[float] = field(default_factory=list)

    def __call__(self, v: float) -> float:
        f = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo)) if self.log \
            else (v - self.lo) / (self.hi - self.lo)
        return self.start + f * (self.end - self.start)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0 ** d for d in decades for m in ((1,) if len(decades) > 3 else (1, 2, 5))]
    ticks = [t for t in ticks if lo <= t <= hi]
    return ticks if len(ticks) >= 3 else [t for t in nice_ticks(lo, hi) if t > 0]


def _axis(values: list[float], start: float, end: float, log: bool, pad: float = 0.0) -> Axis:
    lo, hi = min(values), max(values)
    if log:
        lo, hi = (lo, hi) if hi > lo else (lo / 1.5, hi * 1.5)
        return Axis(lo, hi, start, end, True, _log_ticks(lo, hi))
    if hi == lo:
        lo, hi = lo - (abs(lo) or 1) * 0.5, hi + (abs(hi) or 1) * 0.5
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    return Axis(lo, hi, start, end, False, nice_ticks(lo, hi))


def _label(v: float) -> str:
    return f"{v:.3g}" if v == 0 or 1e-3 <= abs(v) < 1e5 else f"{v:.1e}"


def line_chart(series: list[Series], *, title: str, xlabel: str = "step", ylabel: str = "", log_y: bool = False,
               levels: list[Level] = (), width: int = 560, height: int = 300) -> str:
    """An SVG chart of ``series`` (NaN or, on a log axis, non-positive points leave gaps) and ``levels``."""
    finite = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if math.isfinite(y) and (y > 0 or not log_y)]
    if not finite:
        return f'<p class="empty">{escape(title)}: nothing logged yet</p>'
    ys = [y for _, y in finite] + [lv.y for lv in levels if math.isfinite(lv.y) and (lv.y > 0 or not log_y)]
    x_axis = _axis([x for x, _ in finite], MARGIN["left"], width - MARGIN["right"], False)
    y_axis = _axis(ys, height - MARGIN["bottom"], MARGIN["top"], log_y, pad=0.05)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{escape(title)}</text>']
    for t in y_axis.ticks:
        y = y_axis(t)
        out.append(f'<line x1="{MARGIN["left"]}" x2="{width - MARGIN["right"]}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{MARGIN["left"] - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    for t in x_axis.ticks:
        x = x_axis(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN["top"]}" y2="{height - MARGIN["bottom"]}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{height - MARGIN["bottom"] + 14}" text-anchor="middle">{_label(t)}</text>')
    out.append(f'<text x="{(MARGIN["left"] + width - MARGIN["right"]) / 2}" y="{height - 6}" text-anchor="middle">'
               f'{escape(xlabel)}</text>')
    if ylabel:
        out.append(f'<text transform="translate(14 {height / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    for lv in levels:
        if math.isfinite(lv.y) and (lv.y > 0 or not log_y):
            y = y_axis(lv.y)
            out.append(f'<line x1="{MARGIN["left"]}" x2="{width - MARGIN["right"]}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="{lv.color}" stroke-dasharray="5 4" class="level"><title>{escape(lv.label)}: '
                       f'{lv.y:.4g}</title></line>')
    for s in series:
        for piece in _pieces(s, log_y):
            points = " ".join(f"{x_axis(x):.1f},{y_axis(y):.1f}" for x, y in piece)
            if len(piece) == 1:
                x, y = piece[0]
                out.append(f'<circle cx="{x_axis(x):.1f}" cy="{y_axis(y):.1f}" r="3" fill="{s.color}" '
                           f'opacity="{s.opacity}"><title>{escape(s.label)}</title></circle>')
            else:
                out.append(f'<polyline points="{points}" fill="none" stroke="{s.color}" stroke-width="{s.width}" '
                           f'opacity="{s.opacity}"><title>{escape(s.label)}</title></polyline>')
    legend = [(s.label, s.color, "") for s in series if s.in_legend] + [(lv.label, lv.color, "5 4") for lv in levels]
    for i, (label, color, dash) in enumerate(legend):
        y = MARGIN["top"] + 8 + 14 * i
        x = width - MARGIN["right"] - 190
        out.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="2" '
                   f'stroke-dasharray="{dash}"/><text x="{x + 22}" y="{y + 4}" class="legend">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _pieces(s: Series, log_y: bool) -> list[list[tuple[float, float]]]:
    """The runs of consecutive drawable points of a series."""
    pieces, current = [], []
    for x, y in zip(s.xs, s.ys):
        if math.isfinite(y) and (y > 0 or not log_y):
            current.append((x, y))
        elif current:
            pieces.append(current)
            current = []
    return pieces + ([current] if current else [])
