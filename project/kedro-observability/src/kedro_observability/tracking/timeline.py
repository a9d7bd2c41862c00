"""The run's timeline: its nodes over time, one row per worker process or thread.

Drawn in the helper process from the same recorded spans as the trace: a bar per node
(green when it succeeded, red when it failed), its loads and saves as lighter bars before
and after it (Kedro loads a node's inputs before the node's function runs and saves its
outputs after), as a PNG (matplotlib, Agg) and a self-contained HTML page (inline SVG, no
script). A bar is labelled with its node's name where it is wide enough; the HTML shows
every node's name and times on hover, for runs of hundreds of nodes.
"""

from __future__ import annotations

import html
import io
from typing import Any

NODE_OK = "#3b8e4f"
NODE_ERROR = "#c8423b"
LOAD = "#9cc3e6"
SAVE = "#f2c57c"
ROW_HEIGHT = 26


def _rows(spans: list[dict[str, Any]]) -> tuple[list[str], int]:
    """The rows (process/thread) in order of their first span, and the run's first start."""
    ordered = sorted(spans, key=lambda each: each["start_ns"])
    rows: list[str] = []
    for each in ordered:
        label = _row(each)
        if label not in rows:
            rows.append(label)
    return rows, (ordered[0]["start_ns"] if ordered else 0)


def _row(span: dict[str, Any]) -> str:
    return f"pid {span['pid']} · {span['thread']}"


def _color(span: dict[str, Any]) -> str:
    if span["kind"] == "load":
        return LOAD
    if span["kind"] == "save":
        return SAVE
    return NODE_ERROR if span.get("status") == "ERROR" else NODE_OK


def timeline_png(spans: list[dict[str, Any]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows, origin = _rows(spans)
    end_s = max([(each["start_ns"] + each["duration_ns"] - origin) / 1e9 for each in spans] or [1.0]) or 1.0
    figure = Figure(figsize=(12, 1.4 + 0.7 * max(1, len(rows))), dpi=100)
    axes = figure.subplots()
    # One collection per row and colour: hundreds of nodes draw in a fraction of a second.
    bars: dict[tuple[int, str, float], list[tuple[float, float]]] = {}
    for each in spans:
        start = (each["start_ns"] - origin) / 1e9
        width = max(each["duration_ns"] / 1e9, end_s / 2000)
        height = 0.6 if each["kind"] == "node" else 0.4
        bars.setdefault((rows.index(_row(each)), _color(each), height), []).append((start, width))
    for (y, color, height), ranges in sorted(bars.items(), key=lambda item: item[0][2]):
        axes.broken_barh(ranges, (y - height / 2, height), facecolors=color, edgecolor="none")
    # Each node's name over its loads, run and saves, where there is room for it.
    for name, (row, first, last) in _node_extents(spans, rows, origin).items():
        if (last - first) / end_s * 1100 > 5.5 * len(name) or len(spans) < 60:
            middle = min(max((first + last) / 2, end_s * 0.04), end_s * 0.96)
            axes.text(middle, row - 0.33, name, ha="center", va="bottom", fontsize=7)
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.75)
    axes.set_xlim(0, end_s * 1.01)
    axes.set_xlabel("seconds since the run's first node or load")
    axes.set_title(title, fontsize=10, loc="left")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(
        handles=[Patch(color=NODE_OK, label="node"), Patch(color=NODE_ERROR, label="failed node"), Patch(color=LOAD, label="load"), Patch(color=SAVE, label="save")],
        loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4, fontsize=8, frameon=False, borderaxespad=0.2,
    )  # fmt: skip
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _node_extents(spans: list[dict[str, Any]], rows: list[str], origin: int) -> dict[str, tuple[int, float, float]]:
    """Node -> (row, first start, last end) in seconds, its loads and saves included."""
    extents: dict[str, tuple[int, float, float]] = {}
    for each in spans:
        name = each["name"] if each["kind"] == "node" else each.get("node")
        if not name:
            continue
        start = (each["start_ns"] - origin) / 1e9
        end = start + each["duration_ns"] / 1e9
        row, first, last = extents.get(name, (rows.index(_row(each)), start, end))
        extents[name] = (row, min(first, start), max(last, end))
    return extents


def timeline_html(spans: list[dict[str, Any]], title: str) -> str:
    rows, origin = _rows(spans)
    end_s = max([(each["start_ns"] + each["duration_ns"] - origin) / 1e9 for each in spans] or [1.0]) or 1.0
    label_width, width = 220, 1000
    scale = width / end_s
    height = ROW_HEIGHT * max(1, len(rows)) + 30
    parts = []
    for index, row in enumerate(rows):
        y = index * ROW_HEIGHT
        parts.append(f'<text x="{label_width - 6}" y="{y + ROW_HEIGHT * 0.65:.1f}" text-anchor="end" font-size="11">{html.escape(row)}</text>')
    for each in sorted(spans, key=lambda span: span["kind"] == "node"):
        start = (each["start_ns"] - origin) / 1e9
        seconds = each["duration_ns"] / 1e9
        y = rows.index(_row(each)) * ROW_HEIGHT
        inset = 3 if each["kind"] == "node" else 7
        x = label_width + start * scale
        bar = max(seconds * scale, 0.5)
        what = each["name"] if each["kind"] == "node" else f"{each['kind']} {each['name']} (node {each.get('node')})"
        tip = f"{what}: {start:.3f} s → {start + seconds:.3f} s ({seconds * 1000:.1f} ms){' — ' + each['error'] if each.get('error') else ''}"
        parts.append(
            f'<rect x="{x:.2f}" y="{y + inset}" width="{bar:.2f}" height="{ROW_HEIGHT - 2 * inset}" fill="{_color(each)}">'
            f"<title>{html.escape(tip)}</title></rect>"
        )
        if each["kind"] == "node" and seconds * scale > 7 * len(each["name"]):
            parts.append(f'<text x="{x + bar / 2:.2f}" y="{y + ROW_HEIGHT * 0.65:.1f}" text-anchor="middle" font-size="10" fill="white" pointer-events="none">{html.escape(each["name"])}</text>')
    for tick in range(11):
        x = label_width + width * tick / 10
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 25}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" font-size="10">{end_s * tick / 10:.2f} s</text>')
    legend = " ".join(f'<span style="background:{color};padding:0 .6em;margin-left:1em"></span> {name}' for name, color in [("node", NODE_OK), ("failed node", NODE_ERROR), ("load", LOAD), ("save", SAVE)])
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 20}" height="{height}">{"".join(parts)}</svg>'
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title></head>"
        '<body style="font-family:sans-serif">'
        f"<h3>{html.escape(title)}</h3><p>{len([s for s in spans if s['kind'] == 'node'])} nodes; hover a bar for its times.{legend}</p>"
        f'<div style="overflow-x:auto">{svg}</div></body></html>\n'
    )
