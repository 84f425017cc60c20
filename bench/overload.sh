#!/usr/bin/env bash
# Overload: three A replicas with a real capacity (--workers 1 --work-ms 20 each: 150 calls/s in
# all) behind B plain, B --resilient --adaptive-limit=off (every pattern but the limit; skipped,
# with a note, when `service-b --help` does not list it), B --resilient, nginx and HAProxy (with and without their capacity
# knobs, NGINX_MAX_CONNS and HAPROXY_SERVER_MAXCONN, from the shared resilience peers), and B
# plain over replicas defending themselves (--queue-policy codel-lifo). Open loop, our own
# loadgen, offered load from 0.5x to 3x the capacity; per step goodput (200s within B's 1 s
# deadline per second, as a fraction of the capacity) and the 200s' p99.
# Then the metastable sweep: trigger length x utilisation, which runs recover and which stay down.
#
# usage: bench/overload.sh [-d SECONDS_PER_STEP] [-l LOADS] [-T TRIGGERS] [-U UTILISATIONS] [-s]
#   defaults: -d 10, -l 0.5,1,1.5,2,2.5,3, -T 1,3,5, -U 0.67,0.8; -s skips the metastable sweep
#   env: CARGO_TARGET_DIR, PROJECT_BIN_DIR (as in bench/run.sh), PEERS_DIR (the peers' scripts)
# Output: bench/results/overload-DATE.{csv,md}, bench/results/metastable-DATE.{csv,md},
#         bench/overload.svg (drawn by bench/overload_svg.py).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_PER_STEP=10
LOADS=0.5,1,1.5,2,2.5,3
TRIGGERS=1,3,5
UTILS=0.67,0.8
META=1

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while getopts "d:l:T:U:sh" opt; do
    case $opt in
        d) SECONDS_PER_STEP=$OPTARG ;;
        l) LOADS=$OPTARG ;;
        T) TRIGGERS=$OPTARG ;;
        U) UTILS=$OPTARG ;;
        s) META=0 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
[[ $SECONDS_PER_STEP =~ ^[1-9][0-9]*$ ]] || { echo "error: -d needs a positive integer" >&2; exit 2; }
command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 2; }

cd "$ROOT"
echo "== cargo build --release" >&2
cargo build --release --bins
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

DATE=$(date -u +%Y-%m-%d)
OUT="$ROOT/bench/results"
mkdir -p "$OUT"
python3 bench/overload.py sweep -d "$SECONDS_PER_STEP" --loads "$LOADS" --out "$OUT/overload-$DATE.csv"
python3 bench/overload.py table "$OUT/overload-$DATE.csv" >"$OUT/overload-$DATE.md"
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
(cd bench && python3 overload_svg.py "$OUT/overload-$DATE.csv" overload.svg --date "$DATE" \
    --machine "$(nproc) cores${CPU:+ ($CPU)}" \
    --note "3 replicas x 1 worker x 20 ms = 150/s; open loop, ${SECONDS_PER_STEP} s per step")
if [ "$META" = 1 ]; then
    python3 bench/overload.py metastable --triggers "$TRIGGERS" --utils "$UTILS" \
        --out "$OUT/metastable-$DATE.csv"
    python3 bench/overload.py table "$OUT/metastable-$DATE.csv" >"$OUT/metastable-$DATE.md"
fi
echo "written: bench/results/overload-$DATE.{csv,md}, bench/overload.svg$([ "$META" = 1 ] && echo ", bench/results/metastable-$DATE.{csv,md}")" >&2
