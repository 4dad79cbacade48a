#!/usr/bin/env bash
# Hostile clients against the release binary, loopback only, bounded in count and time:
#   1. 1,500 slowloris connections (a request head one byte every 2 s, reopened when closed);
#   2. 5,000 idle keep-alive connections (one GET, then nothing);
#   3. 1,100 slowloris connections against a server under `ulimit -n 1024`.
# For each: the server's RSS (before, peak during), what the flood saw (how long its longest
# connection lived, how many the server closed), and a normal client meanwhile — wrk on
# keep-alive connections (p99) and 20 requests each on a fresh connection (served, max).
# Writes its section of bench/RESULTS.md; then runs bench/hostile_replay.sh if it exists,
# bench/hostile_bulkheads.sh (issue 17 cases 1-2: the anonymous pool flood; 1,000 poll-sleeps
# or one account's 1,000 streams under `ulimit -n 1024`) and bench/hostile_login.sh (cases
# 3-6: log-ins, stream opens, secrets in logs).
#
#   bash bench/hostile.sh                      # about 3 minutes
#   FLOOD_SECS=20 bash bench/hostile.sh        # shorter floods
#   SKIP_REPLAY=1 bash bench/hostile.sh        # without the replay half (bench/hostile_replay.sh)
#   SKIP_LOGIN=1 bash bench/hostile.sh         # without bench/hostile_login.sh
#   SKIP_BULKHEADS=1 bash bench/hostile.sh     # without bench/hostile_bulkheads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD_SECS=${FLOOD_SECS:-45}
SLOW_N=${SLOW_N:-1500}
IDLE_N=${IDLE_N:-5000}
LOW_NOFILE_N=${LOW_NOFILE_N:-1100}
# Shorter than the 60 s default so the run stays short; the header timeout is the default.
IDLE_TIMEOUT_MS=${IDLE_TIMEOUT_MS:-30000}
HEADER_READ_TIMEOUT_MS=${HEADER_READ_TIMEOUT_MS:-10000}

ulimit -n 20000 2>/dev/null || true   # for the flood client, not the server

source bench/lib.sh
need wrk wrk
start_postgres
RAW_COMMAND="FLOOD_SECS=$FLOOD_SECS SLOW_N=$SLOW_N IDLE_N=$IDLE_N LOW_NOFILE_N=$LOW_NOFILE_N bash bench/hostile.sh"
raw_results hostile
# Everything printed from here to raw_end also goes to the raw file.
exec 3>&1 4>&2 > >(tee -a "$RAW") 2>&1
echo "== build (release)"
cargo build --release --bin pgbridge 2>&1 | tail -1
BIN=./target/release/pgbridge

# start_server [prlimit args...]: sets SERVER_PID, PORT, BASE
start_server() {
  PORT=$(free_port)
  # Every client here comes from 127.0.0.1: lifting the per-address cap (which would hold the
  # flood, and the normal client with it, to 256 connections) makes the flood one from many
  # addresses, against the process-wide limits. bench/hostile_bulkheads.sh measures that cap.
  DATABASE_URL=$PG_URL BIND_ADDR=127.0.0.1:$PORT RUST_LOG=warn MAX_CONNECTIONS_PER_ADDRESS=0 \
    HEADER_READ_TIMEOUT_MS=$HEADER_READ_TIMEOUT_MS IDLE_TIMEOUT_MS=$IDLE_TIMEOUT_MS \
    "$@" "$BIN" > "$WORK/server-$PORT.log" 2>&1 &
  SERVER_PID=$!
  BENCH_PIDS+=("$SERVER_PID")
  BASE="http://127.0.0.1:$PORT"
  for _ in $(seq 200); do curl -sf "$BASE/healthz" >/dev/null && { login; return; }; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/server-$PORT.log" >&2; exit 1
}
# The normal client's account (/notes needs a bearer token): signed up once per database,
# logged in again after each restart.
login() {
  local credentials='{"username":"bench-normal","password":"bench-normal-password"}'
  curl -s -o /dev/null -H 'Content-Type: application/json' -d "$credentials" "$BASE/accounts"
  TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "$credentials" "$BASE/sessions" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# peaks PID SECONDS: "largest RSS (MB) / most open connections" seen, sampled every 0.5 s
peaks() {
  local peak=0 open_peak=0 now open
  for _ in $(seq $(( $2 * 2 ))); do
    now=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    [ "$now" -gt "$peak" ] && peak=$now
    # At the cap a new connection waits for a free slot: a sample that times out counts 0.
    open=$({ curl -s -m 2 "$BASE/metrics" || true; } | awk '$1 == "pgbridge_http_connections_open" {print $2}'); open=${open:-0}
    [ "$open" -gt "$open_peak" ] && open_peak=$open
    sleep 0.5
  done
  awk -v k="$peak" -v o="$open_peak" 'BEGIN {printf "%.1f %d\n", k/1024, o}'
}
wrk_p99() { # p99 in ms of 10 s of GET /notes on 4 keep-alive connections
  local out; out=$(wrk -t1 -c4 -d10s --timeout 30s --latency -H "Authorization: Bearer $TOKEN" "$BASE/notes" 2>&1)
  echo "$out" >> "$WORK/wrk.log"
  echo "$out" | sed 's/^/   wrk: /' >&2
  to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')"
}
fresh_requests() { # 20 GET /notes, each on a new connection: "served/20, max ms"
  local ok=0 max=0 t
  for _ in $(seq 20); do
    if t=$(curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total}' \
      -H "Authorization: Bearer $TOKEN" "$BASE/notes"); then
      [ "${t%% *}" = 200 ] && ok=$((ok + 1))
      max=$(awk -v a="$max" -v b="${t##* }" 'BEGIN {print (b * 1000 > a) ? b * 1000 : a}')
    fi
  done
  printf "%d/20, max %.0f ms" "$ok" "$max"
}
metric() { { curl -s -m 30 "$BASE/metrics" || true; } | awk -v m="$1" 'index($0, m) == 1 {print $2}'; }

ROWS=()
# scenario NAME MODE N [prlimit args...]
scenario() {
  local name=$1 mode=$2 n=$3; shift 3
  echo "== $name"
  start_server "$@"
  local before; before=$(rss_mb "$SERVER_PID")
  python3 bench/flood.py "$mode" 127.0.0.1 "$PORT" "$n" "$FLOOD_SECS" > "$WORK/flood.json" &
  local flood=$!
  BENCH_PIDS+=("$flood")
  sleep 5   # the flood ramps up
  peaks "$SERVER_PID" 20 > "$WORK/peak" &
  local sampler=$!
  local p99; p99=$(wrk_p99)
  local fresh; fresh=$(fresh_requests)
  wait "$sampler"
  wait "$flood"
  local flood_json; flood_json=$(cat "$WORK/flood.json")
  local header idle refused
  header=$(metric 'pgbridge_http_connections_timed_out_total{reason="header"}')
  idle=$(metric 'pgbridge_http_connections_timed_out_total{reason="idle"}')
  refused=$(metric pgbridge_http_connections_refused_total)
  local longest closed opened
  longest=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["longest"])' "$flood_json")
  closed=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["closed_by_server"])' "$flood_json")
  opened=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["opened"])' "$flood_json")
  stop_server
  local peak_rss peak_open
  read -r peak_rss peak_open < "$WORK/peak"
  echo "   $flood_json"
  echo "   RSS ${before} → peak $peak_rss MB; most open: $peak_open; wrk p99 ${p99} ms; fresh: $fresh"
  ROWS+=("| $name | $before | $peak_rss | $peak_open | $opened / $closed / ${longest} s | $header / $idle / $refused | $p99 | $fresh |")
}

start_server
echo "== baseline (no flood)"
BASE_P99=$(wrk_p99); BASE_FRESH=$(fresh_requests); BASE_RSS=$(rss_mb "$SERVER_PID")
stop_server
echo "   RSS $BASE_RSS MB; wrk p99 $BASE_P99 ms; fresh: $BASE_FRESH"

scenario "$SLOW_N slowloris" slowloris "$SLOW_N"
scenario "$IDLE_N idle keep-alive" idle "$IDLE_N"
scenario "$LOW_NOFILE_N slowloris, ulimit -n 1024" slowloris "$LOW_NOFILE_N" prlimit --nofile=1024:1024

exec 1>&3 2>&4
raw_end
SECTION="## Hostile clients: slowloris, idle keep-alive, few file descriptors

\`bash bench/hostile.sh\` (floods of ${FLOOD_SECS} s; HEADER_READ_TIMEOUT_MS=$HEADER_READ_TIMEOUT_MS,
IDLE_TIMEOUT_MS=$IDLE_TIMEOUT_MS, MAX_CONNECTIONS_PER_ADDRESS=0 — a flood from many addresses —,
other settings default; release build; loopback), $(date -u +%Y-%m-%d): $(machine); $(run_facts).
The flood client is \`bench/flood.py\`; the normal client is wrk (\`-t1 -c4 -d10s\`, GET /notes
on keep-alive connections) and 20 sequential GET /notes each on a fresh connection (curl), both
started 5 s into the flood. RSS and open connections are the server's, sampled every 0.5 s
for 20 s from then.

Baseline, no flood: RSS $BASE_RSS MB, wrk p99 $BASE_P99 ms, fresh connections $BASE_FRESH.

| flood | RSS before (MB) | RSS peak (MB) | most conns open | flood: opened / closed by server / longest-lived | closed for header / idle; accepts refused (EMFILE) | wrk p99 (ms) | fresh connections: served, slowest |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${ROWS[@]}")"
write_section hostile "$SECTION"
echo "== written to bench/RESULTS.md"

if [ -z "${SKIP_REPLAY:-}" ] && [ -f bench/hostile_replay.sh ]; then
  echo "== bench/hostile_replay.sh"
  bash bench/hostile_replay.sh
fi

if [ -z "${SKIP_BULKHEADS:-}" ] && [ -f bench/hostile_bulkheads.sh ]; then
  echo "== bench/hostile_bulkheads.sh"
  bash bench/hostile_bulkheads.sh
fi

if [ -z "${SKIP_LOGIN:-}" ] && [ -f bench/hostile_login.sh ]; then
  echo "== bench/hostile_login.sh"
  BIN=$BIN bash bench/hostile_login.sh
fi
