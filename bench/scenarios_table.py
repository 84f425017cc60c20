#!/usr/bin/env python3
"""The python half of bench/scenarios.sh (standard library only).

    scenarios_table.py cell SCENARIO VARIANT RUN_DIR [NOTE]  one table cell as a JSON line
    scenarios_table.py probe URL RATE SECONDS                calls one by one, one line each
    scenarios_table.py recovery VARIANT RUN_DIR              the recovery cell from a probe
    scenarios_table.py table RESULTS.jsonl VARIANT...        the markdown table

RUN_DIR holds what scenarios.sh collected for one row and variant: load.json (loadgen --json),
t0 (when the load started), a<I>.metrics (each A replica's /metrics after the run), and
b-samples (B's per-replica attempt counters, once a second: "t EPOCH" then the series).
"""

import asyncio
import glob
import json
import os
import re
import sys
import time
from urllib.parse import urlsplit

ROWS = [
    ("dead", "dead replica (1 of 3 killed)", "0 errors; stops dialing it within 1 s"),
    ("slow", "slow replica (1 of 3 +300 ms)", "p99 ≤ 10 ms, ≤ 0.5 % of calls to it"),
    ("flaky", "flaky (all 3 answer 500 20 % of the time)", "≥ 99 % ok, load ≤ 1.3×"),
    ("outage", "outage (all 3 answer 500)", "≤ 0.1× load once open; p50 ≤ 1 ms"),
    ("blackhole", "black hole (all 3 never answer)", "p50 ≤ 1 ms, ≤ 1 probe/s to A"),
    ("tail", "tail (5 % of answers 500 ms late)", "p99 ≤ 20 ms at ≤ 1.1× load"),
    ("deadline", "deadline (A takes 1.5 s)", "0 % of A's work finished after B gave up"),
    ("recovery", "recovery (A back after 5 s black hole)",
     "first 200 ≤ 1 s, all 200 ≤ 2 s, and fail-fast while down"),
]
COLUMNS = {"off": "B, patterns off", "pattern": "B, the row's pattern only",
           "resilient": "B `--resilient`",
           "nginx": "nginx as B", "haproxy": "HAProxy as B"}
SERIES = re.compile(r'^(\w+)(?:\{(.*)\})?\s+(\S+)$')


def metrics(path):
    """[(name, {label: value}, number)] from a Prometheus text page."""
    out = []
    try:
        text = open(path).read()
    except OSError:
        return out
    for line in text.splitlines():
        m = SERIES.match(line)
        if not m or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            pass
    return out


def a_counts(run):
    """Per replica of A (by file index): /echo answered, /echo answered 200, abandoned (None
    when A does not count abandoned work)."""
    counts = {}
    for path in sorted(glob.glob(os.path.join(run, "a*.metrics"))):
        i = int(re.search(r"a(\d+)\.metrics$", path).group(1))
        answered = ok = 0.0
        abandoned = None
        for name, labels, value in metrics(path):
            if name == "echo_lab_requests_total" and labels.get("endpoint") == "/echo":
                answered += value
                if labels.get("status") == "200":
                    ok += value
            elif name == "echo_lab_abandoned_total":
                abandoned = (abandoned or 0.0) + value
        counts[i] = (answered, ok, abandoned)
    return counts


def a_load(run):
    """Every /echo A's replicas answered. Abandoned work is answered too (503, counted among
    echo_lab_requests_total); only a black-holed request never is."""
    return sum(answered for answered, _, _ in a_counts(run).values())


def b_samples(run, name="echo_lab_upstream_replica_attempts_total"):
    """[(seconds since the load started, {replica: the counter `name` so far})]: attempts
    ended, or health checks sent."""
    t0 = float(open(os.path.join(run, "t0")).read())
    samples = []
    try:
        lines = open(os.path.join(run, "b-samples")).read().splitlines()
    except OSError:
        return samples
    for line in lines:
        if line.startswith("t "):
            samples.append((float(line[2:]) - t0, {}))
        elif samples:
            for series, labels, value in metrics_line(line):
                if series != name:
                    continue
                replica = labels.get("replica", "?")
                samples[-1][1][replica] = samples[-1][1].get(replica, 0.0) + value
    return [(t, c) for t, c in samples if c]


def metrics_line(line):
    m = SERIES.match(line)
    if not m:
        return []
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
    return [(m.group(1), labels, float(m.group(3)))]


def pct(part, whole):
    return 100.0 * part / whole if whole else 0.0


def cell(scenario, variant, run, note):
    load = json.load(open(os.path.join(run, "load.json")))
    sent = load["requests"]
    ok = load["status"].get("200", 0)
    lat = load["latency_ms"]
    ours = variant in ("off", "pattern", "resilient")
    per_a = a_counts(run)
    a_total = a_load(run)
    if scenario == "dead":
        text = f"{pct(sent - ok, sent):.2f} % errors"
        samples = b_samples(run) if ours else []
        if samples:
            dials = [(t, c.get(note, 0.0)) for t, c in samples]
            last = max((t for (t, n), (_, before) in zip(dials[1:], dials) if n > before),
                       default=None)
            at_1s = next((n for t, n in dials if t >= 1.0), dials[-1][1])
            after = dials[-1][1] - at_1s
            if after:
                text += f"; dialed it {dials[-1][1]:.0f}×, {after:.0f} after 1 s (the last " \
                        f"by {last:.1f} s)"
            else:
                text += f"; dialed it {dials[-1][1]:.0f}×, none after 1 s"
            checks = b_samples(run, "echo_lab_upstream_replica_health_checks_total")
            if checks and checks[-1][1].get(note):
                text += f" ({checks[-1][1][note]:.0f} health checks)"
    elif scenario == "slow":
        slow = per_a.get(0, (0, 0, 0))[0]
        share = pct(slow, sum(a[0] for a in per_a.values()))
        text = f"p99 {lat['p99']:.1f} ms, {share:.1f} % of calls to it"
    elif scenario == "flaky":
        text = f"{pct(ok, sent):.1f} % ok at {a_total / sent:.2f}× load"
    elif scenario == "outage":
        text = f"{a_total / sent:.3f}× load, p50 {lat['p50']:.1f} ms"
    elif scenario == "blackhole":
        text = f"p50 {lat['p50']:.1f} ms"
        samples = b_samples(run) if ours else []
        half = load["duration_s"] / 2
        late = [(t, sum(c.values())) for t, c in samples if t >= half]
        if len(late) >= 2 and late[-1][0] > late[0][0]:
            rate = (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])
            text += f", {rate:.1f} attempts/s to A in the last half"
    elif scenario == "tail":
        text = f"p99 {lat['p99']:.1f} ms at {a_total / sent:.2f}× load"
    elif scenario == "deadline":
        abandoned = [a[2] for a in per_a.values()]
        finished = sum(a[1] for a in per_a.values())
        if any(a is None for a in abandoned):
            text = f"{pct(finished, sent):.0f} % ({finished:.0f} of {sent} calls) finished " \
                   "(A counts no abandoned work)"
        else:
            started = sum(a[0] for a in per_a.values())
            text = f"{pct(finished, started):.1f} % finished after B gave up " \
                   f"({sum(abandoned):.0f} abandoned)"
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    if sum(load["errors"].values()):
        errors = {k: v for k, v in load["errors"].items() if v}
        text += f"; loadgen errors {errors}"
    return {"scenario": scenario, "variant": variant, "cell": text}


async def probe(url, rate, seconds):
    """Open loop: call i is due at start + i/rate, on its own connection, and its latency counts
    from when it was due. One line per call: due (epoch s), status (0: no answer), latency ms."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    path = parts.path + ("?" + parts.query if parts.query else "")
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Connection: close\r\n\r\n").encode()

    async def one(due):
        status = 0
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            writer.write(request)
            line = await asyncio.wait_for(reader.readline(), 5)
            status = int(line.split()[1])
            writer.close()
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            pass
        print(f"{due:.4f} {status} {(time.time() - due) * 1000:.2f}", flush=True)

    start = time.time() + 0.05
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.time()))
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)


def recovery(variant, run):
    t_down = float(open(os.path.join(run, "t_down")).read())
    t_up = float(open(os.path.join(run, "t_up")).read())
    calls = []
    for line in open(os.path.join(run, "probe")).read().splitlines():
        due, status, ms = line.split()
        calls.append((float(due), int(status), float(ms) / 1000))
    done = sorted((due + lat, status) for due, status, lat in calls)
    after = [(t, s) for t, s in done if t >= t_up]
    first = next((t - t_up for t, s in after if s == 200), None)
    last_bad = max((t - t_up for t, s in after if s != 200), default=0.0)
    # While down: calls due from 1 s into the black hole (the breaker has had time to
    # open) until the restart.
    down = sorted(lat for due, _, lat in calls if t_down + 1 <= due < t_up - 0.1)
    p50 = down[len(down) // 2] * 1000 if down else float("nan")
    first_text = "none" if first is None else f"{first:.2f} s"
    all_text = f"{last_bad:.2f} s" if all(s == 200 for _, s in after[-20:]) else "not by the end"
    text = (f"first 200 after {first_text}, all 200 after {all_text}; "
            f"while down p50 {p50:.0f} ms")
    return {"scenario": "recovery", "variant": variant, "cell": text}


def table(results, variants):
    cells = {}
    for line in open(results).read().splitlines():
        r = json.loads(line)
        cells[(r["scenario"], r["variant"])] = r["cell"]
    heads = ["scenario"] + [COLUMNS[v] for v in variants] + ["target"]
    print("| " + " | ".join(heads) + " |")
    print("|" + " --- |" * len(heads))
    for key, label, target in ROWS:
        if not any((key, v) in cells for v in variants):
            continue
        row = [label] + [cells.get((key, v), "n/a") for v in variants] + [target]
        print("| " + " | ".join(row) + " |")


def main(argv):
    if len(argv) >= 4 and argv[1] == "cell":
        note = argv[5] if len(argv) > 5 else ""
        print(json.dumps(cell(argv[2], argv[3], argv[4], note)))
    elif len(argv) == 5 and argv[1] == "probe":
        asyncio.run(probe(argv[2], int(argv[3]), float(argv[4])))
    elif len(argv) == 4 and argv[1] == "recovery":
        print(json.dumps(recovery(argv[2], argv[3])))
    elif len(argv) >= 3 and argv[1] == "table":
        table(argv[2], argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
