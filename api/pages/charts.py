"""Small SVG charts drawn on the server, so the dashboard needs no chart library.

Each function returns markup safe to embed (every label is escaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# The charts' font is set by the .jg-chart rule in dashboard.css (no inline styles: see api.security).


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    colour: str


def _text_width(text: str) -> int:
    """Rough width in pixels of 12 px text: Chinese characters are about twice as wide."""
    return sum(12 if ord(ch) >= 0x2E80 else 7 for ch in text)


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def stacked_bars(
    rows: Sequence[tuple[str, dict[str, float]]],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 560,
    bar: int = 20,
) -> Markup:
    """Horizontal stacked bars, one per row, with the total at the end of each."""
    label_w, gap, top = 190, 8, 28
    plot_w = width - label_w - 60
    height = top + len(rows) * (bar + gap) + 28
    totals = [sum(v.get(s.key, 0) for s in series) for _, v in rows]
    top_value = _nice_max(max(totals, default=0))
    out = [
        f'<svg class="jg-chart" role="img" viewBox="0 0 {width} {height}" width="100%">',
        f"<title>{escape(title)}</title>",
    ]
    y = top
    for (label, values), total in zip(rows, totals, strict=True):
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        x = float(label_w)
        for s in series:
            v = values.get(s.key, 0) or 0
            w = plot_w * v / top_value
            if w > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" fill="{s.colour}">'
                    f"<title>{escape(label)}: {escape(s.label)} {int(v):,}</title></rect>"
                )
            x += w
        out.append(f'<text x="{x + 4:.1f}" y="{y + bar * 0.7:.1f}">{int(total):,}</text>')
        y += bar + gap
    lx = label_w
    for s in series:
        out.append(f'<rect x="{lx}" y="6" width="12" height="12" fill="{s.colour}"/>')
        out.append(f'<text x="{lx + 16}" y="16">{escape(s.label)}</text>')
        lx += 28 + _text_width(s.label)
    out.append(
        f'<line x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{y}" stroke="#999" stroke-width="1"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def percent_bars(
    rows: Sequence[tuple[str, float | None, str]], *, title: str, width: int = 560, bar: int = 18
) -> Markup:
    """One bar per row showing a share from 0 to 100 %; a missing share is drawn as "—"."""
    label_w, gap, top = 190, 8, 10
    plot_w = width - label_w - 70
    height = top + len(rows) * (bar + gap) + 10
    out = [
        f'<svg class="jg-chart" role="img" viewBox="0 0 {width} {height}" width="100%">',
        f"<title>{escape(title)}</title>",
    ]
    y = top
    for label, share, colour in rows:
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        out.append(f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{bar}" fill="#eee"/>')
        if share is not None:
            w = plot_w * max(0.0, min(1.0, share))
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" fill="{colour}"/>'
            )
            text = f"{share * 100:.1f}%"
        else:
            text = "—"
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + bar * 0.7:.1f}">{text}</text>')
        y += bar + gap
    out.append("</svg>")
    return Markup("".join(out))


def lines(
    x_labels: Sequence[str],
    series: Sequence[tuple[Series, Sequence[float]]],
    *,
    title: str,
    width: int = 560,
    height: int = 240,
) -> Markup:
    """A line chart over ``x_labels`` (weeks), with a legend and a labelled y axis."""
    left, right, top, bottom = 48, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((max(v, default=0) for _, v in series), default=0))
    n = max(1, len(x_labels) - 1)

    def px(i: int) -> float:
        return left + plot_w * i / n

    def py(v: float) -> float:
        return top + plot_h * (1 - v / top_value)

    out = [
        f'<svg class="jg-chart" role="img" viewBox="0 0 {width} {height}" width="100%">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        v = top_value * k / 4
        y = py(v)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e3e3e3"/>'
        )
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{int(v):,}</text>')
    for i, label in enumerate(x_labels):
        if i % 2 == 0 or len(x_labels) <= 8:
            out.append(
                f'<text x="{px(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(label)}</text>'
            )
    for s, values in series:
        pts = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(values))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{s.colour}" stroke-width="2.5"/>')
        for i, v in enumerate(values):
            out.append(
                f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="3" fill="{s.colour}">'
                f"<title>{escape(x_labels[i])}: {escape(s.label)} {int(v):,}</title></circle>"
            )
    lx = left
    for s, _ in series:
        out.append(f'<rect x="{lx}" y="6" width="12" height="12" fill="{s.colour}"/>')
        out.append(f'<text x="{lx + 16}" y="16">{escape(s.label)}</text>')
        lx += 28 + _text_width(s.label)
    out.append("</svg>")
    return Markup("".join(out))
