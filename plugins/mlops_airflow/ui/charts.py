"""Small SVG line charts for the Models page: no JavaScript, no chart library, every label escaped."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT, MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 520, 200, 48, 150, 22, 28
P_VALUE_FLOOR = 1e-12  # a p-value of 0 is drawn here on the log scale


def line_chart(
    series: Mapping[str, Sequence[tuple[str, float]]],
    *,
    title: str,
    log_scale: bool = False,
    threshold: float | None = None,
) -> str:
    """An SVG chart of ``{name: [(ISO day, value), ...]}``; days on x, values on y (log10 when ``log_scale``).

    ``threshold`` draws a dashed line (for example the drift test's alpha). Empty series draw a note instead.
    """
    points = {name: [(dt.date.fromisoformat(day), _y(value, log_scale)) for day, value in values] for name, values in series.items() if values}
    label = escape(title)
    if not points:
        return f'<p class="muted">{label}: no checks recorded yet</p>'
    days = [day for values in points.values() for day, _ in values]
    values = [y for values in points.values() for _, y in values]
    if threshold is not None:
        values.append(_y(threshold, log_scale))
    first, last = min(days), max(days)
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    span_days = max((last - first).days, 1)
    plot_w, plot_h = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(day: dt.date) -> float:
        return MARGIN_LEFT + plot_w * ((day - first).days / span_days if last != first else 0.5)

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h * (1 - (value - low) / (high - low))

    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<text x="{MARGIN_LEFT}" y="14" class="chart-title">{label}</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{MARGIN_LEFT + plot_w}" y2="{MARGIN_TOP + plot_h}" stroke="#999"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{MARGIN_TOP + plot_h}" stroke="#999"/>',
        f'<text x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + 4}" text-anchor="end" class="tick">{_tick(high, log_scale)}</text>',
        f'<text x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + plot_h}" text-anchor="end" class="tick">{_tick(low, log_scale)}</text>',
        f'<text x="{MARGIN_LEFT}" y="{HEIGHT - 8}" class="tick">{first.isoformat()}</text>',
        f'<text x="{MARGIN_LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end" class="tick">{last.isoformat()}</text>',
    ]
    if threshold is not None:
        ty = y(_y(threshold, log_scale))
        parts.append(f'<line x1="{MARGIN_LEFT}" y1="{ty:.1f}" x2="{MARGIN_LEFT + plot_w}" y2="{ty:.1f}" stroke="#c00" stroke-dasharray="4 3"/>')
    for index, (name, values) in enumerate(points.items()):
        color = PALETTE[index % len(PALETTE)]
        coordinates = " ".join(f"{x(day):.1f},{y(value):.1f}" for day, value in values)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coordinates}"><title>{escape(name)}</title></polyline>')
        parts += [f'<circle cx="{x(day):.1f}" cy="{y(value):.1f}" r="2" fill="{color}"/>' for day, value in values]
        legend_y = MARGIN_TOP + 12 * index + 6
        parts.append(f'<rect x="{WIDTH - MARGIN_RIGHT + 10}" y="{legend_y - 7}" width="8" height="8" fill="{color}"/>')
        parts.append(f'<text x="{WIDTH - MARGIN_RIGHT + 22}" y="{legend_y}" class="legend">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _y(value: float, log_scale: bool) -> float:
    return math.log10(max(value, P_VALUE_FLOOR)) if log_scale else value


def _tick(value: float, log_scale: bool) -> str:
    if not log_scale:
        return f"{value:.3g}"
    exponent = round(value)
    return "1" if exponent == 0 else f"1e{exponent}"
