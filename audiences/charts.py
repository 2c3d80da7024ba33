"""An audience's size over time as inline SVG (no script, no CDN; it prints): members per day
as a line over an area, and below it entries up and exits down per day. A sparkline of the
same for lists. Pure: days in, markup out (the campaign report's chart style,
`ingest/report_chart.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

if TYPE_CHECKING:
    from audiences.selectors import Day

WIDTH, HEIGHT = 760, 300
_LEFT, _RIGHT, _TOP = 56, 16, 16
_SIZE_H, _GAP, _MOVES_H = 150, 26, 70  # the size panel, the space for dates, the entries/exits panel
SIZE_COLOUR, ENTRY_COLOUR, EXIT_COLOUR = "#2a6fdb", "#1f9d55", "#d64545"


_STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8)


def nice_max(value: int) -> int:
    """The axis' top, 4 ticks of a round whole step (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 or 8 times a
    power of ten) above the value: 42 → 60 (ticks of 15), 290 → 300."""
    if value <= 0:
        return 4
    scale = 1
    while True:
        for m in _STEPS:
            step = m * scale
            if step == int(step) and value <= step * 4:
                return int(step * 4)
        scale *= 10


def _n(value: int) -> str:
    return f"{value:,}"


def size_svg(days: Sequence[Day]) -> SafeString:
    """Members at the end of each day, and entries and exits per day."""
    if not days:
        return mark_safe('<p class="help">No history yet.</p>')
    plot_w = WIDTH - _LEFT - _RIGHT
    step = plot_w / len(days)
    top = nice_max(max(d.size for d in days))
    moves_top = nice_max(max(max(d.entries, d.exits) for d in days))
    size_bottom = _TOP + _SIZE_H
    zero = size_bottom + _GAP + _MOVES_H / 2
    half = _MOVES_H / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="audience-size-chart" class="ab-chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11" '
        f'preserveAspectRatio="xMinYMin meet">',
        f"<title>Members per day, with entries and exits, {days[0].day:%d %b %Y} to {days[-1].day:%d %b %Y}</title>",
    ]
    for i in range(5):
        y = size_bottom - _SIZE_H * i / 4
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_n(top * i // 4)}</text>')
    for value, y in ((moves_top, zero - half), (0, zero), (moves_top, zero + half)):
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_n(value)}</text>')
    points = [(_LEFT + step * (i + 0.5), size_bottom - _SIZE_H * d.size / top) for i, d in enumerate(days)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    area = f"{points[0][0]:.1f},{size_bottom} {line} {points[-1][0]:.1f},{size_bottom}"
    parts.append(f'<polygon points="{area}" fill="{SIZE_COLOUR}" fill-opacity="0.12"/>')
    parts.append(f'<polyline class="size-line" points="{line}" fill="none" stroke="{SIZE_COLOUR}" stroke-width="2"/>')
    bar = max(min(step * 0.7, 14.0), 1.0)
    label_every = max(1, len(days) // 6)
    for i, d in enumerate(days):
        x = _LEFT + step * i + (step - bar) / 2
        if d.entries:
            h = half * d.entries / moves_top
            parts.append(f'<rect class="bar-entries" x="{x:.1f}" y="{zero - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{ENTRY_COLOUR}"/>')  # fmt: skip
        if d.exits:
            h = half * d.exits / moves_top
            parts.append(f'<rect class="bar-exits" x="{x:.1f}" y="{zero:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{EXIT_COLOUR}"/>')  # fmt: skip
        # A hover target per day (a tooltip with the day's numbers), the whole height.
        parts.append(
            f'<rect class="day" data-day="{d.day.isoformat()}" data-size="{d.size}" x="{_LEFT + step * i:.1f}" '
            f'y="{_TOP}" width="{step:.1f}" height="{zero + half - _TOP:.1f}" fill="transparent">'
            f"<title>{d.day:%a %d %b %Y}: {_n(d.size)} members, {_n(d.entries)} entered, {_n(d.exits)} exited</title>"
            "</rect>"
        )
        if i % label_every == 0 or i == len(days) - 1:
            parts.append(f'<text x="{_LEFT + step * (i + 0.5):.1f}" y="{size_bottom + 17}" text-anchor="middle" '
                         f'fill="#555">{d.day:%d %b}</text>')  # fmt: skip
    legend = (("Members", SIZE_COLOUR), ("Entered", ENTRY_COLOUR), ("Exited", EXIT_COLOUR))
    for s, (label, colour) in enumerate(legend):
        x = _LEFT + s * 110
        parts.append(f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 5}" fill="#333">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # only numbers, dates and the fixed labels (escaped) above


def sparkline_svg(sizes: Sequence[int], *, width: int = 120, height: int = 28) -> SafeString:
    """A small line of sizes (oldest first), scaled to its own range, for lists."""
    if len(sizes) < 2:
        return mark_safe("")
    lo, hi = min(sizes), max(sizes)
    span = (hi - lo) or 1
    step = (width - 4) / (len(sizes) - 1)
    pts = " ".join(
        f"{2 + i * step:.1f},{height - 3 - (height - 6) * (s - lo) / span if hi > lo else height / 2:.1f}"
        for i, s in enumerate(sizes)
    )
    change = sizes[-1] - sizes[0]
    trend = f"{'+' if change >= 0 else '-'}{_n(abs(change))}"
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{_n(sizes[0])} to {_n(sizes[-1])} ({trend}) over '
        f'{len(sizes)} days</title><polyline points="{pts}" fill="none" stroke="{SIZE_COLOUR}" stroke-width="1.5"/>'
        "</svg>"
    )
