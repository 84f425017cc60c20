#!/usr/bin/env bash
# Sweep the number of connections: start service A and B (release builds), then run our own
# load generator (target/release/loadgen, closed loop) against A /echo and B /call-echo at each
# concurrency, and record throughput and latency. No tool from outside the project is needed.
#
# usage: bench/sweep.sh [-d SECONDS] [-C "1 16 64 256 1024"] [-t LOADGEN_THREADS]
#   defaults: -d 10 s per point, -t 1 (like compare.sh's wrk -t1: leaves the other cores to
#   the services; with -t1 the load generator itself may limit the highest points)
#   env: CARGO_TARGET_DIR, PROJECT_BIN_DIR (as in bench/run.sh)
# Output: bench/results/sweep.csv and bench/sweep.svg (drawn by bench/sweep_svg.py).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_PER_POINT=10
CONNS="1 16 64 256 1024"
LG_THREADS=1
UP_TIMEOUT=10

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while getopts "d:C:t:h" opt; do
    case $opt in
        d) SECONDS_PER_POINT=$OPTARG ;;
        C) CONNS=$OPTARG ;;
        t) LG_THREADS=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
for n in "$SECONDS_PER_POINT" "$LG_THREADS" $CONNS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "error: -d, -t and -C need positive integers, got '$n'" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "error: python3 not found (needed for the chart)" >&2; exit 2; }

cd "$ROOT"
echo "== cargo build --release" >&2
cargo build --release --bins
BIN="${PROJECT_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
for b in service-a service-b loadgen; do
    [ -x "$BIN/$b" ] || { echo "error: $BIN/$b not found" >&2; exit 2; }
done

# 1024 client sockets, as many server sockets, and B's connections to A.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/sweep.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[sweep $(date +%T)] $*" >&2; }

# start NAME COMMAND... : starts a service on port 0, logging to $WORK/NAME.log (appending, so
# the log can be emptied between points), and sets ADDR from its `listening on` line.
start() {
    local name=$1
    shift
    "$@" --host 127.0.0.1 --port 0 >>"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    local pid=$!
    ADDR=""
    for _ in $(seq $((UP_TIMEOUT * 10))); do
        ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/$name.log" | head -n 1)
        [ -n "$ADDR" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 5 "$WORK/$name.log" >&2
    echo "error: $name did not start" >&2
    exit 1
}

start service-a "$BIN/service-a"
A_ADDR=$ADDR
start service-b "$BIN/service-b" --service-a-url "http://$A_ADDR"
B_ADDR=$ADDR
log "A on $A_ADDR, B on $B_ADDR; ${SECONDS_PER_POINT}s per point, loadgen -t$LG_THREADS, connections: $CONNS"

CSV_DIR="$ROOT/bench/results"
CSV="$CSV_DIR/sweep.csv"
mkdir -p "$CSV_DIR"
echo "service,endpoint,connections,rps,p50_ms,p90_ms,p99_ms,max_ms,requests,non_200,errors" >"$WORK/sweep.csv"

# point SERVICE URL CONNS: one loadgen run, appended to the CSV.
point() {
    local service=$1 url=$2 conns=$3 json
    json=$("$BIN/loadgen" "$url" -c "$conns" -d "${SECONDS_PER_POINT}s" -t "$LG_THREADS" \
        --timeout 5s --max-error-rate 1 --json 2>/dev/null | tail -n 1)
    python3 - "$service" "$url" "$conns" "$json" >>"$WORK/sweep.csv" <<'EOF'
import json, sys
from urllib.parse import urlsplit
service, url, conns, line = sys.argv[1:]
d = json.loads(line)
lat = d["latency_ms"]
ok = d["status"].get("200", 0)
print(",".join(str(x) for x in [
    service, urlsplit(url).path, conns, round(d["rps"], 1), lat["p50"], lat["p90"], lat["p99"],
    lat["max"], d["requests"], d["responses"] - ok, sum(d["errors"].values())]))
EOF
    log "  $(tail -n 1 "$WORK/sweep.csv")"
    # The services log every request; keep the disk from filling on long sweeps.
    : >"$WORK/service-a.log"
    : >"$WORK/service-b.log"
}

for target in "A http://$A_ADDR/echo?msg=hello" "B http://$B_ADDR/call-echo?msg=hello"; do
    read -r service url <<<"$target"
    log "$service: warm-up 1 s"
    "$BIN/loadgen" "$url" -c 64 -d 1s -t "$LG_THREADS" >/dev/null 2>&1 || true
    for c in $CONNS; do
        point "$service" "$url" "$c"
        sleep 0.5
    done
done

cp "$WORK/sweep.csv" "$CSV"
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
python3 "$ROOT/bench/sweep_svg.py" "$CSV" "$ROOT/bench/sweep.svg" \
    --date "$(date -u +%Y-%m-%d)" \
    --machine "$(nproc) cores${CPU:+ ($CPU)}" \
    --note "our loadgen, closed loop, keep-alive, -t$LG_THREADS, ${SECONDS_PER_POINT} s per point"
log "written: bench/results/sweep.csv, bench/sweep.svg"
