#!/usr/bin/env bash
# Bulkheads against hostile clients (issue 17, items 1 and 2), release binary, loopback only,
# bounded in count and time. Flood clients connect from 127.0.0.10 … .29, the normal client
# from 127.0.0.2 (Linux routes all of 127/8 to lo). The flood client is bench/long_flood.py.
#
#   1. 64 anonymous workers repeating GET /seed/postgres-async?delay=10, against the default
#      settings (the anonymous share: a quarter of the pool) and, interleaved in the same run,
#      against ANONYMOUS_DB_REQUESTS=DB_POOL_SIZE (no share: the behaviour before). The normal
#      client is wrk on GET /notes signed in (-t1 -c4 -d10s): its 503s (non-2xx) and p99.
#   2. Under `ulimit -n 1024` (the cap fits to 944): 1,000 anonymous 30-second poll-sleeps
#      from 20 addresses (evicted at the cap), the same from one address (its connection and
#      long-request limits), and 1,000 event streams of one account (its stream limit). The
#      normal client: 60 GET /notes, signed in, each on a fresh connection from 127.0.0.2:
#      served, p50, p99 — and the same with no flood, in the same run.
#
#   bash bench/hostile_bulkheads.sh               # about 5 minutes
#   FLOOD_SECS=20 ROUNDS=2 bash bench/hostile_bulkheads.sh
#
# Writes its section of bench/RESULTS.md and the raw output to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD_SECS=${FLOOD_SECS:-30}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ROUNDS=${ROUNDS:-1}
POOL=${DB_POOL_SIZE:-16}

ulimit -n 20000 2>/dev/null || true   # for the flood client, not the server

source bench/lib.sh
need wrk wrk
start_postgres
echo "== build (release)"
cargo build --release --bin pgbridge 2>&1 | tail -1
BIN=./target/release/pgbridge
mkdir -p bench/results
RAW="bench/results/hostile-bulkheads-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "# bench/hostile_bulkheads.sh, $(date -u +%FT%TZ)"
  echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (+ uncommitted changes)')"
  echo "# $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(machine)"
} > "$RAW"
raw() { echo "$*" | tee -a "$RAW"; }

# start_server [env or prlimit args...]: sets SERVER_PID, PORT, BASE, TOKEN
start_server() {
  PORT=$(free_port)
  env DATABASE_URL="$PG_URL" BIND_ADDR=127.0.0.1:$PORT RUST_LOG=warn DB_POOL_SIZE="$POOL" \
    "$@" "$BIN" > "$WORK/server-$PORT.log" 2>&1 &
  SERVER_PID=$!
  BENCH_PIDS+=("$SERVER_PID")
  BASE="http://127.0.0.1:$PORT"
  for _ in $(seq 200); do curl -sf "$BASE/healthz" >/dev/null && { TOKEN=$(login bench-normal); return; }; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/server-$PORT.log" >&2; exit 1
}
login() { # login USERNAME: signs up (once per database) and prints a token
  local credentials="{\"username\":\"$1\",\"password\":\"$1-password\"}"
  curl -s -o /dev/null -H 'Content-Type: application/json' -d "$credentials" "$BASE/accounts"
  curl -fsS -H 'Content-Type: application/json' -d "$credentials" "$BASE/sessions" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
metric() { curl -s -m 30 "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'; }

# wrk_notes: "requests non2xx p50 p99" of 10 s of signed-in GET /notes on 4 keep-alive connections
wrk_notes() {
  local out; out=$(wrk -t1 -c4 -d10s --timeout 30s --latency -H "Authorization: Bearer $TOKEN" "$BASE/notes" 2>&1)
  echo "$out" >> "$RAW"
  local requests non2xx p50 p99
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}'); non2xx=${non2xx:-0}
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  echo "$requests $non2xx $p50 $p99"
}

# fresh_60: "served p50 p99 max" of 60 signed-in GET /notes, each on a fresh connection from 127.0.0.2
fresh_60() {
  local times=() ok=0 t
  for _ in $(seq 60); do
    t=$(curl -s -o /dev/null -m 30 --interface 127.0.0.2 -w '%{http_code} %{time_total}' \
      -H "Authorization: Bearer $TOKEN" "$BASE/notes" || echo "000 30")
    [ "${t%% *}" = 200 ] && ok=$((ok + 1))
    times+=("${t##* }")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk -v ok="$ok" '{ a[NR] = $1 * 1000 }
    END { p50 = a[int(NR * 0.5 + 0.5)]; p99 = a[int(NR * 0.99 + 0.5)]; printf "%d %.1f %.1f %.1f\n", ok, p50, p99, a[NR] }'
}

# flood MODE N FIRST ADDRS [TOKEN]: starts bench/long_flood.py; sets FLOOD_PID
flood() {
  python3 bench/long_flood.py "$1" 127.0.0.1 "$PORT" "$2" "$FLOOD_SECS" "$3" "$4" "${5:-}" > "$WORK/flood.json" &
  FLOOD_PID=$!
  BENCH_PIDS+=("$FLOOD_PID")
}

# ---- case 1: the anonymous pool flood, with and without the bulkhead, interleaved
CASE1=()
for round in $(seq "$ROUNDS"); do
  for variant in bulkhead none; do
    case $variant in
      bulkhead) env_args=() ; label="anonymous share (default: $((POOL / 4)) of $POOL)";;
      none) env_args=(ANONYMOUS_DB_REQUESTS="$POOL"); label="no share (ANONYMOUS_DB_REQUESTS=$POOL)";;
    esac
    raw "== case 1, round $round: $label"
    start_server "${env_args[@]}"
    read -r base_req base_bad base_p50 base_p99 <<< "$(wrk_notes)"
    flood pg 64 10 20
    sleep 3
    read -r req bad p50 p99 <<< "$(wrk_notes)"
    wait "$FLOOD_PID" || true
    refused=$(metric pgbridge_bulkhead_refused_share_total)
    stop_server
    raw "   no flood: $base_req requests, $base_bad non-2xx, p50 $base_p50 ms, p99 $base_p99 ms"
    raw "   flood:    $req requests, $bad non-2xx, p50 $p50 ms, p99 $p99 ms; flood $(cat "$WORK/flood.json"); refused at the share: $refused"
    CASE1+=("| $round | $label | $base_bad / $base_req, p99 $base_p99 | **$bad** / $req | $p50 | **$p99** | $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%d / %d" % (d.get("status_200", 0), d.get("status_503", 0)))' "$(cat "$WORK/flood.json")") |")
  done
done

# ---- case 2: long requests at the connection cap, under ulimit -n 1024
CASE2=()
LOW=(prlimit --nofile=1024:1024)
case2() { # case2 NAME MODE N FIRST ADDRS [TOKEN-USER]
  local name=$1 mode=$2 n=$3 first=$4 addrs=$5 user=${6:-}
  raw "== case 2: $name"
  start_server "${LOW[@]}"
  local token=""
  [ -n "$user" ] && token=$(login "$user")
  flood "$mode" "$n" "$first" "$addrs" "$token"
  sleep 8   # the flood ramps up and fills the cap
  local open; open=$(metric pgbridge_http_connections_open)
  read -r served p50 p99 max <<< "$(fresh_60)"
  wait "$FLOOD_PID" || true
  local evicted refused_addr refused_long
  evicted=$(metric pgbridge_http_connections_evicted_total)
  refused_addr=$(metric pgbridge_http_connections_address_refused_total)
  refused_long=$(metric pgbridge_bulkhead_refused_address_total)
  stop_server
  raw "   open 8 s in: $open; normal client: $served/60 served, p50 $p50 ms, p99 $p99 ms, max $max ms"
  raw "   flood $(cat "$WORK/flood.json"); evicted $evicted; connections refused (address) $refused_addr; long requests refused (address) $refused_long"
  CASE2+=("| $name | $open | $evicted / $refused_addr / $refused_long | **$served/60** | $p50 | **$p99** | $max |")
}
raw "== case 2: no flood (ulimit -n 1024)"
start_server "${LOW[@]}"
read -r served p50 p99 max <<< "$(fresh_60)"
stop_server
raw "   normal client: $served/60 served, p50 $p50 ms, p99 $p99 ms, max $max ms"
CASE2+=("| no flood | – | – | $served/60 | $p50 | $p99 | $max |")
case2 "1,000 anonymous poll-sleeps, 20 addresses" sleep 1000 10 20
case2 "1,000 anonymous poll-sleeps, one address" sleep 1000 10 1
case2 "1,000 event streams of one account, 20 addresses" streams 1000 10 20 bench-streams

SECTION="## Bulkheads: anonymous and long requests against signed-in ones (issue 17, items 1–2)

\`bash bench/hostile_bulkheads.sh\` (run by \`bench/hostile.sh\`; floods of ${FLOOD_SECS} s,
DB_POOL_SIZE=$POOL, other settings default; release build; loopback), on $(machine).
Raw output: \`$RAW\`. Flood clients (\`bench/long_flood.py\`) connect from 127.0.0.10 on, the
normal client from 127.0.0.1 (wrk) or 127.0.0.2 (curl). Load average at the start
$LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg): compare rows of one run; absolute
figures move with what else the machine runs.

**Case 1** — 64 anonymous workers each repeating \`GET /seed/postgres-async?delay=10\` (a
fresh connection each, 10 ms pause after a refusal); the normal client is wrk, signed-in
\`GET /notes\`, \`-t1 -c4 -d10s\`, started 3 s into the flood. The two variants alternate in one
run: the default anonymous share, and a share as large as the pool (what the service did
before: the finding).

| round | anonymous share | no flood: non-2xx / requests | flood: signed-in non-2xx (503) / requests | p50 (ms) | p99 (ms) | flood answers 200 / 503 |
| --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${CASE1[@]}")

**Case 2** — server under \`prlimit --nofile=1024\` (the connection cap fits itself to 944);
the flood runs ${FLOOD_SECS} s, and 8 s in the normal client sends 60 signed-in \`GET /notes\`,
each on a fresh connection (curl). Poll-sleeps are 30 s and reopened when they end or are
closed; refused streams retry after 1 s. Counters are the server's \`/metrics\`.

| flood | open connections, 8 s in | evicted / connections refused (per address) / long requests refused (per address) | normal client served | p50 (ms) | p99 (ms) | max (ms) |
| --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${CASE2[@]}")"
write_section hostile-bulkheads "$SECTION"
echo "== written to bench/RESULTS.md and $RAW"
