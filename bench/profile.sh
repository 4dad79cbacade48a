#!/usr/bin/env bash
# Where a request's CPU goes, through the layer and natively: `perf record -g` on the
# TechEmpower example while wrk loads one route, then the top frames (self time) and the
# server's CPU per request. Raw output: bench/results/<time>-profile.txt. Loopback only.
#
#   bash bench/profile.sh                          # /db and /native/db, wrk -t1, 8 s each
#   ROUTES="/plaintext /native/plaintext" BIN=/tmp/old/techempower bash bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
ROUTES=${ROUTES:-/db /native/db /fortunes /native/fortunes}
BIN=${BIN:-./target/release/examples/techempower}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-64}
RAW_COMMAND="DURATION=$DURATION ROUTES='$ROUTES' BIN=$BIN THREADS=$THREADS bash bench/profile.sh"
source bench/lib.sh
need perf linux-perf
need wrk wrk
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB
psql -q -v ON_ERROR_STOP=1 "$PG_URL" -f bench/techempower.sql
if [ "$BIN" = ./target/release/examples/techempower ]; then
  cargo build --release --example techempower 2>&1 | tail -1
fi
raw_results profile
PORT=$(free_port)
DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$PORT" "$BIN" > "$WORK/server.log" 2>&1 &
PID=$!
BENCH_PIDS+=("$PID")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/plaintext" >/dev/null && break; sleep 0.1; done
for route in $ROUTES; do
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT$route" >/dev/null
  t0=$(cpu_ticks "$PID")
  perf record -q -F 999 -g -p "$PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>/dev/null &
  PERF=$!
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$PORT$route")
  wait "$PERF" || true
  t1=$(cpu_ticks "$PID")
  requests=$(echo "$out" | awk '/requests in/ { print $1 }')
  us=$(awk -v t=$((t1 - t0)) -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  {
    echo "=== profile route=$route wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
    echo "$out"
    echo "server CPU per request: $us us"
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]-]*$//' | head -40
  } >> "$RAW"
  echo "  $route: $(echo "$out" | awk '/^Requests\/sec:/ { print $2 }') req/s, server CPU $us us per request"
done
raw_end
echo "== wrote $RAW"
