"""A profile's identity graph drawn as inline SVG (pure: no ORM, no clock).

Identifiers are nodes coloured by kind, `IdentityLink`s are edges, and an edge whose message
triggered a merge is drawn red and dashed. networkx lays the graph out (spring layout with a
fixed seed, so the same graph always draws the same picture); the SVG is plain markup the
admin inlines, so the page works offline and needs no JavaScript.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import networkx as nx

# Drawing more than this many identifiers makes an unreadable hairball and costs a spring
# layout O(n²) per iteration (150 nodes: ~40 ms); the page says how many were left out.
MAX_NODES = 150
# Near the card's on-screen size, so 13px labels stay 13px; the side margin fits a label.
WIDTH, HEIGHT, MARGIN_X, MARGIN_Y = 600, 340, 90, 36

KIND_COLOURS = {
    "user_id": "#2b6cb0",
    "email": "#2f855a",
    "anonymous_id": "#b7791f",
    "ga_client_id": "#805ad5",
    "android.id": "#319795",
    "ios.id": "#319795",
    "ios.idfa": "#4a5568",
    "android.idfa": "#4a5568",
}
_OTHER = ("#c05621", "#d53f8c", "#2c7a7b", "#6b46c1", "#718096", "#975a16")


def kind_colour(kind: str) -> str:
    """A fixed colour per well-known kind; other kinds get a stable colour from their name."""
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    return _OTHER[int(hashlib.sha1(kind.encode()).hexdigest(), 16) % len(_OTHER)]


@dataclass(frozen=True, slots=True)
class GraphNode:
    id: int
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class GraphEdge:
    a: int
    b: int
    message_id: str
    merge: bool  # this edge's first message triggered a merge


@dataclass(frozen=True, slots=True)
class GraphPicture:
    svg: str  # escaped markup, safe to inline
    nodes_drawn: int
    nodes_total: int
    merge_edges: int


def _label(value: str, width: int = 22) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def identity_graph_svg(*, nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> GraphPicture:
    """Lay out and draw the graph. Only the first MAX_NODES nodes (in the order given) and the
    edges between them are drawn. Every text in the output is HTML-escaped."""
    drawn = list(nodes[:MAX_NODES])
    ids = {n.id for n in drawn}
    kept = [e for e in edges if e.a in ids and e.b in ids and e.a != e.b]
    graph = nx.Graph()
    graph.add_nodes_from(n.id for n in drawn)
    graph.add_edges_from((e.a, e.b) for e in kept)
    positions = nx.spring_layout(graph, seed=7, k=1.6 / max(1, len(drawn)) ** 0.5) if drawn else {}
    xs = [float(p[0]) for p in positions.values()] or [0.0]
    ys = [float(p[1]) for p in positions.values()] or [0.0]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0

    def at(node_id: int) -> tuple[float, float]:
        x, y = positions[node_id]
        if len(drawn) == 1:
            return WIDTH / 2, HEIGHT / 2
        return (
            MARGIN_X + (float(x) - min(xs)) / span_x * (WIDTH - 2 * MARGIN_X),
            MARGIN_Y + (float(y) - min(ys)) / span_y * (HEIGHT - 2.4 * MARGIN_Y),
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="identity-graph" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="Identity graph: {len(drawn)} identifiers, {len(kept)} links">'
    ]
    for e in sorted(kept, key=lambda e: e.merge):  # merge edges on top
        (x1, y1), (x2, y2) = at(e.a), at(e.b)
        css = "edge merge" if e.merge else "edge"
        tip = f"merge triggered by message {e.message_id}" if e.merge else f"seen together in message {e.message_id}"
        parts.append(
            f'<line class="{css}" data-a="{e.a}" data-b="{e.b}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" '
            f'y2="{y2:.1f}"><title>{escape(tip)}</title></line>'
        )
    for n in drawn:
        x, y = at(n.id)
        full = escape(f"{n.kind}: {n.value}")
        parts.append(
            f'<g class="node" data-id="{n.id}" data-kind="{escape(n.kind)}" data-value="{escape(n.value)}">'
            f"<title>{full}</title>"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="11" fill="{kind_colour(n.kind)}"/>'
            f'<text x="{x:.1f}" y="{y + 26:.1f}" text-anchor="middle">{escape(_label(n.value))}</text></g>'
        )
    parts.append("</svg>")
    return GraphPicture(
        svg="".join(parts), nodes_drawn=len(drawn), nodes_total=len(nodes), merge_edges=sum(e.merge for e in kept)
    )


def graph_legend(kinds: Sequence[str]) -> list[tuple[str, str]]:
    """(kind, colour) for the kinds present, in order of first appearance."""
    seen: dict[str, str] = {}
    for kind in kinds:
        seen.setdefault(kind, kind_colour(kind))
    return list(seen.items())
