#!/usr/bin/env bash
# SSE fan-out benchmark: SUBSCRIBERS concurrent /notes/events streams on one LISTEN
# connection; server RSS and PATCH-to-delivery latency. Writes its section of
# bench/RESULTS.md and its raw output to bench/results/<time>-sse.txt. Loopback only.
# Usage: bash bench/sse.sh   (SUBSCRIBERS=10000 ROUNDS=100; FEATURES=jemalloc builds the server
# with that cargo feature, as the Docker image is; SERVER_BIN=/path/to/pgbridge runs that
# binary instead of this tree's, to compare an old build with a new one; the server reads
# TOKIO_WORKER_THREADS from the environment, like every tokio program; it gets MAX_CONNECTIONS
# = SUBSCRIBERS + 1000, and the client fails, rather than waits, if the streams do not all
# open within OPEN_TIMEOUT_S, default 120; PROFILE=1 adds a `perf record -g` of the server
# over 5 s of rounds to the raw output)
# The streams need a token: the client (examples/sse_fanout.rs) signs the `bench` account up
# and logs in first, and every stream sends `Authorization: Bearer` (each one is
# authenticated when it opens, and its session checked again on every heartbeat).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSCRIBERS=${SUBSCRIBERS:-10000}
# 100 rounds: the p99 of the last subscriber's latency is the 99th of 100, not the slowest of a few.
ROUNDS=${ROUNDS:-100}
# The streams, the bench's own requests, and room: the server's default cap (10,000) is
# exactly the default subscriber count.
MAX_CONNECTIONS=${MAX_CONNECTIONS:-$((SUBSCRIBERS + 1000))}
# Every stream comes from one address (loopback) and one account (`bench`): the per-address
# connection and long-request caps (256 and 64) and the per-account stream cap (32) would
# refuse all but the first few, so the server runs with them off (0) or at SUBSCRIBERS.
PER_CLIENT_LIMITS="MAX_CONNECTIONS_PER_ADDRESS=0 MAX_LONG_REQUESTS_PER_ADDRESS=0 EVENTS_MAX_STREAMS_PER_ACCOUNT=$SUBSCRIBERS"
FEATURES=${FEATURES:-}
RAW_COMMAND="${PROFILE:+PROFILE=$PROFILE }${FEATURES:+FEATURES=$FEATURES }${TOKIO_WORKER_THREADS:+TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS }${SERVER_BIN:+SERVER_BIN=$SERVER_BIN }SUBSCRIBERS=$SUBSCRIBERS ROUNDS=$ROUNDS MAX_CONNECTIONS=$MAX_CONNECTIONS bash bench/sse.sh"

SERVER_BIN=${SERVER_BIN:-./target/release/pgbridge}

source bench/lib.sh
start_postgres fsync=off
URL=$PG_URL
HTTP_PORT=$(free_port)

echo "== build (release)"
cargo build --release ${FEATURES:+--features "$FEATURES"} --bin pgbridge --example sse_fanout 2>&1 | tail -1
raw_results sse

# Each stream is one socket on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((SUBSCRIBERS + 200)) ] || { echo "open-file limit $(ulimit -n) is too low for $SUBSCRIBERS streams" >&2; exit 1; }
echo "== pgbridge on 127.0.0.1:$HTTP_PORT"
DATABASE_URL=$URL BIND_ADDR=127.0.0.1:$HTTP_PORT RUST_LOG=warn DB_POOL_SIZE=16 \
  MAX_CONNECTIONS=$MAX_CONNECTIONS env $PER_CLIENT_LIMITS "$SERVER_BIN" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
BENCH_PIDS+=("$SERVER_PID")
ready=no
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && { ready=yes; break; }; sleep 0.1; done
[ "$ready" = yes ] || { echo "the server did not become ready in 30 s; its log:" >&2; cat "$WORK/server.log" >&2; exit 1; }

echo "== $SUBSCRIBERS subscribers, $ROUNDS rounds"
# PROFILE=1: perf on the server from the first round (the client creates $MARK then), 5 s.
MARK=$WORK/rounds-started
PERF_JOB=
if [ "${PROFILE:-0}" = 1 ]; then
  need perf linux-perf
  ( for _ in $(seq 3000); do [ -e "$MARK" ] && break; sleep 0.1; done
    perf record -q -F 999 -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep 5 >/dev/null 2>&1 ) &
  PERF_JOB=$!
fi
if ! OUT=$(PGBRIDGE=127.0.0.1:$HTTP_PORT SERVER_PID=$SERVER_PID DATABASE_URL=$URL ROUNDS_STARTED_FILE=$MARK \
      SUBSCRIBERS=$SUBSCRIBERS ROUNDS=$ROUNDS ./target/release/examples/sse_fanout); then
  echo "$OUT"
  echo "FAILED: the fan-out client stopped (above); the server's log tail:" >&2
  tail -n 20 "$WORK/server.log" >&2
  exit 1
fi
echo "$OUT" | tee -a "$RAW"
if [ -n "$PERF_JOB" ]; then
  wait "$PERF_JOB" || true
  # awk, not head: head's early exit would fail the pipeline (pipefail) and end the script.
  {
    echo "== server profile: perf record -g -F 999 over 5 s of rounds, self time"
    perf report -q -i "$WORK/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null | awk 'NR <= 5'
    perf report -q -i "$WORK/perf.data" --stdio --no-children -g none --sort symbol 2>/dev/null | awk 'NR <= 30'
    echo "== the same, with callees (the kernel's send path and, on loopback, the receiver's)"
    perf report -q -i "$WORK/perf.data" --stdio --children -g none --sort symbol 2>/dev/null \
      | awk '/__GI___writev|tcp_sendmsg_locked|net_rx_action|tcp_v4_rcv|sock_def_readable/ && n++ < 8'
  } | sed 's/ *$//' | tee -a "$RAW"
fi
raw_end
val() { echo "$OUT" | awk -v k="$1" '$1 == k { print $2 }'; }
vals() { echo "$OUT" | awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print }'; }

verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 < b + 0) ? "met" : "missed" }'; }
SECTION=$(cat <<MD
## SSE fan-out: \`/notes/events\` (issue 4)${FEATURES:+, the server built with \`--features $FEATURES\`}

\`$RAW_COMMAND\`, $(date -u +%Y-%m-%d): $(machine); $(run_facts).
The client (\`examples/sse_fanout.rs\`), the server and Postgres share the same $(nproc) cores.
Latency runs from sending the \`PATCH\` to a subscriber reading the event: it includes the
request, the commit, the NOTIFY, the fan-out and the client's own scheduling of $SUBSCRIBERS sockets.

| measure | value | goal |
| --- | --- | --- |
| subscribers | $SUBSCRIBERS | 10,000 |
| LISTEN connections | $(val listen_connections) | 1 |
| server RSS, idle | $(val rss_idle_mb) MB | |
| server RSS, all streams open | $(val rss_open_mb) MB | ≤ 150 MB: $(verdict "$(val rss_peak_mb)" 150.01) |
| server peak RSS (VmHWM) | $(val rss_peak_mb) MB | |
| PATCH → first subscriber, median (the request, the commit and the NOTIFY) | $(val first_subscriber_p50_ms) ms | |
| PATCH → last subscriber, median | $(val last_subscriber_p50_ms) ms | |
| PATCH → last subscriber, p99 | $(val last_subscriber_p99_ms) ms | ≤ 100 ms: $(verdict "$(val last_subscriber_p99_ms)" 100.01) |
| PATCH → each delivery, median | $(val delivery_p50_ms) ms | |
| PATCH → each delivery, p99 | $(val delivery_p99_ms) ms | |
| server CPU per round (of which in the kernel) | $(val server_cpu_ms_round) ms ($(val server_sys_ms_round) ms) | |
| benchmark client CPU per round | $(val client_cpu_ms_round) ms | |
| rounds whose last delivery took over 100 ms | $(val rounds_over_100_ms) of $ROUNDS | |
| idle CPU while a round delivered (mean) | $(val idle_cpu_ms_delivering) ms | |
| server threads preempted per round | $(val server_preempted_round) | |

PATCH → last subscriber, round by round (ms): $(vals last_subscriber_ms_by_round).

Where the time goes: each event costs the server one wake-up and one \`writev\` per stream, and
the client one \`read\` per stream. On loopback a \`writev\` also runs the receiving socket's TCP
path in the sender's context, so the server's kernel time above includes most of the network
stack's work for both ends. The server and the client share the 2 cores (with Postgres), so the
last subscriber waits for roughly their CPU per round divided by two; 100 ms at 10,000 streams
would need about 10 µs of CPU per stream per event, end to end, where this machine spends about
$(awk -v s="$(val server_cpu_ms_round)" -v c="$(val client_cpu_ms_round)" -v n="$SUBSCRIBERS" 'BEGIN { printf "%.0f", (s + c) * 1000 / n }') µs.
MD
)
write_section "sse${FEATURES:+-$FEATURES}" "$SECTION"
echo "== wrote bench/RESULTS.md"
