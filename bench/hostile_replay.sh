#!/usr/bin/env bash
# Hostile event-stream replays (issue 8): REPLAYS clients ask /notes/events for the whole
# history (Last-Event-ID: 0) of EVENTS stored events and never read, while a normal
# subscriber follows the live stream. Reports the server's peak RSS and the subscriber's
# PATCH-to-delivery latency; writes its section of bench/RESULTS.md. Loopback only, bounded
# (ROUNDS PATCHes, one every INTERVAL_MS). bench/hostile.sh calls it.
# Usage: bash bench/hostile_replay.sh   (REPLAYS=20 EVENTS=500000 ROUNDS=200 INTERVAL_MS=100)
set -euo pipefail
cd "$(dirname "$0")/.."
REPLAYS=${REPLAYS:-20}
EVENTS=${EVENTS:-500000}
ROUNDS=${ROUNDS:-200}
INTERVAL_MS=${INTERVAL_MS:-100}
# Short enough that the never-reading streams are dropped while the rounds run.
STALL_MS=${EVENTS_STALL_TIMEOUT_MS:-10000}

source bench/lib.sh
start_postgres fsync=off
URL=$PG_URL
RAW_COMMAND="REPLAYS=$REPLAYS EVENTS=$EVENTS ROUNDS=$ROUNDS INTERVAL_MS=$INTERVAL_MS bash bench/hostile_replay.sh"
raw_results hostile_replay
HTTP_PORT=$(free_port)

echo "== build (release)"
cargo build --release --bin pgbridge --example hostile_replay 2>&1 | tail -1

echo "== pgbridge on 127.0.0.1:$HTTP_PORT"
DATABASE_URL=$URL BIND_ADDR=127.0.0.1:$HTTP_PORT RUST_LOG=warn DB_POOL_SIZE=16 \
  EVENTS_STALL_TIMEOUT_MS=$STALL_MS \
  ./target/release/pgbridge > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
BENCH_PIDS+=("$SERVER_PID")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && break; sleep 0.1; done

echo "== $REPLAYS never-reading replays of $EVENTS events, $ROUNDS rounds"
OUT=$(PGBRIDGE=127.0.0.1:$HTTP_PORT SERVER_PID=$SERVER_PID DATABASE_URL=$URL \
      REPLAYS=$REPLAYS EVENTS=$EVENTS ROUNDS=$ROUNDS INTERVAL_MS=$INTERVAL_MS \
      timeout 600 ./target/release/examples/hostile_replay)
echo "$OUT" | tee -a "$RAW"
raw_end
val() { echo "$OUT" | awk -v k="$1" '$1 == k { print $2 }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 < b + 0) ? "met" : "missed" }'; }

SECTION=$(cat <<MD
## Hostile event-stream replays (issue 8)

\`$RAW_COMMAND\` (server with EVENTS_STALL_TIMEOUT_MS=$STALL_MS and the other settings at
their defaults), $(date -u +%Y-%m-%d): $(machine); $(run_facts). The client (\`examples/hostile_replay.rs\`), the server and
Postgres share the same cores. $REPLAYS clients send \`GET /notes/events\` with
\`Last-Event-ID: 0\` over $(val events) stored events and never read (4 KB receive buffers);
meanwhile one normal subscriber follows the live stream and a \`PATCH\` is sent every
${INTERVAL_MS} ms. Latency runs from sending the \`PATCH\` to the subscriber reading its event.

| measure | value | goal |
| --- | --- | --- |
| server RSS, history stored, before the replays | $(val rss_idle_mb) MB | |
| server RSS, highest sample (every 20 ms) with the replays open | $(val rss_sampled_peak_mb) MB | |
| server peak RSS (VmHWM, whole run) | $(val rss_peak_mb) MB | < 64 MB: $(verdict "$(val rss_peak_mb)" 64) |
| server RSS after the replays closed | $(val rss_after_close_mb) MB | |
| PATCH → normal subscriber, median | $(val delivery_p50_ms) ms | |
| PATCH → normal subscriber, p99 | $(val delivery_p99_ms) ms | < 50 ms: $(verdict "$(val delivery_p99_ms)" 50) |
| PATCH → normal subscriber, max | $(val delivery_max_ms) ms | |
| most replays catching up at once (sampled) | $(val most_catch_ups) | |
| never-reading streams dropped (stall timeout) | $(val dropped_slow) of $REPLAYS | |

A replay reads a page (EVENTS_REPLAY_PAGE, 500) only when its client has drained the
last one, so a client that never reads costs the page it stalled on, not its history; the
kernel's socket buffers hold what was sent and is not counted in the server's RSS.
MD
)
write_section hostile_replay "$SECTION"
echo "== wrote bench/RESULTS.md"
