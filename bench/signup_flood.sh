#!/usr/bin/env bash
# An anonymous sign-up flood (POST /accounts: each one an Argon2id hash of 19 MiB) against
# the release binary on its embedded PostgreSQL, loopback only: the process's resident memory
# before, at the end, and its peak, and the answers by status. Bounded: CONC threads × PER
# sign-ups each.
#
#   bash bench/signup_flood.sh                      # 64 × 4, then 400 × 2
#   BIN=/path/to/other/pgbridge bash bench/signup_flood.sh   # another build, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin pgbridge 2>&1 | tail -1
  BIN=target/release/pgbridge
fi
PORT=${PORT:-18181}
dir=$(mktemp -d /tmp/pgbridge-flood.XXXXXX)
chmod 755 "$dir"
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$dir"' EXIT
run() {
  local conc=$1 per=$2
  EMBEDDED_PG_DIR="$dir/pg-$conc" BIND_ADDR=127.0.0.1:$PORT RUST_LOG=warn "$BIN" > "$dir/log" 2>&1 &
  PID=$!
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
  rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$PID/status"; }
  echo "idle:        $(rss)"
  python3 bench/signup_flood.py "http://127.0.0.1:$PORT" "$conc" "$per"
  echo "after:       $(rss)"
  sleep 5
  echo "5 s later:   $(rss)"
  kill -TERM $PID; wait $PID || true
}
echo "== $BIN"
run 64 4
run 400 2
