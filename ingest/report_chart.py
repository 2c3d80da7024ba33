"""The campaign report's plot: opens and clicks over time as an inline SVG (no script, no
CDN), machine opens and bot clicks drawn apart. Pure: buckets in, markup out."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from profiles.email_report import Bucket

WIDTH, HEIGHT = 760, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 16, 16, 48
SERIES = (
    ("opens", "Opens (people)", "#2a6fdb"),
    ("machine_opens", "Machine opens", "#9aa5b1"),
    ("clicks", "Clicks (people)", "#1f9d55"),
    ("bot_clicks", "Bot clicks", "#e3a008"),
)


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 4:
            return step * 4
    return value


def timeline_svg(buckets: Sequence[Bucket], *, bucket: str) -> SafeString:
    """Grouped bars per time bucket, one colour per series, with axes and a legend."""
    if not buckets:
        return mark_safe('<p class="help">No opens or clicks yet.</p>')
    top = _nice_max(max(max(b.opens, b.machine_opens, b.clicks, b.bot_clicks) for b in buckets))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / len(buckets)
    bar = max(min(slot * 0.8 / len(SERIES), 18.0), 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="campaign-timeline" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">',
        "<title>Opens and clicks per " + escape(bucket) + "</title>",
    ]
    for i in range(5):
        value = top * i // 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{value}</text>')
    label_every = max(1, len(buckets) // 8)
    fmt = "%d %b %H:00" if bucket == "hour" else "%d %b"
    for index, b in enumerate(buckets):
        x0 = _LEFT + index * slot + (slot - bar * len(SERIES)) / 2
        for s, (attr, label, colour) in enumerate(SERIES):
            value = getattr(b, attr)
            h = plot_h * value / top
            x, y = x0 + s * bar, _TOP + plot_h - h
            parts.append(
                f'<rect class="bar-{attr}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)} {b.at.strftime(fmt)}: {value}</title></rect>"
            )
        if index % label_every == 0:
            cx = _LEFT + index * slot + slot / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{HEIGHT - _BOTTOM + 16}" text-anchor="middle" fill="#555">'
                f"{escape(b.at.strftime(fmt))}</text>"
            )
    for s, (_, label, colour) in enumerate(SERIES):
        x = _LEFT + s * 150
        parts.append(f'<rect x="{x}" y="{HEIGHT - 18}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 9}" fill="#333">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text is escaped above; the rest are numbers
