#!/usr/bin/env python3
"""Draw bench/results/sweep.csv (from bench/sweep.sh) as a plain SVG chart, by hand.

Two panels, both against connections on a log scale: throughput (req/s, linear) and p99
latency (ms, log scale), one line per service. A hollow marker means the point had non-200
responses or connection errors. Plain SVG, no script, white background: it renders the same
in a browser and on GitHub.

usage: sweep_svg.py CSV OUT.svg [--date D] [--machine M] [--note TEXT]
"""

import argparse
import csv
import math
from collections import defaultdict
from html import escape

WIDTH, HEIGHT = 1000, 480
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
PANEL_TOP, PANEL_BOTTOM = 112, 400
PANELS = [(85, 470), (585, 970)]  # left and right edge of each plot area
COLORS = {"A": "#1f6fb4", "B": "#e0661a"}
LABELS = {"A": "A  /echo", "B": "B  /call-echo  (B calls A)"}
GRID = "#e3e3e3"
AXIS = "#555"


def read_rows(path):
    """Rows of the CSV grouped by service, sorted by connections."""
    series = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            series[row["service"]].append({
                "conns": int(row["connections"]),
                "rps": float(row["rps"]),
                "p99": float(row["p99_ms"]),
                "p50": float(row["p50_ms"]),
                "bad": int(row["non_200"]) + int(row["errors"]),
            })
    for rows in series.values():
        rows.sort(key=lambda r: r["conns"])
    return dict(sorted(series.items()))


def nice_step(span, ticks=5):
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `ticks` ticks."""
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def fmt_rps(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def fmt_ms(v):
    return f"{v:g}"


class Scale:
    """Maps a value to a pixel, linearly or on a log10 scale."""

    def __init__(self, lo, hi, px_lo, px_hi, log=False):
        self.log = log
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        self.px_lo, self.px_hi = px_lo, px_hi

    def __call__(self, v):
        v = math.log10(v) if self.log else v
        return self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)


def text(x, y, s, size=12, anchor="middle", color="#222", weight="normal", rotate=None):
    extra = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}"{extra}>{escape(s)}</text>')


def line(x1, y1, x2, y2, color, width=1.0, dash=None):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{color}" stroke-width="{width}"{d}/>')


def x_axis(out, xs, conns):
    """Vertical grid lines and labels at each measured connection count."""
    for c in conns:
        x = xs(c)
        out.append(line(x, PANEL_TOP, x, PANEL_BOTTOM, GRID))
        out.append(text(x, PANEL_BOTTOM + 18, str(c), 11, color=AXIS))
    left, right = xs.px_lo, xs.px_hi
    out.append(line(left, PANEL_BOTTOM, right, PANEL_BOTTOM, AXIS))
    out.append(text((left + right) / 2, PANEL_BOTTOM + 40, "connections (log scale)", 12))


def y_axis(out, ys, ticks, label, fmt, left, right, minor=()):
    """Horizontal grid lines with labels on the left edge, and the axis title."""
    for v in minor:
        out.append(line(left, ys(v), right, ys(v), "#f0f0f0"))
    for v in ticks:
        y = ys(v)
        out.append(line(left, y, right, y, GRID))
        out.append(text(left - 8, y + 4, fmt(v), 11, anchor="end", color=AXIS))
    out.append(line(left, PANEL_TOP, left, PANEL_BOTTOM, AXIS))
    mid = (PANEL_TOP + PANEL_BOTTOM) / 2
    out.append(text(left - 58, mid, label, 12, rotate=-90))


def plot_series(out, series, xs, ys, key, unit_fmt):
    """One polyline per service, with a marker per point (hollow when it had failures)."""
    for name, rows in series.items():
        color = COLORS.get(name, "#444")
        pts = [(xs(r["conns"]), ys(r[key]), r) for r in rows if r[key] > 0]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                   f'stroke-width="2.2" stroke-linejoin="round"/>')
        for x, y, r in pts:
            fill = "#fff" if r["bad"] else color
            tip = (f"{name}, {r['conns']} connections: {unit_fmt(r[key])}"
                   + (f" ({r['bad']} non-200 or errors)" if r["bad"] else ""))
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" '
                       f'stroke="{color}" stroke-width="2"><title>{escape(tip)}</title></circle>')


def throughput_panel(out, series, conns):
    left, right = PANELS[0]
    xs = x_scale(conns, left, right)
    top = max((r["rps"] for rows in series.values() for r in rows), default=1) * 1.08
    step = nice_step(top)
    top = math.ceil(top / step) * step
    ys = Scale(0, top, PANEL_BOTTOM, PANEL_TOP)
    ticks = [i * step for i in range(int(round(top / step)) + 1)]
    out.append(text((left + right) / 2, PANEL_TOP - 10, "Throughput (higher is better)", 13,
                    weight="bold"))
    x_axis(out, xs, conns)
    y_axis(out, ys, ticks, "requests per second", fmt_rps, left, right)
    plot_series(out, series, xs, ys, "rps", lambda v: f"{v:,.0f} req/s")


def latency_panel(out, series, conns):
    left, right = PANELS[1]
    xs = x_scale(conns, left, right)
    values = [r["p99"] for rows in series.values() for r in rows if r["p99"] > 0] or [1.0]
    lo, hi = min(values), max(values)
    steps = one_two_five(lo / 10, hi * 10)
    # Bounds on the 1-2-5 grid with a little room, so no point sits on the frame.
    lo = max(v for v in steps if v <= lo * 0.9)
    hi = min(v for v in steps if v >= hi * 1.1)
    ys = Scale(lo, hi, PANEL_BOTTOM, PANEL_TOP, log=True)
    marks = [v for v in steps if lo <= v <= hi]
    decades = [v for v in marks if math.isclose(math.log10(v), round(math.log10(v)))]
    # Few decades: label the 2s and 5s too, so the scale can be read; else only the decades.
    if len(decades) <= 3:
        ticks, minor = marks, []
    else:
        # The ends are labelled too, unless that would crowd a decade's label.
        ends = [b for b in (lo, hi)
                if all(abs(math.log10(b) - math.log10(d)) > 0.45 for d in decades)]
        ticks = sorted(set(decades + ends))
        minor = [v for v in marks if v not in ticks]
    out.append(text((left + right) / 2, PANEL_TOP - 10, "p99 latency (lower is better)", 13,
                    weight="bold"))
    x_axis(out, xs, conns)
    y_axis(out, ys, ticks, "milliseconds (log scale)", fmt_ms, left, right, minor)
    plot_series(out, series, xs, ys, "p99", lambda v: f"p99 {v:g} ms")


def one_two_five(lo, hi):
    """1, 2, 5, 10, 20, 50, ... from below `lo` to above `hi`."""
    out = []
    power = 10.0 ** math.floor(math.log10(lo))
    while not out or out[-1] < hi:
        out.extend(round(m * power, 12) for m in (1, 2, 5))
        power *= 10
    return out


def x_scale(conns, left, right):
    """Log scale over the connection counts, with a little room at both ends."""
    lo, hi = min(conns), max(conns)
    if hi == lo:
        lo, hi = lo / 2, hi * 2
    pad = (math.log10(hi) - math.log10(lo)) * 0.05
    return Scale(10 ** (math.log10(lo) - pad), 10 ** (math.log10(hi) + pad), left, right,
                 log=True)


def legend(out, series):
    x = PANELS[0][0]
    y = 78
    for name in series:
        color = COLORS.get(name, "#444")
        out.append(line(x, y, x + 26, y, color, 2.2))
        out.append(f'<circle cx="{x + 13}" cy="{y}" r="4" fill="{color}" stroke="{color}"/>')
        label = LABELS.get(name, name)
        out.append(text(x + 34, y + 4, label, 12, anchor="start"))
        x += 44 + 7.2 * len(label)
    out.append(f'<circle cx="{x + 13}" cy="{y}" r="4" fill="#fff" stroke="#777" '
               'stroke-width="2"/>')
    out.append(text(x + 24, y + 4, "hollow: some non-200 or errors", 12, anchor="start",
                    color="#666"))


def render(series, date, machine, note):
    conns = sorted({r["conns"] for rows in series.values() for r in rows}) or [1]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{escape(FONT)}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        text(WIDTH / 2, 28, f"echo-lab: throughput and p99 latency vs connections, {date}, "
             f"{machine.split(' (')[0]}", 17, weight="bold"),
        text(WIDTH / 2, 50, f"{machine}; {note}", 12, color="#666"),
    ]
    legend(out, series)
    throughput_panel(out, series, conns)
    latency_panel(out, series, conns)
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
