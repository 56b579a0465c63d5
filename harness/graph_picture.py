"""The picture of one explained graph: each engine node with its array's
bytes, each reference labelled with its path, the cycle's references in red
and the one that closes it drawn thick, weak references dashed.

Drawn with matplotlib's Figure directly (no pyplot, no backend switched, no
system package such as graphviz), as PNG and SVG; the same graph is written
as DOT too, for whoever has graphviz.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

CYCLE = "#c0392b"
PLAIN = "#555555"


def _layout(graph: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """Columns by distance from the output (node 0): the output on the right,
    the leaf on the left; nodes at the same distance stacked."""
    neighbours: dict[int, set[int]] = {n["id"]: set() for n in graph["nodes"]}
    for edge in graph["edges"]:
        neighbours[edge["source"]].add(edge["target"])
        neighbours[edge["target"]].add(edge["source"])
    distance = {0: 0} if neighbours else {}
    queue = deque([0] if neighbours else [])
    while queue:
        v = queue.popleft()
        for w in sorted(neighbours[v]):
            if w not in distance:
                distance[w] = distance[v] + 1
                queue.append(w)
    for n in neighbours:
        distance.setdefault(n, max(distance.values(), default=0) + 1)
    deepest = max(distance.values(), default=0)
    columns: dict[int, list[int]] = {}
    for n, d in sorted(distance.items()):
        columns.setdefault(d, []).append(n)
    return {n: (float(deepest - d), float(i) - (len(members) - 1) / 2)
            for d, members in columns.items() for i, n in enumerate(members)}


def _label(node: dict[str, Any]) -> str:
    return node["type"] + ("" if node["bytes"] is None else f"\n{node['bytes']:,} B")


def draw(found: dict[str, Any]) -> Figure:
    graph = found["graph"]
    where = _layout(graph)
    columns = max((x for x, _ in where.values()), default=0) + 1
    fig = Figure(figsize=(max(6.0, 2.3 * columns), 3.8))
    ax = fig.subplots()
    ax.set_axis_off()
    # Paths between the same two nodes share one arrow, their labels stacked.
    arrows: dict[tuple[int, int, bool], list[dict[str, Any]]] = {}
    for edge in graph["edges"]:
        arrows.setdefault((edge["source"], edge["target"], edge["weak"]), []).append(edge)
    for (source, target, weak), edges in arrows.items():
        (x0, y0), (x1, y1) = where[source], where[target]
        colour = CYCLE if any(e.get("cycle") for e in edges) else PLAIN
        label = "\n".join(e["path"] + (" (weak)" if weak else "") for e in edges)
        style = {"arrowstyle": "-|>", "color": colour, "lw": 3.0 if any(e.get("closing") for e in edges) else 1.3,
                 "linestyle": "--" if weak else "-"}
        if source == target:  # a node's path to itself: a loop over its top
            ax.annotate("", xy=(x0 + 0.12, y0 + 0.17), xytext=(x0 - 0.12, y0 + 0.17),
                        arrowprops={**style, "connectionstyle": "arc3,rad=-1.6"})
            ax.text(x0, y0 + 0.5, label, ha="center", va="bottom", fontsize=7, color=colour)
            continue
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={**style, "shrinkA": 28, "shrinkB": 28, "connectionstyle": "arc3,rad=0.25"})
        # the label sits on the arc's side, so the two directions between a pair do not overlap
        above = x1 < x0
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + (0.22 if above else -0.22), label, ha="center",
                va="bottom" if above else "top", fontsize=7, color=colour)
    for node in graph["nodes"]:
        x, y = where[node["id"]]
        is_function = node["bytes"] is None
        ax.add_patch(FancyBboxPatch((x - 0.32, y - 0.17), 0.64, 0.34,
                                    boxstyle="round,pad=0.02" if is_function else "round,pad=0.02,rounding_size=0.17",
                                    facecolor="#fdebd0" if is_function else "#d6eaf8", edgecolor="black", lw=1))
        ax.text(x, y, _label(node), ha="center", va="center", fontsize=8)
    xs = [x for x, _ in where.values()] or [0.0]
    ys = [y for _, y in where.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 1.0)
    held = OWNERSHIP_WORDS.get(found["ownership"], found["ownership"])
    ax.set_title(f"{found['variant']}: one chain of {found['depth']} {found['op']} ops -- {held}", fontsize=9)
    fig.text(0.01, 0.01, "red: references in a cycle (thick: the one that closes it); dashed: weak; "
             f"Python {found['python']}", fontsize=6.5, color="0.4")
    return fig


OWNERSHIP_WORDS = {"refcount": "freed by reference counting", "cycles": "held by reference cycles",
                   "none": "no graph recorded", "leaked": "not freed", "unknown": "ownership not known"}


def dot(found: dict[str, Any]) -> str:
    graph = found["graph"]
    lines = ["digraph graph_of_one_chain {", "  rankdir=RL;"]
    for node in graph["nodes"]:
        shape = "box" if node["bytes"] is None else "ellipse"
        label = _label(node).replace("\n", "\\n")
        lines.append(f'  n{node["id"]} [shape={shape}, label="{label}"];')
    for edge in graph["edges"]:
        style = ["dashed"] if edge["weak"] else []
        colour = ', color="#c0392b"' if edge.get("cycle") else ""
        width = ", penwidth=3" if edge.get("closing") else ""
        lines.append(f'  n{edge["source"]} -> n{edge["target"]} [label="{edge["path"]}"'
                     f'{", style=" + style[0] if style else ""}{colour}{width}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_pictures(found: dict[str, Any], stem: Path) -> list[Path]:
    """`stem`.png, .svg and .dot, each written atomically."""
    import io

    from harness.results import write_atomic

    stem.parent.mkdir(parents=True, exist_ok=True)
    fig = draw(found)
    written = []
    for suffix in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=120)
        path = stem.with_suffix(f".{suffix}")
        write_atomic(path, buffer.getvalue())
        written.append(path)
    path = stem.with_suffix(".dot")
    write_atomic(path, dot(found))
    written.append(path)
    return written
