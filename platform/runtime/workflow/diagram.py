"""A workflow as a server-rendered SVG: states laid out left to right by their distance from the initial
state (states at the same distance stack vertically), an arrow per transition. No JavaScript, no layout library."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from html import escape

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 46, 110, 36, 24


@dataclass(frozen=True)
class Node:
    name: str
    label: str
    color: str
    initial: bool
    final: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    approval: bool = False


def layers(nodes: list[Node], edges: list[Edge]) -> dict[str, int]:
    """Column of each state: breadth-first distance from the initial state; unreachable states go last."""
    start = next((n.name for n in nodes if n.initial), nodes[0].name if nodes else None)
    out: dict[str, int] = {}
    if start is None:
        return out
    out[start] = 0
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        for e in edges:
            if e.source == cur and e.target not in out and any(n.name == e.target for n in nodes):
                out[e.target] = out[cur] + 1
                queue.append(e.target)
    last = max(out.values(), default=0) + 1
    for n in nodes:
        out.setdefault(n.name, last)
    return out


def render_svg(nodes: list[Node], edges: list[Edge], *, title: str = "") -> str:
    col = layers(nodes, edges)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for n in nodes:
        c = col[n.name]
        r = rows.get(c, 0)
        rows[c] = r + 1
        pos[n.name] = (PAD + c * (BOX_W + GAP_X), PAD + 22 + r * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(col.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + 22 + max(rows.values(), default=1) * (BOX_H + GAP_Y) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="wf-svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
             f' aria-label="{escape(title)}">',
             '<defs><marker id="wf-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
             '<path d="M0 0L10 5L0 10z" fill="#64748b"/></marker></defs>']
    seen: dict[tuple[str, str], int] = {}
    sx: float
    sy: float
    tx: float
    ty: float
    for e in edges:
        if e.source not in pos or e.target not in pos:
            continue
        k = seen.get((e.source, e.target), 0)
        seen[(e.source, e.target)] = k + 1
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        dash = ' stroke-dasharray="5 4"' if e.approval else ""
        if col[e.target] > col[e.source]:
            sx, sy = x1 + BOX_W, y1 + BOX_H / 2 + k * 8
            tx, ty = x2, y2 + BOX_H / 2 + k * 8
            mx = (sx + tx) / 2
            path = f"M{sx:.0f} {sy:.0f} C{mx:.0f} {sy:.0f} {mx:.0f} {ty:.0f} {tx:.0f} {ty:.0f}"
            lx, ly = mx, (sy + ty) / 2 - 6
        elif col[e.target] == col[e.source] and y2 != y1:  # within a column: straight up or down
            down = y2 > y1
            sx, sy = x1 + BOX_W / 2 + 12 * k, (y1 + BOX_H) if down else y1
            tx, ty = x2 + BOX_W / 2 + 12 * k, y2 if down else (y2 + BOX_H)
            path = f"M{sx:.0f} {sy:.0f} L{tx:.0f} {ty:.0f}"
            lx, ly = sx + 6, (sy + ty) / 2 + 4
            parts.append(f'<path d="{path}" fill="none" stroke="#64748b" stroke-width="1.5"{dash} marker-end="url(#wf-arrow)"/>')
            parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="start" font-size="11.5" fill="#334155" paint-order="stroke" stroke="#fbfbfd"'
                         f' stroke-width="4">{escape(e.label)}{" ✓" if e.approval else ""}</text>')
            continue
        else:  # backwards (or a loop to itself): a curve under the boxes
            sx, sy = x1 + BOX_W / 2 - 10 * k, y1 + BOX_H
            tx, ty = x2 + BOX_W / 2 + 10 * k, y2 + BOX_H
            dip = max(sy, ty) + 34 + 12 * k
            path = f"M{sx:.0f} {sy:.0f} C{sx:.0f} {dip:.0f} {tx:.0f} {dip:.0f} {tx:.0f} {ty:.0f}"
            lx, ly = (sx + tx) / 2, dip - 2
        parts.append(f'<path d="{path}" fill="none" stroke="#64748b" stroke-width="1.5"{dash} marker-end="url(#wf-arrow)"/>')
        parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle" font-size="11.5" fill="#334155" paint-order="stroke" stroke="#fbfbfd"'
                     f' stroke-width="4">{escape(e.label)}{" ✓" if e.approval else ""}</text>')
    for n in nodes:
        x, y = pos[n.name]
        color = escape(n.color or "#94a3b8")
        border = ' stroke-width="3"' if n.final else ' stroke-width="1.5"'
        parts.append(f'<g class="wf-node" data-state="{escape(n.name)}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="10" fill="#fff"'
                     f' stroke="{color}"{border}/>')
        parts.append(f'<circle cx="{x + 16}" cy="{y + BOX_H / 2:.0f}" r="5" fill="{color}"/>')
        parts.append(f'<text x="{x + 28}" y="{y + BOX_H / 2 - 3:.0f}" font-size="13" font-weight="600" fill="#0f172a">{escape(n.label[:18])}</text>')
        parts.append(f'<text x="{x + 28}" y="{y + BOX_H / 2 + 12:.0f}" font-size="10.5" fill="#64748b">{escape(n.name)}</text>')
        if n.initial:
            parts.append(f'<path d="M{x - 18} {y + BOX_H / 2:.0f}h14" stroke="#0f172a" stroke-width="1.5" marker-end="url(#wf-arrow)"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def diagram_of(body: dict, locale: str) -> str:
    """The SVG of a raw workflow document (used by the designer before it is saved, so it tolerates gaps)."""
    def label(raw, fallback):
        if isinstance(raw, dict):
            return raw.get("zh" if locale == "zh" else "en") or raw.get("en") or raw.get("zh") or fallback
        return fallback

    nodes = [Node(s.get("name", ""), label(s.get("label"), s.get("name", "")), s.get("color", ""), bool(s.get("initial")), bool(s.get("final")))
             for s in body.get("states", []) if isinstance(s, dict) and s.get("name")]
    edges = []
    for t in body.get("transitions", []):
        if not isinstance(t, dict):
            continue
        sources = t["from"] if isinstance(t.get("from"), list) else [t.get("from")]
        for s in sources:
            edges.append(Edge(str(s), str(t.get("to")), label(t.get("label"), t.get("name", "")), bool(t.get("approval"))))
    return render_svg(nodes, edges, title=label(body.get("label"), body.get("name", "")))
