#!/usr/bin/env python3
"""Draw bench/results/overload-DATE.csv (from bench/overload.sh) as a plain SVG chart, by hand,
the way sweep_svg.py draws the connection sweep (its helpers are reused).

Two panels against offered load as a multiple of A's capacity: goodput (200s answered within
B's 1 s deadline, as a fraction of the capacity; 1.0 is every worker doing useful work) and
the 200s' p99 latency (ms, log scale); one line per B.

usage: overload_svg.py CSV OUT.svg [--date D] [--machine M] [--note TEXT]
"""

import argparse
import csv
import math
from collections import defaultdict
from html import escape

from sweep_svg import (AXIS, FONT, GRID, PANEL_BOTTOM, PANEL_TOP, PANELS, Scale, line,
                       one_two_five, text)

WIDTH, HEIGHT = 1000, 500
PALETTE = ["#1f6fb4", "#e0661a", "#2a9d4b", "#c0392b", "#8e44ad", "#7f8c8d", "#b8860b",
           "#17becf", "#444444"]


def read_rows(path):
    """Rows grouped by B, in the order they first appear, sorted by load."""
    series = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            series[row["b"]].append({"load": float(row["load"]),
                                     "goodput": float(row["goodput"]),
                                     "p99": float(row["ok_p99_ms"])})
    for rows in series.values():
        rows.sort(key=lambda r: r["load"])
    return series


def x_axis(out, xs, loads):
    for v in loads:
        out.append(line(xs(v), PANEL_TOP, xs(v), PANEL_BOTTOM, GRID))
        out.append(text(xs(v), PANEL_BOTTOM + 18, f"{v:g}x", 11, color=AXIS))
    out.append(line(xs.px_lo, PANEL_BOTTOM, xs.px_hi, PANEL_BOTTOM, AXIS))
    out.append(text((xs.px_lo + xs.px_hi) / 2, PANEL_BOTTOM + 40,
                    "offered load, times A's capacity", 12))


def y_axis(out, ys, ticks, label, fmt, left, right):
    for v in ticks:
        out.append(line(left, ys(v), right, ys(v), GRID))
        out.append(text(left - 8, ys(v) + 4, fmt(v), 11, anchor="end", color=AXIS))
    out.append(line(left, PANEL_TOP, left, PANEL_BOTTOM, AXIS))
    out.append(text(left - 50, (PANEL_TOP + PANEL_BOTTOM) / 2, label, 12, rotate=-90))


def plot(out, series, colors, xs, ys, key, tip):
    for name, rows in series.items():
        pts = [(xs(r["load"]), ys(r[key]), r) for r in rows if r[key] > 0]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colors[name]}" '
                   f'stroke-width="2.2" stroke-linejoin="round"/>')
        for x, y, r in pts:
            label = escape(f"{name}, {r['load']:g}x: {tip(r[key])}")
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colors[name]}">'
                       f'<title>{label}</title></circle>')


def render(series, date, machine, note):
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    loads = sorted({r["load"] for rows in series.values() for r in rows})
    lo, hi = min(loads), max(loads)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{escape(FONT)}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        text(WIDTH / 2, 28, f"echo-lab under overload: goodput and p99 of the 200s, {date}", 17,
             weight="bold"),
        text(WIDTH / 2, 48, f"{machine}; {note}", 12, color="#666"),
    ]
    # The legend, in two rows if it must.
    x, y = PANELS[0][0], 62
    for name in series:
        if x + 40 + 7 * len(name) > WIDTH - 20:
            x, y = PANELS[0][0], y + 17
        out.append(line(x, y, x + 24, y, colors[name], 2.2))
        out.append(text(x + 30, y + 4, name, 12, anchor="start"))
        x += 48 + 7 * len(name)
    left, right = PANELS[0]
    xs = Scale(lo - 0.1, hi + 0.1, left, right)
    top = max(1.2, max(r["goodput"] for rows in series.values() for r in rows) * 1.05)
    ys = Scale(0, top, PANEL_BOTTOM, PANEL_TOP)
    out.append(text((left + right) / 2, PANEL_TOP - 10, "Goodput (higher is better)", 13,
                    weight="bold"))
    x_axis(out, xs, loads)
    y_axis(out, ys, [i * 0.2 for i in range(int(top / 0.2) + 1)], "fraction of capacity",
           lambda v: f"{v:.1f}", left, right)
    out.append(line(left, ys(1.0), right, ys(1.0), "#999", 1.0, "4 3"))
    plot(out, series, colors, xs, ys, "goodput", lambda v: f"goodput {v:.2f} of capacity")
    left, right = PANELS[1]
    xs = Scale(lo - 0.1, hi + 0.1, left, right)
    values = [r["p99"] for rows in series.values() for r in rows if r["p99"] > 0] or [1.0]
    steps = one_two_five(min(values) / 10, max(values) * 10)
    ylo = max(v for v in steps if v <= min(values) * 0.9)
    yhi = min(v for v in steps if v >= max(values) * 1.1)
    ys = Scale(ylo, yhi, PANEL_BOTTOM, PANEL_TOP, log=True)
    out.append(text((left + right) / 2, PANEL_TOP - 10, "p99 of the 200s (lower is better)", 13,
                    weight="bold"))
    x_axis(out, xs, loads)
    y_axis(out, ys, [v for v in steps if ylo <= v <= yhi], "milliseconds (log scale)",
           lambda v: f"{v:g}", left, right)
    plot(out, series, colors, xs, ys, "p99", lambda v: f"p99 {v:g} ms")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("svg")
    ap.add_argument("--date", default="")
    ap.add_argument("--machine", default="")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    series = read_rows(args.csv)
    if not series:
        raise SystemExit(f"error: no rows in {args.csv}")
    with open(args.svg, "w") as f:
        f.write(render(series, args.date, args.machine, args.note))


if __name__ == "__main__":
    main()
