#!/usr/bin/env python3
"""What an idle kept-alive connection costs a service, in resident memory.

usage: bench/idle_connections.py [-n N] [--fresh M] [--impl project|axum|go] [--service a|b]
                                 [--bin-dir DIR]

Starts one service (A or B) of one implementation, reads its VmRSS, opens N connections that
each send one `GET /health` (keep-alive), read the answer and then hold the connection, reads
VmRSS again, and meanwhile times M `GET /health` on fresh connections. Prints the KiB per idle
connection: (RSS with N idle - RSS before) / N.

The project's binaries start on `--port 0` and say their address in the log; the peers (see
../shared/bench/impls/) are given a free port in their environment. Every service logs to a
file: a pipe that nobody reads fills up and then stalls the service that writes to it.

Plain python3, no packages. It raises its own open-file limit to the hard limit (N client
sockets), and the service inherits it.
"""

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "..", "shared", "bench")
# Where ../shared/bench/impls/*.sh put the peers' binaries (axum.sh: $AXUM_TARGET_DIR).
DEFAULT_BIN_DIRS = {
    "project": os.path.join(HERE, "..", "target", "release"),
    "axum": os.path.join(os.environ.get("AXUM_TARGET_DIR", "/tmp/peers-target"), "release"),
    "go": os.path.join(PEERS, "peers", "go", "bin"),
}
# Nothing listens on the discard port; B's /health does not call A, so B needs no live A.
NO_UPSTREAM = "http://127.0.0.1:9"
REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"
CLOSE_REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(impl, service, bin_dir, log):
    """Starts the service; returns (process, port)."""
    binary = os.path.join(bin_dir, f"service-{service}")
    env = dict(os.environ)
    if impl == "project":
        env["SERVICE_A_URL"] = NO_UPSTREAM
        proc = subprocess.Popen([binary, "--port", "0"], stdout=log, stderr=log, env=env)
        return proc, project_port(proc, log.name)
    port = free_port()
    env.update({"A_PORT": str(port), "B_PORT": str(port), "A_URL": NO_UPSTREAM})
    proc = subprocess.Popen([binary], stdout=log, stderr=log, env=env)
    return proc, port


def project_port(proc, log_path):
    """The port in the project's `listening on ADDR` line."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if "listening on " in line:
                    return int(line.split("listening on ")[1].strip().rsplit(":", 1)[1])
        if proc.poll() is not None:
            sys.exit(f"service exited with {proc.returncode}; see {log_path}")
        time.sleep(0.02)
    sys.exit(f"no 'listening on' line in {log_path}")


def read_response(sock):
    """Reads one response whose body has a Content-Length; returns the status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a whole head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return int(head.split(b" ", 2)[1])


def wait_healthy(port):
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(CLOSE_REQUEST)
                if read_response(s) == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"no 200 from /health on port {port}")


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fresh_health_ms(port, count):
    """Latency of `count` /health requests, each on a new connection, in ms."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(CLOSE_REQUEST)
            status = read_response(s)
        times.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise RuntimeError(f"/health answered {status}")
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("-n", type=int, default=9000, help="idle connections to hold [9000]")
    p.add_argument("--fresh", type=int, default=500, help="/health on fresh connections [500]")
    p.add_argument("--impl", default="project", choices=sorted(DEFAULT_BIN_DIRS))
    p.add_argument("--service", default="a", choices=["a", "b"])
    p.add_argument("--bin-dir", help="folder with service-a and service-b [per --impl]")
    args = p.parse_args()
    bin_dir = args.bin_dir or DEFAULT_BIN_DIRS[args.impl]

    # N client sockets here; the service inherits the raised limit too (the project raises
    # its own, Go does since 1.19, tokio does not).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + args.fresh + 64 > hard:
        sys.exit(f"open-file hard limit {hard} is too low for -n {args.n}")

    log = tempfile.NamedTemporaryFile(prefix=f"idle-{args.impl}-{args.service}-", suffix=".log",
                                      delete=False)
    proc, port = start(args.impl, args.service, bin_dir, log)
    held = []
    try:
        wait_healthy(port)
        time.sleep(0.5)
        before = vm_rss_kib(proc.pid)
        t0 = time.monotonic()
        for _ in range(args.n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(REQUEST)
            if read_response(s) != 200:
                raise RuntimeError("/health was not 200")
            held.append(s)
        opened_s = time.monotonic() - t0
        # Let the service settle (tasks parked, nothing in flight) before reading its RSS.
        time.sleep(1)
        after = vm_rss_kib(proc.pid)
        times = fresh_health_ms(port, args.fresh)
        after_fresh = vm_rss_kib(proc.pid)
        # Every idle connection must still be open: a closed one would not be "held".
        alive = 0
        for s in held:
            s.setblocking(False)
            try:
                s.recv(1)  # b"": the service closed it; bytes: it sent something unasked
            except BlockingIOError:
                alive += 1  # nothing to read, and not closed
            except OSError:
                pass
    finally:
        for s in held:
            s.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    times.sort()
    p99 = times[max(0, int(len(times) * 0.99) - 1)]
    per_conn = (after - before) / args.n
    print(f"impl={args.impl} service={args.service.upper()} n={args.n} "
          f"(opened in {opened_s:.1f} s, {alive} still open)")
    print(f"VmRSS before {before / 1024:.1f} MiB, with {args.n} idle {after / 1024:.1f} MiB, "
          f"after {args.fresh} fresh /health {after_fresh / 1024:.1f} MiB")
    print(f"/health on fresh connections meanwhile: p50 {statistics.median(times):.2f} ms, "
          f"p99 {p99:.2f} ms, max {times[-1]:.2f} ms")
    print(f"KiB per idle connection: {per_conn:.2f}")
    os.unlink(log.name)


if __name__ == "__main__":
    main()
