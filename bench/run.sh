#!/usr/bin/env bash
# Build the release binaries and compare echo-lab with its peers, using the shared harness
# (../shared/bench/compare.sh). The tables and the JSON land in bench/results/<date>.md.
#
# usage: bench/run.sh [-d SECONDS] [-c CONNS] [-r ROUNDS] [IMPL...]
#   defaults: -d 10 -c 64 -r 2, IMPL = flask go axum nginx project
#   env: CARGO_TARGET_DIR (where cargo builds), PROJECT_BIN_DIR (where service-a/-b are;
#        default $CARGO_TARGET_DIR/release, else target/release)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_BENCH=$(cd "$ROOT/.." && pwd)/shared/bench
COMPARE="$SHARED_BENCH/compare.sh"
SETUP="$SHARED_BENCH/setup.sh"
OUT_DIR="$ROOT/bench/results"

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

ARGS=()
while getopts "d:c:r:h" opt; do
    case $opt in
        d | c | r) ARGS+=("-$opt" "$OPTARG") ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
IMPLS=("$@")
[ ${#IMPLS[@]} -gt 0 ] || IMPLS=(flask go axum nginx project)

[ -x "$COMPARE" ] || { echo "error: $COMPARE not found (is shared/ beside the project?)" >&2; exit 2; }
if ! command -v wrk >/dev/null; then
    echo "error: wrk not found; install the benchmark prerequisites first: $SETUP (as root)" >&2
    exit 2
fi

cd "$ROOT"
echo "== cargo build --release" >&2
cargo build --release --bins
export PROJECT_BIN_DIR="${PROJECT_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
REPORT="$OUT_DIR/$STAMP.md"
JSON="$OUT_DIR/$STAMP.json"
TABLE=$(mktemp)
trap 'rm -f "$TABLE"' EXIT

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== compare.sh ${ARGS[*]-} ${IMPLS[*]}  (project binaries: $PROJECT_BIN_DIR)" >&2
RESULT_JSON="$JSON" "$COMPARE" "${ARGS[@]+"${ARGS[@]}"}" "${IMPLS[@]}" | tee "$TABLE"

CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
{
    echo "# Benchmark $STAMP"
    echo
    echo "- command: \`${THREADS:+THREADS=$THREADS }bench/run.sh ${ARGS[*]-} ${IMPLS[*]}\`"
    echo "- commit: \`$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- machine: $(nproc) cores${CPU:+, $CPU}, load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- raw wrk output and log tails: \`$SHARED_BENCH/results/last-run/\`"
    echo
    cat "$TABLE"
    echo
    echo "## LAST.json"
    echo
    echo '```json'
    cat "$JSON"
    echo '```'
} >"$REPORT"
echo "== written: ${REPORT#"$ROOT"/} and ${JSON#"$ROOT"/}" >&2
