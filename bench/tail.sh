#!/usr/bin/env bash
# Latency at a fixed rate (open loop, coordinated omission corrected), echo-lab beside axum,
# at 25, 50 and 75 % of the rate axum reaches in a closed loop on the same machine.
#
# usage: bench/tail.sh [-d SECONDS] [-c WORKERS] [-p "25 50 75"] [IMPL...]   (default: axum project)
#
# Starts A and B of every impl at once (each on free ports, idle while the others are loaded),
# measures axum's closed-loop rate on A /echo and B /call-echo (wrk -t1 -c64), then for each
# percentage, each endpoint and each impl in turn (the order rotates) runs
#   loadgen URL --rate R -c WORKERS -t 1 -d SECONDS --json
# and reports p50, p99, p99.9 and max. Request i is due at start + i/R and its latency counts
# from then, so a stall shows in the percentiles instead of slowing the load down. Our
# loadgen (in $PROJECT_BIN_DIR) drives every impl, so the client side is the same for all.
# Impls as in bench/syscalls.sh, `project=DIR` included.
set -euo pipefail

SHARED_BENCH=${SHARED_BENCH:-/work/shared/bench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PROJECT_BIN_DIR=${PROJECT_BIN_DIR:-$ROOT/target/release}
export PEERS_DIR="$SHARED_BENCH/peers" BENCH_DIR="$SHARED_BENCH"
OUR_BIN_DIR=$PROJECT_BIN_DIR
LOADGEN=$OUR_BIN_DIR/loadgen
DURATION=5
WORKERS=256
PERCENTS="25 50 75"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts "d:c:p:h" opt; do
    case $opt in
        d) DURATION=$OPTARG ;;
        c) WORKERS=$OPTARG ;;
        p) PERCENTS=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
IMPLS=("$@")
[ ${#IMPLS[@]} -gt 0 ] || IMPLS=(axum project)
[ -x "$LOADGEN" ] || { echo "error: $LOADGEN not found: cargo build --release" >&2; exit 2; }

WORK=$(mktemp -d /tmp/tail.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[tail $(date +%T)] $*" >&2; }
# free_port, wait_up, load_impl
# shellcheck source=bench/impls.sh
source "$ROOT/bench/impls.sh"


declare -A ECHO CALL
for impl in "${IMPLS[@]}"; do
    load_impl "$impl"
    if declare -F impl_prepare >/dev/null; then impl_prepare; fi
    pa=$(free_port); pb=$(free_port)
    LOG="$WORK/${impl//\//_}-a.log"; start_a "$pa"; PIDS+=("$!"); wait_up "$pa"
    LOG="$WORK/${impl//\//_}-b.log"; start_b "$pb" "http://127.0.0.1:$pa"; PIDS+=("$!"); wait_up "$pb"
    ECHO[$impl]="http://127.0.0.1:$pa/echo?msg=hello"
    CALL[$impl]="http://127.0.0.1:$pb/call-echo?msg=hello"
    wrk -t1 -c64 -d1s "${ECHO[$impl]}" >/dev/null 2>&1 || true
    wrk -t1 -c64 -d1s "${CALL[$impl]}" >/dev/null 2>&1 || true
done

closed_rate() { # URL -> req/s of wrk -t1 -c64
    wrk -t1 -c64 -d"${DURATION}s" "$1" | awk '/Requests\/sec:/ {printf "%d", $2}'
}
axum_echo=$(closed_rate "${ECHO[axum]:?axum is the yardstick: name it among the impls}")
axum_call=$(closed_rate "${CALL[axum]}")
log "axum closed loop: /echo $axum_echo req/s, /call-echo $axum_call req/s"

echo "<!-- $(date -u +%FT%TZ), $(uptime | sed 's/.*load/load/'), $(nproc) cores; axum closed loop (wrk -t1 -c64 -d${DURATION}s): /echo $axum_echo req/s, /call-echo $axum_call req/s; loadgen --rate R -c $WORKERS -t 1 -d ${DURATION}s -->"
echo "| % of axum | endpoint | rate | impl | p50 ms | p99 ms | p99.9 ms | max ms | errors + unsent |"
echo "|---:|---|---:|---|---:|---:|---:|---:|---:|"
n=${#IMPLS[@]}
turn=0
for pct in $PERCENTS; do
    for what in echo call; do
        if [ $what = echo ]; then rate=$((axum_echo * pct / 100)); else rate=$((axum_call * pct / 100)); fi
        off=$((turn % n)); turn=$((turn + 1))
        for impl in "${IMPLS[@]:off}" "${IMPLS[@]:0:off}"; do
            if [ $what = echo ]; then url=${ECHO[$impl]}; else url=${CALL[$impl]}; fi
            "$LOADGEN" "$url" --rate "$rate" -c "$WORKERS" -t 1 -d "${DURATION}s" --json \
                --max-error-rate 1 >"$WORK/out.json" 2>/dev/null || true
            row=$(python3 - "$WORK/out.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
bad = sum(r["errors"].values()) + r["unsent"]
print(f'{l["p50"]:.3f} | {l["p99"]:.3f} | {l["p99.9"]:.3f} | {l["max"]:.3f} | {bad}')
EOF
)
            echo "| $pct | $what | $rate | $impl | $row |"
            log "$pct % $what $impl: $row"
        done
    done
done
