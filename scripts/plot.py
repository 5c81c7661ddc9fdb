#!/usr/bin/env python3
"""Draws the plots of docs/BENCHMARKS.md from `parley bench --json` results, as plain SVG.

Usage: python3 scripts/plot.py [RESULTS.jsonl] [OUT_DIR]
       (defaults: docs/plots/results.jsonl docs/plots)

Reads one JSON object per line (what `parley bench ... --json FILE` appends; see
scripts/bench_matrix.sh), keeps the latest run of each configuration, and writes:

- send_throughput.svg: acknowledged messages/s against concurrent senders, one line per
  topology (1 node, 3 nodes) and mode (HTTP, WebSocket);
- send_latency.svg: send latency p50 (dashed) and p99 (solid) against concurrent senders;
- latency_percentiles.svg: p50/p90/p99/max of send (64 senders), delivery at 1,000 msg/s and
  fan-out (last member) for 1 node and 3 nodes, on a log scale;
- history.svg: of the latest `parley bench history` run, sends/s and p99 latency of each slice
  of the fill against the messages stored so far (p99 on the right axis);
- history_memory.svg: the same run's server RSS and disk bytes per message (right axis; only
  with `--data-dir`) against the messages stored so far.

Python 3 standard library only: no plotting package, no system library.
"""

import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 190, 60, 64


def load(path):
    runs = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            runs.append(json.loads(line))
    return runs


def latest(runs, pred):
    chosen = [r for r in runs if pred(r)]
    return max(chosen, key=lambda r: r.get("unix_time", 0)) if chosen else None


def op(run, name):
    for o in run["ops"]:
        if o["name"] == name:
            return o
    return None


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def fmt(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


class Svg:
    def __init__(self, title, subtitle=""):
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            'font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        ]
        if subtitle:
            self.parts.append(f'<text x="{LEFT}" y="38" fill="#555">{escape(subtitle)}</text>')

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, anchor="start", **attrs):
        extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(s)}</text>')

    def line(self, x1, y1, x2, y2, color="#000", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                 f'stroke-width="{width}"{d}/>')

    def save(self, path):
        self.parts.append("</svg>")
        Path(path).write_text("\n".join(self.parts) + "\n")
        print(f"wrote {path}")


def axes(svg, xlabels, ylo, yhi, ylabel, log=False):
    """Draws the frame, y grid and x labels; returns (xpos, ypos) mapping functions."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    if log:
        lo, hi = math.floor(math.log10(max(ylo, 1e-3))), math.ceil(math.log10(max(yhi, 1e-3)))
        hi = max(hi, lo + 1)
        ticks = [10 ** e for e in range(lo, hi + 1)]

        def ypos(v):
            v = max(v, 10 ** lo)
            return TOP + ph - (math.log10(v) - lo) / (hi - lo) * ph
    else:
        ticks = nice_ticks(0, yhi * 1.1)
        top = ticks[-1]

        def ypos(v):
            return TOP + ph - v / top * ph
    for t in ticks:
        y = ypos(t)
        svg.line(LEFT, y, LEFT + pw, y, "#ddd")
        svg.text(LEFT - 6, y + 4, fmt(t), "end")
    svg.line(LEFT, TOP, LEFT, TOP + ph)
    svg.line(LEFT, TOP + ph, LEFT + pw, TOP + ph)
    n = len(xlabels)

    def xpos(i):
        return LEFT + (i + 0.5) * pw / n

    for i, lab in enumerate(xlabels):
        svg.text(xpos(i), TOP + ph + 18, str(lab), "middle")
    svg.add(f'<text transform="translate(18,{TOP + ph / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    return xpos, ypos


def right_axis(svg, yhi, ylabel):
    """Draws a second y axis on the right of the plot area; returns its ypos mapping."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    ticks = nice_ticks(0, yhi * 1.1)
    top = ticks[-1]

    def ypos(v):
        return TOP + ph - v / top * ph

    x = LEFT + pw
    svg.line(x, TOP, x, TOP + ph)
    for t in ticks:
        svg.line(x, ypos(t), x + 4, ypos(t))
        svg.text(x + 7, ypos(t) + 4, fmt(t))
    svg.add(f'<text transform="translate({x + 52},{TOP + ph / 2}) rotate(90)" text-anchor="middle">'
            f'{escape(ylabel)}</text>')
    return ypos


def series(svg, pts, color, dash=None, dots=True):
    """One line through pts, with a dot on each point."""
    d = f' stroke-dasharray="{dash}"' if dash else ""
    svg.add(f'<polyline fill="none" stroke="{color}" stroke-width="2.5"{d} points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
    if dots:
        for x, y in pts:
            svg.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')


def legend(svg, entries, x=None):
    x = W - RIGHT + 16 if x is None else x
    for i, (label, color, dash) in enumerate(entries):
        y = TOP + 10 + i * 20
        svg.line(x, y, x + 24, y, color, 2.5, dash)
        svg.text(x + 30, y + 4, label)


def series_key(r):
    return (r["params"].get("nodes", 1), r["params"].get("mode", "http"))


def send_runs(runs):
    """{(nodes, mode): {concurrency: run}} of the latest send runs (direct conversations)."""
    out = {}
    for r in runs:
        if r["scenario"] != "send" or r["params"].get("kind", "direct") != "direct":
            continue
        c = r["params"]["concurrency"]
        cur = out.setdefault(series_key(r), {}).get(c)
        if cur is None or r.get("unix_time", 0) >= cur.get("unix_time", 0):
            out[series_key(r)][c] = r
    return out


def label_of(key):
    nodes, mode = key
    return f"{nodes} node{'s' if nodes > 1 else ''}, {'WebSocket' if mode == 'ws' else 'HTTP'}"


def plot_send(runs, out_dir):
    by_key = send_runs(runs)
    if not by_key:
        print("no send runs: skipping the send plots")
        return
    conc = sorted({c for s in by_key.values() for c in s})
    date = max(r["date"] for s in by_key.values() for r in s.values())
    keys = sorted(by_key)

    svg = Svg("Durable sends: throughput vs concurrent senders",
              f"messages/s acknowledged, 256-byte bodies, {date}, 2 cores shared by server and client")
    ymax = max(op(r, "send")["per_second"] for s in by_key.values() for r in s.values())
    xpos, ypos = axes(svg, conc, 0, ymax, "messages / s")
    svg.text(LEFT + (W - LEFT - RIGHT) / 2, H - 18, "concurrent senders (WebSocket: 8 requests in flight each)", "middle")
    entries = []
    for i, k in enumerate(keys):
        color = COLORS[i % len(COLORS)]
        pts = [(xpos(conc.index(c)), ypos(op(r, "send")["per_second"])) for c, r in sorted(by_key[k].items())]
        series(svg, pts, color)
        entries.append((label_of(k), color, None))
    legend(svg, entries)
    svg.save(Path(out_dir) / "send_throughput.svg")

    svg = Svg("Durable sends: latency vs concurrent senders",
              f"time to acknowledgement, p99 solid, p50 dashed, log scale, measured {date}")
    lat = [op(r, "send")[q] for s in by_key.values() for r in s.values() for q in ("p50_ms", "p99_ms")]
    xpos, ypos = axes(svg, conc, min(lat), max(lat), "milliseconds", log=True)
    svg.text(LEFT + (W - LEFT - RIGHT) / 2, H - 18, "concurrent senders", "middle")
    entries = []
    for i, k in enumerate(keys):
        color = COLORS[i % len(COLORS)]
        for q, dash in (("p99_ms", None), ("p50_ms", "6,4")):
            pts = [(xpos(conc.index(c)), ypos(op(r, "send")[q])) for c, r in sorted(by_key[k].items())]
            d = f' stroke-dasharray="{dash}"' if dash else ""
            svg.add(f'<polyline fill="none" stroke="{color}" stroke-width="2"{d} points="'
                    + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        entries.append((label_of(k), color, None))
    legend(svg, entries)
    svg.save(Path(out_dir) / "send_latency.svg")


def plot_percentiles(runs, out_dir):
    groups = []
    for nodes in (1, 3):
        r = latest(runs, lambda r: r["scenario"] == "send" and r["params"].get("nodes") == nodes
                   and r["params"].get("mode") == "http" and r["params"].get("concurrency") == 64
                   and r["params"].get("kind", "direct") == "direct")
        if r:
            groups.append((f"send|64 HTTP|{nodes} node{'s' if nodes > 1 else ''}", op(r, "send"), r["date"]))
        r = latest(runs, lambda r: r["scenario"] == "deliver" and r["params"].get("nodes") == nodes)
        if r:
            groups.append((f"delivery|{r['params']['rate']:g}/s|{nodes} node{'s' if nodes > 1 else ''}", op(r, "deliver (to receipt)"), r["date"]))
        r = latest(runs, lambda r: r["scenario"] == "fanout" and r["params"].get("nodes") == nodes)
        if r:
            groups.append((f"fan-out|{r['params']['online']} online|{nodes} node{'s' if nodes > 1 else ''}", op(r, "last member receipt"), r["date"]))
    groups = [g for g in groups if g[1] and g[1].get("p50_ms") is not None]
    if not groups:
        print("no latency runs: skipping latency_percentiles.svg")
        return
    quants = [("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("max_ms", "max")]
    vals = [g[1][q] for g in groups for q, _ in quants]
    date = max(g[2] for g in groups)
    svg = Svg("Latency percentiles, 1 node vs 3 nodes", f"milliseconds, log scale, measured {date}")
    xpos, ypos = axes(svg, [""] * len(groups), max(min(vals), 0.01), max(vals), "milliseconds", log=True)
    pw = W - LEFT - RIGHT
    slot = pw / len(groups)
    bw = slot * 0.8 / len(quants)
    base = H - BOTTOM
    for gi, (label, o, _) in enumerate(groups):
        x0 = LEFT + gi * slot + slot * 0.1
        for qi, (q, _) in enumerate(quants):
            y = ypos(o[q])
            svg.add(f'<rect x="{x0 + qi * bw:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" height="{base - y:.1f}" '
                    f'fill="{COLORS[qi]}"/>')
        words = label.split("|")
        for li, w in enumerate(words):
            svg.text(LEFT + (gi + 0.5) * slot, base + 14 + li * 13, w, "middle", font_size="10")
    legend(svg, [(name, COLORS[i], None) for i, (_, name) in enumerate(quants)])
    svg.save(Path(out_dir) / "latency_percentiles.svg")


def plot_history(runs, out_dir):
    r = latest(runs, lambda r: r["scenario"] == "history" and r.get("rows"))
    if not r:
        print("no history runs: skipping history.svg and history_memory.svg")
        return
    rows = r["rows"]
    p = r["params"]
    nodes = p.get("nodes", 1)
    sub = (f"{p.get('messages', 0):,} messages, {p.get('concurrency')} HTTP senders, {p.get('body_bytes')}-byte bodies, "
           f"{nodes} node{'s' if nodes > 1 else ''}, {r['date']}")
    labels = [fmt(row["stored"]) for row in rows]
    xlabel = "messages stored so far (one point per slice of the fill)"
    legend_x = W - RIGHT + 60

    svg = Svg("History: sends/s and p99 latency as the history grows", sub)
    xpos, ypos = axes(svg, labels, 0, max(row["sends_per_second"] for row in rows), "sends / s (201s)")
    ypos2 = right_axis(svg, max(row["p99_ms"] for row in rows), "p99 ms")
    svg.text(LEFT + (W - LEFT - RIGHT) / 2, H - 18, xlabel, "middle")
    series(svg, [(xpos(i), ypos(row["sends_per_second"])) for i, row in enumerate(rows)], COLORS[0])
    series(svg, [(xpos(i), ypos2(row["p99_ms"])) for i, row in enumerate(rows)], COLORS[1], "6,4")
    legend(svg, [("sends/s", COLORS[0], None), ("p99 (right)", COLORS[1], "6,4")], legend_x)
    svg.save(Path(out_dir) / "history.svg")

    rss = [sum(kb or 0 for kb in row["rss_kb"]) / 1024 for row in rows]
    per_msg = [(row.get("bytes_per_message") or {}).get("total") for row in rows]
    svg = Svg("History: server memory and disk per message as the history grows", sub)
    xpos, ypos = axes(svg, labels, 0, max(rss + [1]), "server RSS, MiB (all targets)")
    svg.text(LEFT + (W - LEFT - RIGHT) / 2, H - 18, xlabel, "middle")
    series(svg, [(xpos(i), ypos(v)) for i, v in enumerate(rss)], COLORS[2])
    entries = [("RSS MiB", COLORS[2], None)]
    if all(v is not None for v in per_msg):
        ypos2 = right_axis(svg, max(max(per_msg), 1), "disk bytes / message, per node")
        series(svg, [(xpos(i), ypos2(v)) for i, v in enumerate(per_msg)], COLORS[3], "6,4")
        entries.append(("B/msg (right)", COLORS[3], "6,4"))
    legend(svg, entries, legend_x)
    svg.save(Path(out_dir) / "history_memory.svg")


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else "docs/plots/results.jsonl"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "docs/plots"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    runs = load(results)
    plot_send(runs, out_dir)
    plot_percentiles(runs, out_dir)
    plot_history(runs, out_dir)


if __name__ == "__main__":
    main()
