#!/usr/bin/env bash
# The resilience scenarios of docs/patterns.md: each row breaks A's replicas one way, runs our own load
# generator through B (open loop), and measures what that table's target column asks for. Each variant of
# B (patterns off; only the pattern the row is about; --resilient; and nginx/HAProxy as B when
# installed) gets fresh A replicas, so A's counters start at zero. Prints a markdown table and
# saves it in bench/results/.
#
# usage: bench/scenarios.sh [-d SECONDS] [-r RATE] [--quick]
#                           [-v "off pattern resilient nginx haproxy"]
#                           [-s "dead slow flaky outage blackhole tail deadline recovery"]
#   -d  seconds of load per row and variant (default 10); -r  requests/s (default 300)
#   --quick  3 s rows and a shorter recovery: a smoke check, not figures to quote
#   -v  which B variants (default: all five; a peer that is not installed is skipped, noted)
#   -s  which scenarios (default: all)
#   env: KEEP=1 keeps each row's raw files (the path is printed), CARGO_TARGET_DIR,
#        PEERS_DIR (default /work/shared/bench/resilience-peers)
# Needs: cargo, curl, python3 (no packages). The python half is bench/scenarios_table.py.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=10
RATE=300
QUICK=0
VARIANTS="off pattern resilient nginx haproxy"
SCENARIOS="dead slow flaky outage blackhole tail deadline recovery"
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/resilience-peers}
REPLICAS=3
# open loop needs workers >= rate x worst latency (300/s x 1 s) with room to spare
CONNS=512
# B's deadline for the whole call, as in the scenario table
B_TIMEOUT_MS=1000
UP_TIMEOUT=10

usage() {
    sed -n '6,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        -d) DURATION=${2:-}; shift 2 ;;
        -r) RATE=${2:-}; shift 2 ;;
        -v) VARIANTS=${2:-}; shift 2 ;;
        -s) SCENARIOS=${2:-}; shift 2 ;;
        --quick) QUICK=1; DURATION=3; shift ;;
        *) usage ;;
    esac
done
for n in "$DURATION" "$RATE"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] ||
        { echo "error: -d and -r need positive integers, got '$n'" >&2; exit 2; }
done
for v in $VARIANTS; do
    case $v in
        off|pattern|resilient|nginx|haproxy) ;;
        *) echo "error: unknown variant '$v'" >&2; exit 2 ;;
    esac
done
for s in $SCENARIOS; do
    case $s in dead|slow|flaky|outage|blackhole|tail|deadline|recovery) ;;
        *) echo "error: unknown scenario '$s'" >&2; exit 2 ;; esac
done
for tool in curl python3 cargo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 2; }
done

cd "$ROOT"
echo "== cargo build --release" >&2
cargo build --release --bins
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
for b in service-a service-b loadgen; do
    [ -x "$BIN/$b" ] || { echo "error: $BIN/$b not found" >&2; exit 2; }
done
TABLE="python3 $ROOT/bench/scenarios_table.py"

# 512 load connections, as many in B, and B's pools to three replicas.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/scenarios.XXXXXX)
PIDS=()
cleanup() {
    local p
    # KILL, not TERM: a black-holed A would only wait out its grace period on held requests.
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        stop_pid "$p"
    done
    # KEEP=1 keeps each row's logs, load.json, metrics and samples for a look.
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[scenarios $(date +%T)] $*" >&2; }

# Peers: which are installed, and a note for those that are not.
NOTES=()
RUN_VARIANTS=""
for v in $VARIANTS; do
    case $v in
        nginx|haproxy)
            if ! command -v "$v" >/dev/null; then
                NOTES+=("$v: not installed, column skipped (see $PEERS_DIR/README.md)")
                continue
            fi ;;
    esac
    RUN_VARIANTS="$RUN_VARIANTS $v"
done

# wait_addr LOGFILE PID: prints the address from the first `listening on` line.
wait_addr() {
    local logfile=$1 pid=$2 addr
    for _ in $(seq $((UP_TIMEOUT * 20))); do
        addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$logfile" | head -n 1)
        if [ -n "$addr" ]; then
            echo "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 5 "$logfile" >&2
    echo "error: the service logging to $logfile did not start" >&2
    return 1
}

# start_a I PORT ARGS...: replica I (0-based) on PORT (0: any); sets A_PID[I] and A_ADDR[I].
declare -a A_PID A_ADDR
start_a() {
    local i=$1 port=$2
    shift 2
    "$BIN/service-a" --host 127.0.0.1 --port "$port" "$@" >"$RUN/a$i.log" 2>&1 &
    A_PID[i]=$!
    PIDS+=("$!")
    A_ADDR[i]=$(wait_addr "$RUN/a$i.log" "${A_PID[i]}")
}

# stop_pid PID: the process and its children (nginx's workers outlive a killed master).
stop_pid() {
    pkill -KILL -P "$1" 2>/dev/null || true
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# free_port: one the kernel hands out now (for the peers, which cannot take port 0).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# pattern_flags SCENARIO: B's flags for the one pattern a row is about, the same fault with and
# without it (the demo's chapters do the same).
pattern_flags() {
    case $1 in
        dead) echo "--eject --retries" ;;
        slow) echo "--balance peak-ewma --hedge auto" ;;
        flaky) echo "--retries" ;;
        outage | blackhole | recovery) echo "--breaker" ;;
        tail) echo "--hedge auto" ;;
        deadline) echo "--propagate-deadline" ;;
    esac
}

# start_b SCENARIO VARIANT URL...: B of that variant over the replicas; sets B_PID and B_ADDR.
start_b_variant() {
    local scenario=$1 variant=$2
    shift 2
    local urls
    urls=$(IFS=,; echo "$*")
    case $variant in
        off|pattern|resilient)
            local extra=()
            [ "$variant" = resilient ] && extra=(--resilient)
            [ "$variant" = pattern ] && read -ra extra <<<"$(pattern_flags "$scenario")"
            "$BIN/service-b" --host 127.0.0.1 --port 0 --service-a-url "$urls" \
                --timeout-ms "$B_TIMEOUT_MS" "${extra[@]}" >"$RUN/b.log" 2>&1 &
            B_PID=$!
            PIDS+=("$!")
            B_ADDR=$(wait_addr "$RUN/b.log" "$B_PID")
            ;;
        nginx|haproxy)
            local port
            port=$(free_port)
            # shellcheck source=/dev/null
            source "$PEERS_DIR/$variant.sh"
            LOG_DIR=$RUN start_b "$port" "$@"
            B_PID=$!
            PIDS+=("$!")
            B_ADDR=127.0.0.1:$port
            for _ in $(seq $((UP_TIMEOUT * 20))); do
                curl -fs "http://$B_ADDR/health" >/dev/null 2>&1 && return 0
                sleep 0.05
            done
            echo "error: $variant as B did not start; its log:" >&2
            tail -n 5 "$RUN/b.log" >&2
            return 1
            ;;
    esac
}

# attempts: B's per-replica attempt and health-check counters now (nothing from a peer,
# which has none).
attempts() {
    curl -s --max-time 1 "http://$B_ADDR/metrics" |
        grep -E '^echo_lab_upstream_replica_(attempts|health_checks)_total' || true
}

# sample_b: those counters once a second, timestamped, into $RUN/b-samples.
# Only our B has them; the peers' columns say n/a where a figure needs them.
sample_b() {
    while :; do
        echo "t $(date +%s.%N)"
        attempts
        sleep 1
    done >"$RUN/b-samples" 2>/dev/null &
    SAMPLER=$!
    PIDS+=("$!")
}

# scrape_a: each live replica's /metrics into $RUN/a<I>.metrics.
scrape_a() {
    local i
    for i in "${!A_ADDR[@]}"; do
        curl -s --max-time 2 "http://${A_ADDR[i]}/metrics" >"$RUN/a$i.metrics" 2>/dev/null || true
    done
}

# load: the open-loop run through B; its JSON summary in $RUN/load.json, start time in $RUN/t0.
load() {
    date +%s.%N >"$RUN/t0"
    # Failures are what these rows measure: --max-error-rate 1 keeps loadgen's exit status 0.
    "$BIN/loadgen" "http://$B_ADDR/call-echo?msg=hello" --rate "$RATE" -d "${DURATION}s" \
        -c "$CONNS" --timeout 5s --max-error-rate 1 --json 2>/dev/null | tail -n 1 >"$RUN/load.json"
}

# chaos SCENARIO I: replica I's chaos flags in that scenario (one per line, for mapfile).
chaos() {
    case $1 in
        slow) [ "$2" = 0 ] && printf '%s\n' --delay-ms 300 ;;
        flaky) printf '%s\n' --fail-rate 0.2 ;;
        outage) printf '%s\n' --fail-rate 1 ;;
        blackhole) printf '%s\n' --blackhole ;;
        tail) printf '%s\n' --tail-rate 0.05 --tail-delay-ms 500 ;;
        deadline) printf '%s\n' --delay-ms 1500 ;;
    esac
    return 0
}

# row SCENARIO VARIANT: one cell of the table, appended to $WORK/results.jsonl.
row() {
    local scenario=$1 variant=$2 i urls=()
    RUN=$WORK/$scenario-$variant
    mkdir -p "$RUN"
    A_PID=()
    A_ADDR=()
    for i in $(seq 0 $((REPLICAS - 1))); do
        local flags
        mapfile -t flags < <(chaos "$scenario" "$i")
        start_a "$i" 0 "${flags[@]+"${flags[@]}"}"
        urls+=("http://${A_ADDR[i]}")
    done
    start_b_variant "$scenario" "$variant" "${urls[@]}"
    local note=""
    case $scenario in
        dead)
            # Killed before the run: B was told about it and must find out.
            stop_pid "${A_PID[2]}"
            note=${A_ADDR[2]}
            unset 'A_ADDR[2]'
            ;;
    esac
    sample_b
    load
    # One last sample as the load ends: a short run would otherwise have few to compare.
    stop_pid "$SAMPLER"
    { echo "t $(date +%s.%N)"; attempts; } >>"$RUN/b-samples"
    # A may still be working on requests B gave up on or cancelled (a 500 ms tail, a 1.5 s
    # delay); let it finish or abandon them before counting.
    if [ "$scenario" = deadline ]; then sleep 2; else sleep 1; fi
    scrape_a
    $TABLE cell "$scenario" "$variant" "$RUN" "$note" >>"$WORK/results.jsonl"
    log "  $variant: $(tail -n 1 "$WORK/results.jsonl")"
    stop_pid "$B_PID"
    for i in "${!A_PID[@]}"; do stop_pid "${A_PID[i]}"; done
}

# recovery VARIANT: all replicas normal, then black-holed for 5 s, then restarted normally on
# the same ports, under a steady stream of calls recorded one by one (bench/scenarios_table.py
# probe). The table shows when the first and the last non-200 came after the restart.
recovery() {
    local variant=$1 i urls=() warm=2 down=5 after=5
    [ "$QUICK" = 1 ] && after=3
    RUN=$WORK/recovery-$variant
    mkdir -p "$RUN"
    A_PID=()
    A_ADDR=()
    for i in $(seq 0 $((REPLICAS - 1))); do
        start_a "$i" 0
        urls+=("http://${A_ADDR[i]}")
    done
    start_b_variant recovery "$variant" "${urls[@]}"
    # A third of the rate: one connection per call from python, and it must keep up.
    local probe_rate=$((RATE / 3 > 0 ? RATE / 3 : 1))
    $TABLE probe "http://$B_ADDR/call-echo?msg=hello" "$probe_rate" $((warm + down + after)) \
        >"$RUN/probe" &
    local probe=$!
    PIDS+=("$probe")
    sleep "$warm"
    date +%s.%N >"$RUN/t_down"
    for i in "${!A_PID[@]}"; do
        stop_pid "${A_PID[i]}"
        start_a "$i" "${A_ADDR[i]##*:}" --blackhole
    done
    sleep "$down"
    for i in "${!A_PID[@]}"; do
        stop_pid "${A_PID[i]}"
        start_a "$i" "${A_ADDR[i]##*:}"
    done
    date +%s.%N >"$RUN/t_up"
    wait "$probe" || true
    $TABLE recovery "$variant" "$RUN" >>"$WORK/results.jsonl"
    log "  $variant: $(tail -n 1 "$WORK/results.jsonl")"
    stop_pid "$B_PID"
    for i in "${!A_PID[@]}"; do stop_pid "${A_PID[i]}"; done
}

log "B variants:$RUN_VARIANTS; ${DURATION}s at ${RATE} req/s per row, $REPLICAS replicas of A"
: >"$WORK/results.jsonl"
for scenario in $SCENARIOS; do
    log "$scenario"
    for variant in $RUN_VARIANTS; do
        if [ "$scenario" = recovery ]; then
            recovery "$variant"
        else
            row "$scenario" "$variant"
        fi
    done
done

OUT_DIR="$ROOT/bench/results"
OUT="$OUT_DIR/scenarios-$(date -u +%Y-%m-%d).md"
# A day's first run takes the date; a later one adds the time, so no run overwrites another.
[ -e "$OUT" ] && OUT="$OUT_DIR/scenarios-$(date -u +%Y-%m-%d-%H%M).md"
mkdir -p "$OUT_DIR"
{
    echo "# Resilience scenarios, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    quick=$([ "$QUICK" = 1 ] && echo ' --quick' || true)
    commit=$(git -C "$ROOT" rev-parse --short HEAD)
    echo "\`bench/scenarios.sh -d $DURATION -r $RATE$quick\` on $(nproc) cores ($commit);" \
         "loadgen open loop, -c $CONNS; $REPLICAS replicas of A; B's deadline $B_TIMEOUT_MS ms."
    echo
    $TABLE table "$WORK/results.jsonl" $RUN_VARIANTS
    if [ ${#NOTES[@]} -gt 0 ]; then echo; fi
    for n in "${NOTES[@]+"${NOTES[@]}"}"; do
        echo "- $n"
    done
} | tee "$OUT"
log "saved $OUT"
