"""The identity graph picture (pure: no database)."""

from __future__ import annotations

import re

from profiles.graph_svg import MAX_NODES, GraphEdge, GraphNode, identity_graph_svg


def test_nodes_edges_and_the_merge_edge_are_drawn_and_text_is_escaped():
    nodes = [GraphNode(1, "user_id", "u1"), GraphNode(2, "email", '<script>alert("x")</script>'),
             GraphNode(3, "anonymous_id", "a1")]  # fmt: skip
    edges = [GraphEdge(1, 2, "m1", merge=False), GraphEdge(2, 3, "m<2>", merge=True), GraphEdge(1, 9, "m3", False)]
    picture = identity_graph_svg(nodes=nodes, edges=edges)
    assert "<script>" not in picture.svg and "&lt;script&gt;" in picture.svg
    assert re.findall(r'data-id="(\d+)"', picture.svg) == ["1", "2", "3"]
    assert re.findall(r'<line class="(edge(?: merge)?)" data-a="(\d)" data-b="(\d)"', picture.svg) == [
        ("edge", "1", "2"),
        ("edge merge", "2", "3"),
    ]  # fmt: skip  (the edge to an unknown node is left out)
    assert "merge triggered by message m&lt;2&gt;" in picture.svg
    assert picture.merge_edges == 1 and picture.nodes_drawn == picture.nodes_total == 3
    assert identity_graph_svg(nodes=nodes, edges=edges).svg == picture.svg  # the same graph, the same picture


def test_a_huge_graph_is_capped_and_says_so():
    nodes = [GraphNode(i, "anonymous_id", f"a{i}") for i in range(MAX_NODES + 40)]
    edges = [GraphEdge(i, i + 1, f"m{i}", merge=False) for i in range(MAX_NODES + 39)]
    picture = identity_graph_svg(nodes=nodes, edges=edges)
    assert (picture.nodes_drawn, picture.nodes_total) == (MAX_NODES, MAX_NODES + 40)
    assert picture.svg.count('class="node"') == MAX_NODES and picture.svg.count("<line") == MAX_NODES - 1


def test_one_identifier_and_none():
    assert identity_graph_svg(nodes=[GraphNode(1, "user_id", "solo")], edges=[]).svg.count('class="node"') == 1
    assert identity_graph_svg(nodes=[], edges=[]).nodes_drawn == 0
