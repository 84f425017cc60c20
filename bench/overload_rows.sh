#!/usr/bin/env bash
# The three overload rows, for B plain, B --resilient with and without its adaptive limit
# (--adaptive-limit=off), nginx and HAProxy as B, each with and without its capacity knob:
#   replica back   3 replicas (4 workers x 10 ms each), 300 calls/s; 1 of 3 killed at 3 s, back
#                  at 6 s: seconds until it gets >= 90 % of its fair share (a third) in 1 s
#   overload 2x    3 replicas x 1 worker x 20 ms (150/s), 300 calls/s for 10 s: goodput as a
#                  fraction of the capacity, and the 200s' p99
#   metastable     3 replicas at 100/s each, 200 calls/s; capacity cut to a third (work-ms 10 ->
#                  30 through /control) from 3 s to 6 s: does goodput come back, and when
# usage: bench/overload_rows.sh [OUT.md] [--only "B --resilient;nginx"]   (env as bench/overload.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
echo "== cargo build --release" >&2
cargo build --release --bins
ulimit -n 65536 2>/dev/null || true
python3 bench/overload.py rows --out "${1:-}" "${@:2}"
