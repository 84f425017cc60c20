#!/usr/bin/env bash
# System calls and CPU time per request, echo-lab beside its peers, in one run.
#
# usage: bench/syscalls.sh [-d SECONDS] [-c CONNS] [-r ROUNDS] [IMPL...]   (default: axum project)
#   IMPL `project=DIR` runs our binaries from DIR (e.g. a build of the commit before a change),
#   so a before and an after share one run.
#
# For each round and impl (the order rotates each round): start A and B on free ports, warm up,
# then for A /echo and B /call-echo
#   1. wrk -t1 -cCONNS -dSECONDS with no tracer: req/s, p99, and the CPU time (user + system,
#      /proc/PID/stat) the measured service spent, per response;
#   2. the same load again with the kernel's syscall tracepoints counted (`perf stat`) on the
#      measured service (A for /echo, B for /call-echo): every system call of every thread, per
#      response. `TRACER=strace` counts with `strace -c -f` instead, which slows the service
#      many times over and so changes what it counts (a read tried before a wait finds data
#      far more often under strace); perf's counters do not;
#   3. the measured service's peak RSS (VmHWM) after both loads.
# Step 2 gives counts only, never speed.
# Impls are the files of $SHARED_BENCH/impls (default /work/shared/bench); ours runs the
# binaries in $PROJECT_BIN_DIR (default target/release: run `cargo build --release` first).
# Environment passed through to our services, e.g. THREADS=1, tries a setting without a build.
# Writes a markdown table to stdout; the raw counts stay in $KEEP_DIR if it is set.
# perf needs perf_event_paranoid ≤ -1 or root for the tracepoints (apt: linux-perf).
set -euo pipefail

SHARED_BENCH=${SHARED_BENCH:-/work/shared/bench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PROJECT_BIN_DIR=${PROJECT_BIN_DIR:-$ROOT/target/release}
export PEERS_DIR="$SHARED_BENCH/peers" BENCH_DIR="$SHARED_BENCH"
DURATION=5
CONNS=64
ROUNDS=1

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts "d:c:r:h" opt; do
    case $opt in
        d) DURATION=$OPTARG ;;
        c) CONNS=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
IMPLS=("$@")
[ ${#IMPLS[@]} -gt 0 ] || IMPLS=(axum project)
TRACER=${TRACER:-perf}
for tool in wrk "$TRACER" curl python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/syscalls.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP_DIR:-}" ]; then mkdir -p "$KEEP_DIR" && cp -r "$WORK"/. "$KEEP_DIR"/; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[syscalls $(date +%T)] $*" >&2; }
# free_port, wait_up, load_impl
# shellcheck source=bench/impls.sh
source "$ROOT/bench/impls.sh"



cpu_ticks() { # PID -> user + system clock ticks of the process (all its threads)
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

responses() { # WRK_OUTPUT -> number of responses
    awk '/requests in/ {print $1}' "$1"
}

# One load without a tracer: "rps p99_ms cpu_us_per_response".
plain_load() { # PID URL OUT
    local t0 t1 n
    t0=$(cpu_ticks "$1")
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2" >"$3" 2>&1
    t1=$(cpu_ticks "$1")
    n=$(responses "$3")
    python3 - "$3" "$n" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
n, ticks, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
print(f"{rps:.0f} {p99:.3f} {ticks / hz * 1e6 / max(n, 1):.1f}")
EOF
}

# The system calls perf counts by name; the rest are counted together as "other".
COUNTED="recvfrom sendto read write writev epoll_ctl epoll_pwait epoll_wait futex timerfd_settime accept4 close"

# The same load with the syscall tracepoints counted: "total|name count, ..." per response.
traced_load() { # PID URL OUT
    if [ "$TRACER" = strace ]; then strace_load "$@"; return; fi
    local events=raw_syscalls:sys_enter name
    for name in $COUNTED; do events+=",syscalls:sys_enter_$name"; done
    perf stat -x, -e "$events" -p "$1" -o "$3.perf" &
    local counter=$!
    PIDS+=("$counter")
    sleep 1
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "$2" >"$3" 2>&1
    kill -INT "$counter"
    wait "$counter" 2>/dev/null || true
    python3 - "$3.perf" "$(responses "$3")" <<'EOF'
import sys
n = int(sys.argv[2])
total, calls = 0, {}
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    # "count,unit,event,..." (perf stat -x,); comments and uncounted events are skipped
    if len(f) < 3 or not f[0].isdigit():
        continue
    if f[2] == "raw_syscalls:sys_enter":
        total = int(f[0])
    else:
        calls[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0])
calls["other"] = total - sum(calls.values())
top = sorted(calls.items(), key=lambda kv: -kv[1])
detail = ", ".join(f"{k} {v / n:.2f}" for k, v in top if v / n >= 0.01)
print(f"{total / n:.2f}|{detail}")
EOF
}

# The same load under `strace -c -f`: the per-response count of each call.
strace_load() { # PID URL OUT
    strace -c -f -o "$3.strace" -p "$1" 2>/dev/null &
    local tracer=$!
    PIDS+=("$tracer")
    sleep 1   # attached to every thread before the load starts
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "$2" >"$3" 2>&1
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    python3 - "$3.strace" "$(responses "$3")" <<'EOF'
import sys
n = int(sys.argv[2])
calls = {}
for line in open(sys.argv[1]):
    f = line.split()
    # "% time seconds usecs/call calls [errors] syscall"; skip headers, rules and the total
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
total = sum(calls.values()) / n
top = sorted(calls.items(), key=lambda kv: -kv[1])
detail = ", ".join(f"{k} {v / n:.2f}" for k, v in top if v / n >= 0.01)
print(f"{total:.2f}|{detail}")
EOF
}

OUR_BIN_DIR=$PROJECT_BIN_DIR

run_one() { # ROUND IMPL
    local round=$1 impl=$2 pa pb pid_a pid_b dir="$WORK/r$1-${2//\//_}"
    mkdir -p "$dir"
    load_impl "$impl"
    pa=$(free_port); pb=$(free_port)
    LOG="$dir/a.log"; start_a "$pa"; pid_a=$!; PIDS+=("$pid_a"); wait_up "$pa"
    LOG="$dir/b.log"; start_b "$pb" "http://127.0.0.1:$pa"; pid_b=$!; PIDS+=("$pid_b"); wait_up "$pb"
    local echo_url="http://127.0.0.1:$pa/echo?msg=hello" call_url="http://127.0.0.1:$pb/call-echo?msg=hello"
    wrk -t1 -c"$CONNS" -d1s "$echo_url" >/dev/null 2>&1 || true
    wrk -t1 -c"$CONNS" -d1s "$call_url" >/dev/null 2>&1 || true
    local what pid url plain traced rss
    for what in echo call; do
        if [ $what = echo ]; then pid=$pid_a url=$echo_url; else pid=$pid_b url=$call_url; fi
        plain=$(plain_load "$pid" "$url" "$dir/$what.plain")
        traced=$(traced_load "$pid" "$url" "$dir/$what.traced")
        read -r rps p99 cpu <<<"$plain"
        rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
        echo "| $round | $impl | $what | $rps | $p99 | $cpu | ${traced%%|*} | $rss | ${traced#*|} |"
        log "round $round $impl $what: $rps req/s, p99 $p99 ms, $cpu µs CPU, ${traced%%|*} calls/response"
    done
    kill "$pid_b" "$pid_a"
    wait "$pid_b" "$pid_a" 2>/dev/null || true
}

for impl in "${IMPLS[@]}"; do
    ( load_impl "$impl"
      if declare -F impl_prepare >/dev/null; then impl_prepare; fi ) ||
        { echo "error: $impl is not ready (see above)" >&2; exit 1; }
done

echo "<!-- $(date -u +%FT%TZ), $(uptime | sed 's/.*load/load/'), $(nproc) cores, wrk -t1 -c$CONNS -d${DURATION}s -->"
echo "| round | impl | endpoint | req/s | p99 ms | CPU µs/response | syscalls/response | peak RSS KiB | of which (per response) |"
echo "|---|---|---|---:|---:|---:|---:|---:|---|"
n=${#IMPLS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    off=$(( (r - 1) % n ))
    for impl in "${IMPLS[@]:off}" "${IMPLS[@]:0:off}"; do
        run_one "$r" "$impl"
        sleep 1
    done
done
