#!/usr/bin/env python3
"""How much B holds per call waiting on an A that never answers, and whether B's own /health
stays fast meanwhile (the bulkhead's promise: a stuck A cannot take B's health with it).

Starts a black-holed A (`service-a --blackhole`) and B in front of it, opens N connections to
B that each send one /call-echo (they all wait: A never answers), then measures B's /health
latency over fresh connections and reads B's VmRSS from /proc.

usage: bench/waiting_calls.py [-n 9000] [--bin-dir target/release] [-- B-FLAGS...]
       e.g. bench/waiting_calls.py -n 9000 -- --timeout-ms 30000
            bench/waiting_calls.py -n 9000 -- --timeout-ms 30000 --max-in-flight 1024

B's deadline must outlast the measurement (--timeout-ms 30000 by default here), or the calls
stop waiting before we measure. The script raises its own open-file limit; N + 100 must fit.
"""

import argparse
import resource
import socket
import subprocess
import sys
import tempfile
import time


def start(binary, args):
    """Starts a service on a free port; returns the process and its address. Its log goes to
    a file: a pipe nobody reads would fill up and stall the service's logging."""
    log = tempfile.NamedTemporaryFile(mode="w+", prefix="waiting_calls-", suffix=".log")
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", "0", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log = log
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(log.name) as f:
            for line in f:
                if "listening on " in line:
                    host, port = line.split("listening on ")[1].strip().rsplit(":", 1)
                    return proc, (host, int(port))
        time.sleep(0.05)
    raise SystemExit(f"{binary} did not start")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(addr, name):
    """One unlabelled value from a service's /metrics."""
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def health_latencies(addr, count):
    """`count` /health requests, each on a new connection; latencies in ms."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        out.append((time.perf_counter() - start) * 1000)
    return sorted(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=9000, help="calls left waiting [9000]")
    p.add_argument("--bin-dir", default="target/release")
    p.add_argument("b_flags", nargs="*", help="flags for B (after --)")
    opts = p.parse_args()
    b_flags = opts.b_flags or ["--timeout-ms", "30000"]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    a, a_addr = start(f"{opts.bin_dir}/service-a", ["--blackhole"])
    b, b_addr = start(
        f"{opts.bin_dir}/service-b",
        ["--service-a-url", f"http://{a_addr[0]}:{a_addr[1]}", *b_flags],
    )
    try:
        time.sleep(0.5)
        idle = rss_kib(b.pid)
        calls = []
        for _ in range(opts.n):
            s = socket.create_connection(b_addr, timeout=30)
            s.sendall(b"GET /call-echo?msg=x HTTP/1.1\r\nHost: x\r\n\r\n")
            calls.append(s)
        # Wait until B has them all in flight (or refused the rest at once: the bulkhead).
        deadline = time.time() + 30
        while time.time() < deadline:
            in_flight = metric(b_addr, "echo_lab_upstream_in_flight")
            if in_flight >= opts.n or metric(b_addr, "echo_lab_open_connections") >= opts.n:
                break
            time.sleep(0.2)
        time.sleep(1)
        in_flight = metric(b_addr, "echo_lab_upstream_in_flight")
        loaded = rss_kib(b.pid)
        lat = health_latencies(b_addr, 500)
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
        per_call = (loaded - idle) / max(opts.n, 1)
        print(f"B flags: {' '.join(b_flags)}")
        print(f"calls sent: {opts.n}, waiting on A (in flight): {int(in_flight)}")
        print(f"B VmRSS: {idle / 1024:.1f} MiB idle -> {loaded / 1024:.1f} MiB "
              f"({per_call:.1f} KiB per call sent)")
        print(f"B /health over 500 fresh connections meanwhile: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for s in calls:
            s.close()
    finally:
        for proc in (b, a):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
