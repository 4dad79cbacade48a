#!/usr/bin/env bash
# The path users ship against the bare path: authenticated, row-level-security-scoped
# notes requests (GET /notes/{id}, GET /notes?limit=20, POST /notes, PATCH /notes/{id})
# next to GET /db through the layer (examples/techempower) and the service's /healthz,
# interleaved in the same rounds, with wrk -t1 and -t2. For each run: req/s, p99, and the
# CPU per request of the server process and of every Postgres backend (utime+stime from
# /proc/PID/stat, before/after). The notes routes run twice: on a service connected
# directly, and on one whose pool goes through PgBouncer in transaction mode.
# Release build, one account, 50 notes. Loopback only. The raw output goes to
# bench/results/notes-<UTC time>.txt (core count, load average and commit included).
#
#   bash bench/notes.sh                     # 3 rounds of 5 s per route (~6 minutes)
#   DURATION=2 ROUNDS=1 bash bench/notes.sh # a quick smoke run
#   PGBOUNCER=0 bash bench/notes.sh         # direct only
#   POOLER_HOP=tcp bash bench/notes.sh      # PgBouncer to Postgres over loopback TCP, not the socket
#   PROFILE=1 bash bench/notes.sh           # and perf profiles of /healthz and GET /notes/{id}
#   BUILD=0 bash bench/notes.sh             # the binaries already in target/release
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-"1 2"}
PGBOUNCER=${PGBOUNCER:-1}

source bench/lib.sh
need wrk wrk
need curl curl
need psql postgresql-client
[ "$PGBOUNCER" = 1 ] && need /usr/sbin/pgbouncer pgbouncer   # PGBOUNCER=0 skips that mode

mkdir -p bench/results
OUT=bench/results/notes-$(date -u +%Y%m%dT%H%M%SZ).txt
exec > >(tee "$OUT") 2>&1

# fsync off, as bench/run.sh: this measures the service, its driver and Postgres' CPU,
# not the disk.
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB
psql -q -v ON_ERROR_STOP=1 "$PG_URL" -f bench/techempower.sql
PG_PID=$(head -1 "$WORK/data/postmaster.pid")

POOLED=""
if [ "$PGBOUNCER" = 1 ]; then
  start_pgbouncer
  POOLED="$POOLER_URL/postgres"
fi

if [ "${BUILD:-1}" = 1 ]; then
  echo "== build (release)"
  cargo build --release --bin pgbridge --example techempower 2>&1 | tail -1
else
  echo "== no build (BUILD=0): ./target/release as it is, built $(date -u -r target/release/pgbridge +%FT%TZ)"
fi

declare -A URL_OF PID_OF
# start NAME PROBE COMMAND ENV... : starts a server on a free port, waits for PROBE.
start() {
  local label=$1 probe=$2 binary=$3 port; shift 3
  port=$(free_port)
  env DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$port" "$@" "$binary" > "$WORK/$label.log" 2>&1 &
  BENCH_PIDS+=("$!")
  PID_OF[$label]=$!
  URL_OF[$label]="http://127.0.0.1:$port"
  for _ in $(seq 300); do curl -sf "${URL_OF[$label]}$probe" >/dev/null && return; sleep 0.1; done
  echo "$label did not start" >&2; cat "$WORK/$label.log" >&2; exit 1
}
# The service as a new user runs it: default settings, default log level.
start direct /healthz ./target/release/pgbridge
# The bare path on the service's own default thread layout (one multi-threaded runtime), so
# that the ratios price the owner-scoped path, not the runtime (the example's default is
# one runtime per core).
start layer /plaintext ./target/release/examples/techempower RUNTIME=multi
if [ -n "$POOLED" ]; then
  start bouncer /healthz ./target/release/pgbridge DATABASE_URL="$POOLED" DB_POOL_MODE=transaction \
    EVENTS_DATABASE_URL="$PG_URL" MIGRATE_DATABASE_URL="$PG_URL" MIGRATE=false
fi

echo "== one account, 50 notes"
BASE=${URL_OF[direct]}
credentials='{"username":"bench-notes","password":"bench-notes-password"}'
curl -sf -o /dev/null -H 'Content-Type: application/json' -d "$credentials" "$BASE/accounts"
TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "$credentials" "$BASE/sessions" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
IDS=()
for i in $(seq 50); do
  IDS+=("$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"title\":\"note $i\",\"body\":\"the body of note $i\",\"tags\":[\"bench\"]}" "$BASE/notes" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')")
done
NOTE=${IDS[24]}
AUTH="Authorization: Bearer $TOKEN"
for label in "${!URL_OF[@]}"; do
  case $label in layer) continue ;; esac
  curl -fsS -H "$AUTH" "${URL_OF[$label]}/notes/$NOTE" | grep -q '"title":"note 25"' \
    || { echo "FAIL GET /notes/$NOTE on $label" >&2; exit 1; }
done
curl -fsS "${URL_OF[layer]}/db" | grep -q '"randomNumber":' || { echo "FAIL /db" >&2; exit 1; }

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"posted","body":"a note written by wrk","tags":["bench"]}'
wrk.headers["Content-Type"] = "application/json"
LUA
{
  echo "local ids = {$(IFS=,; echo "${IDS[*]}")}"
  cat <<'LUA'
-- Each wrk thread starts at its own place in the list, so that two threads do not patch
-- the same note at once (which answers 412: the lost-update check, not the path measured).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 17)
end
local n = 0
function init(args)
  n = tonumber(wrk.thread:get("offset")) or 0
end
request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  -- wrk.format replaces wrk.headers (the -H ones) with the table given: copy them.
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  headers["Content-Type"] = "application/merge-patch+json"
  headers["If-Match"] = "*"
  return wrk.format("PATCH", "/notes/" .. id, headers, '{"body":"patched ' .. n .. '"}')
end
LUA
} > "$WORK/patch.lua"
# Check the PATCH script once: every request must be a 200.
curl -fsS -o /dev/null -X PATCH -H "$AUTH" -H 'Content-Type: application/merge-patch+json' -H 'If-Match: *' \
  -d '{"body":"patched"}' "$BASE/notes/$NOTE" || { echo "FAIL PATCH" >&2; exit 1; }

pg_pids() { echo "$PG_PID" $(pgrep -P "$PG_PID" || true); }
HZ=$(getconf CLK_TCK)
RESULTS=$WORK/results.tsv
: > "$RESULTS"
# run ROUTE-LABEL SERVER THREADS URL [wrk args]
run() {
  local label=$1 server=$2 threads=$3 url=$4; shift 4
  local pids out rps p99 requests bad s0 s1 p0 p1 server_us pg_us
  pids=$(pg_pids)
  s0=$(cpu_ticks "${PID_OF[$server]}"); p0=$(cpu_ticks $pids)
  out=$(wrk -t"$threads" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url")
  s1=$(cpu_ticks "${PID_OF[$server]}"); p1=$(cpu_ticks $(pg_pids))
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  requests=$(echo "$out" | awk '/requests in/ { print $1 }')
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  server_us=$(awk -v d=$((s1 - s0)) -v n="$requests" -v hz="$HZ" 'BEGIN { printf "%.0f", d * 1e6 / hz / n }')
  pg_us=$(awk -v d=$((p1 - p0)) -v n="$requests" -v hz="$HZ" 'BEGIN { printf "%.0f", d * 1e6 / hz / n }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$server" "$threads" "$rps" "$p99" "$server_us" "$pg_us" "${bad:-0}" >> "$RESULTS"
  printf '  %-22s %-8s -t%s %10s req/s  p99 %7s ms  server %5s us/req  postgres %5s us/req%s\n' \
    "$label" "$server" "$threads" "$rps" "$p99" "$server_us" "$pg_us" "${bad:+  NON-2XX: $bad}"
}

SERVERS=(direct)
[ -n "$POOLED" ] && SERVERS+=(bouncer)
echo "== warm-up"
for server in "${SERVERS[@]}"; do
  wrk -t1 -c"$CONNECTIONS" -d1s -H "$AUTH" "${URL_OF[$server]}/notes/$NOTE" >/dev/null
done
wrk -t1 -c"$CONNECTIONS" -d1s "${URL_OF[layer]}/db" >/dev/null

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  for threads in $THREADS; do
    run "GET /db" layer "$threads" "${URL_OF[layer]}/db"
    run "GET /healthz" direct "$threads" "${URL_OF[direct]}/healthz"
    for server in "${SERVERS[@]}"; do
      url=${URL_OF[$server]}
      run "GET /notes/{id}" "$server" "$threads" "$url/notes/$NOTE" -H "$AUTH"
      run "GET /notes?limit=20" "$server" "$threads" "$url/notes?limit=20" -H "$AUTH"
      run "POST /notes" "$server" "$threads" "$url/notes" -H "$AUTH" -s "$WORK/post.lua"
      run "PATCH /notes/{id}" "$server" "$threads" "$url/notes" -H "$AUTH" -s "$WORK/patch.lua"
    done
  done
done

if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
  # Where the service's CPU goes: perf on the direct server while wrk runs, flat by symbol
  # (the release build has symbols but no frame pointers, so call graphs are partial).
  profile() { # profile LABEL URL [wrk args]
    local label=$1 url=$2; shift 2
    wrk -t1 -c"$CONNECTIONS" -d"$((DURATION + 2))s" "$@" "$url" >/dev/null &
    local load=$!
    sleep 1
    perf record -q -g -F 999 -p "${PID_OF[direct]}" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1
    wait "$load" || true
    echo "== perf: $label, top symbols (self %)"
    perf report -q -i "$WORK/perf.data" --stdio --no-children -g none --sort dso,symbol \
      --percent-limit 1 2>/dev/null | grep '%' | sed 's/  */ /g' | cut -c1-120 | head -30
  }
  profile "GET /healthz" "${URL_OF[direct]}/healthz"
  profile "GET /notes/{id}" "${URL_OF[direct]}/notes/$NOTE" -H "$AUTH"
fi

echo "== medians of $ROUNDS rounds (ratio: req/s against GET /db with the same wrk threads, same rounds)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
groups = {}
for label, server, threads, rps, p99, s_us, pg_us, bad in rows:
    groups.setdefault((label, server, threads), []).append((float(rps), float(p99), float(s_us), float(pg_us), int(bad)))
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in groups.items()}
print(f"| request | server | wrk | req/s | × /db | p99 ms | server µs/req | Postgres µs/req | non-2xx |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for (label, server, threads), (rps, p99, s_us, pg_us, bad) in med.items():
    db = med.get(("GET /db", "layer", threads))
    ratio = f"{rps / db[0]:.2f}" if db else ""
    print(f"| {label} | {server} | -t{threads} | {rps:,.0f} | {ratio} | {p99:.2f} | {s_us:.0f} | {pg_us:.0f} | {bad} |")
for (label, server, threads), v in med.items():
    if server == "bouncer" and (label, "direct", threads) in med:
        d = med[(label, "direct", threads)]
        print(f"through PgBouncer / direct, {label} -t{threads}: {v[0] / d[0]:.2f}")
PY
echo "== $(machine)"
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git log -1 --format="%h %s" | cut -c1-60)$(git diff --quiet HEAD -- src || echo ' (with uncommitted changes)'), $DURATION s per run, $CONNECTIONS connections"
echo "raw output: $OUT"
