#!/usr/bin/env python3
"""Overload on one machine: A replicas with a real capacity (--workers, --work-ms), a B in
front of them (ours in its modes, nginx, HAProxy), and open-loop load from our own loadgen.
Python's standard library only; bench/overload.sh and bench/overload_rows.sh call it.

usage: overload.py sweep      [-d SECONDS] [--loads 0.5,1,...] [--out CSV]
       overload.py metastable [--triggers 1,3,5] [--utils 0.67,0.8] [--out CSV]
       overload.py rows       [--out MD]
       overload.py table CSV

sweep       offered load from 0.5x to 3x the capacity of 3 replicas (workers=1 work-ms=20
            each: 150/s in all); per step goodput (200s answered within the 1 s deadline, per
            second, as a fraction of the capacity) and the 200s' p99.
metastable  replicas serving 100/s each, offered a fraction of the 300/s, capacity cut to a
            third (work-ms 10 -> 30 through /control) for a trigger's length: does goodput
            come back once the trigger is gone, and when?
rows        the three rows: a replica's return, overload at 2x, the metastable trigger.

Goodput over time is counted by one loadgen per second of the run (each `--rate R -d 1s`,
started on the second): the load stays open loop and each second is measured whole.
env: PROJECT_BIN_DIR or CARGO_TARGET_DIR (as bench/run.sh), PEERS_DIR (nginx.sh, haproxy.sh).
"""

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PROJECT_BIN_DIR") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
PEERS = os.environ.get("PEERS_DIR", "/work/shared/bench/resilience-peers")
DEADLINE_MS = 1000
UP_TIMEOUT = 10.0
# The overload sweep's replicas: one worker, 20 ms a call: 50/s each, 150/s for three.
SWEEP_A = ["--workers", "1", "--work-ms", "20"]
SWEEP_CAPACITY = 150.0
# The metastable runs' replicas: 100/s each; the trigger makes each call three times longer.
META_WORK_MS, META_TRIGGER_WORK_MS = 10, 30
META_CAPACITY = 300.0


def log(text):
    print(f"[overload {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def post_control(addr, body):
    request = urllib.request.Request(f"http://{addr}/control", data=json.dumps(body).encode(),
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=2.0) as r:
        return r.status


def echo_200s(addr):
    """A's count of /echo answered 200, or None when A does not answer."""
    try:
        _, text = http_get(f"http://{addr}/metrics", timeout=0.5)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('echo_lab_requests_total{endpoint="/echo",status="200"} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Procs:
    """The processes a run started, stopped (by their own ids) when it ends."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, argv, env=None):
        """Starts one of our services (`argv` without --host and --port) on a free port and
        waits for its /health; the process and the address. Per-request log lines are off
        (RUST_LOG=warn), as nginx's and HAProxy's access logs are."""
        port = free_port()
        path = os.path.join(self.work, f"{name}.log")
        out = open(path, "ab")
        proc = subprocess.Popen([*argv, "--host", "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {}), "RUST_LOG": "warn"})
        self.procs.append(proc)
        return proc, self.wait_up(proc, port, path)

    def wait_up(self, proc, port, what):
        deadline = time.time() + UP_TIMEOUT
        while time.time() < deadline:
            try:
                if http_get(f"http://127.0.0.1:{port}/health", timeout=0.5)[0] == 200:
                    return f"127.0.0.1:{port}"
            except OSError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not start")

    def start_peer(self, kind, port, a_urls, env):
        """nginx or HAProxy as B, through the shared scripts' start_b."""
        d = tempfile.mkdtemp(dir=self.work)
        script = (f'source "{PEERS}/{kind}.sh" && impl_prepare && '
                  f'LOG_DIR="{d}" start_b {port} {" ".join(a_urls)} && echo $! >"{d}/pid" && wait')
        proc = subprocess.Popen(["bash", "-c", script], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append(proc)
        return proc, self.wait_up(proc, port, f"{kind} (see {d})")

    def stop(self, proc, sig=signal.SIGTERM):
        if proc.poll() is None:
            try:
                # A peer runs in its own session (bash, then nginx or haproxy): signal the group.
                if proc.args[0] == "bash":
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=12)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs = []


def b_help():
    return subprocess.run([os.path.join(BIN, "service-b"), "--help"], capture_output=True,
                          text=True).stdout


def b_configs(which, with_knobs_for_workers):
    """The Bs to compare: (label, kind, flags or env, the flag it needs in --help, or None)."""
    n = str(with_knobs_for_workers)
    every = {
        "B plain": ("ours", [], None),
        "B --resilient --adaptive-limit=off": ("ours", ["--resilient", "--adaptive-limit=off"],
                                               "--adaptive-limit=off"),
        "B --resilient": ("ours", ["--resilient"], None),
        "B --retries naive": ("ours", ["--retries", "naive"], "naive"),
        "nginx": ("nginx", {}, None),
        f"nginx max_conns={n}": ("nginx", {"NGINX_MAX_CONNS": n}, None),
        "HAProxy": ("haproxy", {}, None),
        f"HAProxy maxconn={n}": ("haproxy", {"HAPROXY_SERVER_MAXCONN": n}, None),
    }
    help_text = b_help()
    chosen = []
    for label in which:
        label = label.replace("{n}", n)
        kind, extra, needs = every[label]
        if needs and needs not in help_text:
            log(f"skipped {label}: service-b --help does not list {needs}")
            continue
        if kind != "ours" and shutil.which(kind) is None:
            log(f"skipped {label}: {kind} is not installed")
            continue
        chosen.append((label, kind, extra))
    return chosen


def start_b(procs, kind, extra, a_addrs):
    urls = [f"http://{a}" for a in a_addrs]
    if kind == "ours":
        argv = [os.path.join(BIN, "service-b"), "--service-a-url", ",".join(urls), "--timeout-ms", str(DEADLINE_MS), *extra]
        return procs.start("b", argv)
    return procs.start_peer(kind, free_port(), urls, extra)


def start_as(procs, a_args, n=3):
    argv = [os.path.join(BIN, "service-a"), "--control", *a_args]
    return [procs.start(f"a{i}", argv) for i in range(n)]


def loadgen(url, rate, seconds):
    """One open-loop run; loadgen's JSON summary."""
    conns = str(max(50, int(rate * 1.3)))
    argv = [os.path.join(BIN, "loadgen"), url, "--rate", str(rate), "-d", f"{seconds}s",
            "-c", conns, "-t", "1", "--timeout", f"{DEADLINE_MS}ms", "--max-error-rate", "1",
            "--json"]
    out = subprocess.run(argv, capture_output=True, text=True)
    return json.loads(out.stdout)


def timeline(url, rate, seconds, events=()):
    """Goodput (200s within the deadline) of each second of a run at `rate`; `events` are
    (second, function) called at that second of the run, in their own thread."""
    conns = str(max(50, int(rate * 1.3)))
    start = time.time() + 0.5
    runners = []
    for at, action in events:
        t = threading.Timer(start + at - time.time(), action)
        t.start()
        runners.append(t)
    windows = []
    for i in range(seconds):
        time.sleep(max(0.0, start + i - time.time()))
        argv = [os.path.join(BIN, "loadgen"), url, "--rate", str(rate), "-d", "1s", "-c", conns,
                "-t", "1", "--timeout", f"{DEADLINE_MS}ms", "--max-error-rate", "1", "--json"]
        windows.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    goodput = []
    for w in windows:
        out, _ = w.communicate()
        goodput.append(json.loads(out)["status"].get("200", 0))
    for t in runners:
        t.join()
    return goodput


def sweep(args):
    loads = [float(x) for x in args.loads.split(",")]
    configs = b_configs(["B plain", "B --resilient --adaptive-limit=off", "B --resilient", "nginx",
                         "nginx max_conns={n}", "HAProxy", "HAProxy maxconn={n}"], 1)
    configs.append(("B plain + A codel-lifo", "ours", []))
    rows = []
    only = [o.strip() for o in args.only.split(";") if o.strip()]
    for label, kind, extra in configs:
        if only and label not in only:
            continue
        a_args = SWEEP_A + (["--queue-policy", "codel-lifo"] if "codel" in label else [])
        for load in loads:
            rate = round(load * SWEEP_CAPACITY)
            with tempfile.TemporaryDirectory() as work:
                procs = Procs(work)
                try:
                    a = start_as(procs, a_args)
                    _, b = start_b(procs, kind, extra, [addr for _, addr in a])
                    s = loadgen(f"http://{b}/call-echo?msg=x", rate, args.d)
                finally:
                    procs.stop_all()
            ok = s["status"].get("200", 0)
            row = {"b": label, "load": load, "rate": rate,
                   "goodput": round(ok / args.d / SWEEP_CAPACITY, 3),
                   "ok_p99_ms": round(s["ok_latency_ms"]["p99"], 1),
                   "ok": ok, "requests": s["requests"], "failed": s["failed"]}
            log(f"{label:32} {load:>4}x ({rate}/s): goodput {row['goodput']:.2f}, "
                f"200s' p99 {row['ok_p99_ms']} ms")
            rows.append(row)
    write_csv(args.out, rows)


def metastable_run(kind, extra, util, trigger, tail=8):
    """One metastable run: goodput per second, the trigger from 3 s to 3 + trigger s."""
    rate = round(util * META_CAPACITY)
    seconds = 3 + trigger + tail
    with tempfile.TemporaryDirectory() as work:
        procs = Procs(work)
        try:
            a = start_as(procs, ["--workers", "1", "--work-ms", str(META_WORK_MS)])
            _, b = start_b(procs, kind, extra, [addr for _, addr in a])

            def cut(work_ms):
                def action():
                    for _, addr in a:
                        post_control(addr, {"work_ms": work_ms})
                return action

            events = [(3, cut(META_TRIGGER_WORK_MS)), (3 + trigger, cut(META_WORK_MS))]
            goodput = timeline(f"http://{b}/call-echo?msg=x", rate, seconds, events)
        finally:
            procs.stop_all()
    return rate, goodput


def recovery(goodput, rate, after):
    """Seconds after `after` (the trigger's end) until goodput is back: the first second at 90 %
    of `rate` or more from which the mean of the rest of the run is 90 % or more too (one
    loaded second of a busy machine does not count as a relapse). None if it never is."""
    for i in range(after, len(goodput)):
        rest = goodput[i:]
        if goodput[i] >= 0.9 * rate and sum(rest) / len(rest) >= 0.9 * rate:
            return i - after
    return None


def metastable(args):
    configs = b_configs(["B plain", "B --resilient --adaptive-limit=off", "B --resilient", "B --retries naive",
                         "nginx", "HAProxy"], 1)
    rows = []
    for label, kind, extra in configs:
        for util in [float(x) for x in args.utils.split(",")]:
            for trigger in [int(x) for x in args.triggers.split(",")]:
                rate, goodput = metastable_run(kind, extra, util, trigger)
                back = recovery(goodput, rate, 3 + trigger)
                row = {"b": label, "utilisation": util, "rate": rate, "trigger_s": trigger,
                       "recovered_after_s": "" if back is None else back,
                       "last_3s_goodput": round(sum(goodput[-3:]) / 3 / rate, 2),
                       "goodput_per_s": " ".join(map(str, goodput))}
                log(f"{label:22} util {util} trigger {trigger}s: "
                    f"{'stays down' if back is None else f'recovers after {back} s'} "
                    f"({row['goodput_per_s']})")
                rows.append(row)
    write_csv(args.out, rows)


def replica_return(kind, extra, a_args, rate=300, seconds=14):
    """1 of 3 replicas killed at 3 s and back at 6 s: seconds from its return until it gets
    at least 90 % of its fair share (a third) in a 1 s window; the run's calls not a 200."""
    with tempfile.TemporaryDirectory() as work:
        procs = Procs(work)
        try:
            a = start_as(procs, a_args)
            _, b = start_b(procs, kind, extra, [addr for _, addr in a])
            port = int(a[2][1].rsplit(":", 1)[1])
            samples = []  # (time, [count of each replica or None])
            stop = threading.Event()
            returned = {}

            def scrape():
                while not stop.is_set():
                    samples.append((time.time(), [echo_200s(addr) for _, addr in a]))
                    time.sleep(0.1)

            def kill():
                procs.stop(a[2][0], signal.SIGKILL)

            def restart():
                argv = [os.path.join(BIN, "service-a"), "--host", "127.0.0.1", "--port",
                        str(port), "--control", *a_args]
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL,
                                        env={**os.environ, "RUST_LOG": "warn"})
                procs.procs.append(proc)
                a[2] = (proc, procs.wait_up(proc, port, "the returning replica"))
                returned["at"] = time.time()

            scraper = threading.Thread(target=scrape)
            scraper.start()
            goodput = timeline(f"http://{b}/call-echo?msg=x", rate, seconds,
                               [(3, kill), (6, restart)])
            stop.set()
            scraper.join()
        finally:
            procs.stop_all()
    back_at = returned.get("at")
    fair = None
    if back_at is not None:
        after = [(t, c) for t, c in samples if t >= back_at and None not in c]
        for i, (t0, c0) in enumerate(after):
            later = [(t, c) for t, c in after[i:] if t >= t0 + 1.0]
            if not later:
                break
            _, c1 = later[0]
            total = sum(c1) - sum(c0)
            if total > 0 and (c1[2] - c0[2]) / total >= 0.9 / 3:
                fair = round(t0 - back_at, 1)
                break
    return fair, rate * seconds - sum(goodput)


def rows(args):
    lines = ["| B | replica back: s to 90 % of fair share; calls not a 200 | overload 2x: goodput, 200s' p99; "
             "503s and their p50; A's work wasted | metastable trigger: recovery |",
             "|---|---|---|---|"]
    # Row 1's replicas can take 400/s each (4 workers, 10 ms): 300/s is a quarter of that.
    configs = b_configs(["B plain", "B --resilient --adaptive-limit=off", "B --resilient", "nginx",
                         "nginx max_conns={n}", "HAProxy", "HAProxy maxconn={n}"], 1)
    only = [o.strip() for o in args.only.split(";") if o.strip()]
    for label, kind, extra in configs:
        if only and label not in only:
            continue
        knob4 = {k: "4" for k in extra} if isinstance(extra, dict) else extra
        fair, not_ok = replica_return(kind, knob4, ["--workers", "4", "--work-ms", "10"])
        with tempfile.TemporaryDirectory() as work:
            procs = Procs(work)
            try:
                a = start_as(procs, SWEEP_A)
                _, b = start_b(procs, kind, extra, [addr for _, addr in a])
                s = loadgen(f"http://{b}/call-echo?msg=x", 300, 10)
                worked = sum(echo_200s(addr) or 0 for _, addr in a)
            finally:
                procs.stop_all()
        ok = s["status"].get("200", 0)
        good = ok / 10 / SWEEP_CAPACITY
        # A's work wasted: what A answered that did not become a 200 within B's deadline
        # (answered after B gave up, or the losing copy of a hedge).
        wasted = max(0.0, 1 - ok / worked) if worked else 0.0
        refused = s["status"].get("503", 0)
        refusal = (f"{refused} refused, p50 {s['unavailable_latency_ms']['p50']:.1f} ms"
                   if refused else "none refused")
        rate, goodput = metastable_run(kind, extra, 200 / META_CAPACITY, 3, tail=9)
        back = recovery(goodput, rate, 6)
        meta = ("stays down" if back is None else f"recovers {back} s after the trigger") + \
            f" (goodput/s: {' '.join(map(str, goodput))})"
        fair_text = ("never within 8 s" if fair is None else f"{fair} s") + \
            f", {not_ok} of the run's calls not a 200"
        line = (f"| {label} | {fair_text} | {good:.2f} of capacity, "
                f"{s['ok_latency_ms']['p99']:.0f} ms; {refusal}; A's work {wasted:.0%} wasted "
                f"| {meta} |")
        log(line)
        lines.append(line)
    lines.append("")
    lines.append("Knobs: the replica-back row runs 4 workers x 10 ms per replica and the proxies' "
                 "knob at 4; the other two rows 1 worker per replica and the knob at 1. Goodput: "
                 "200s within B's 1 s deadline.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def write_csv(path, rows):
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log(f"wrote {path}")


def table(args):
    """A CSV written here, as a markdown table."""
    with open(args.csv, newline="") as f:
        rows = list(csv.reader(f))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("sweep")
    p.add_argument("-d", type=int, default=5, help="seconds per step")
    p.add_argument("--loads", default="0.5,1,1.5,2,2.5,3")
    p.add_argument("--out", default="overload.csv")
    p.add_argument("--only", default="",
                   help="the B variants to run, by label, ';'-separated (default: all)")
    p = sub.add_parser("metastable")
    p.add_argument("--triggers", default="1,3,5")
    p.add_argument("--utils", default="0.67,0.8")
    p.add_argument("--out", default="metastable.csv")
    p = sub.add_parser("rows")
    p.add_argument("--out", default="")
    p.add_argument("--only", default="",
                   help="the B variants to run, by label, ';'-separated (default: all)")
    p = sub.add_parser("table")
    p.add_argument("csv")
    args = parser.parse_args()
    {"sweep": sweep, "metastable": metastable, "rows": rows, "table": table}[args.what](args)


if __name__ == "__main__":
    main()
