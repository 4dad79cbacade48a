#!/usr/bin/env bash
# Scaling out, measured on loopback (README "Scaling out"): a primary, a streaming standby
# (pg_basebackup -R), PgBouncer in transaction mode, three pgbridge replicas and nginx
# running deploy/nginx.conf. Writes its section of bench/RESULTS.md.
#
#   bash bench/scale.sh                 # 10-s wrk rounds (~3 minutes)
#   DURATION=3 bash bench/scale.sh      # a quick smoke run
#
# On a 2-core machine more replicas cannot add CPU: the 1- vs 3-replica rows show the cost
# of the proxy hop and of spreading the load, not a speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
export NOTES=200

source bench/lib.sh
need wrk wrk
need curl curl
need /usr/sbin/nginx nginx
need /usr/sbin/pgbouncer pgbouncer
# synchronous_commit on (fsync off): a commit reaches the standby at once, as in production;
# with it off, WAL waits for the WAL writer (200 ms) and read-your-writes waits with it.
start_postgres fsync=off shared_buffers=128MB
DIRECT="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
RAW_COMMAND="DURATION=$DURATION CONNECTIONS=$CONNECTIONS bash bench/scale.sh"
raw_results scale

scale_cleanup() {
  local status=$?
  set +e
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/standby" -m immediate stop >/dev/null 2>&1 || true
  (exit "$status")
  bench_cleanup
}
trap scale_cleanup EXIT

echo "== standby (pg_basebackup -R)"
SB_PORT=$(free_port)
"${RUN_AS[@]}" "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$WORK/standby" -R -X stream -c fast
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/standby" -l "$WORK/standby.log" -w \
  -o "-p $SB_PORT -k $WORK -c listen_addresses=127.0.0.1 -c hot_standby=on -c max_connections=200" start >/dev/null
STANDBY="postgres://postgres@127.0.0.1:$SB_PORT/postgres"

echo "== pgbouncer $(/usr/sbin/pgbouncer --version | head -1 | awk '{print $2}') (transaction mode)"
start_pgbouncer
POOLED="$POOLER_URL/postgres"

echo "== build (release)"
cargo build --release --bin pgbridge 2>&1 | tail -1
BIN=./target/release/pgbridge

declare -A REPLICA_PID
# start_replica PORT [ENV=VALUE...]: pgbridge on PORT, waits until /readyz answers 200.
start_replica() {
  local port=$1; shift
  env DATABASE_URL="$POOLED" DB_POOL_MODE=transaction EVENTS_DATABASE_URL="$DIRECT" \
      MIGRATE_DATABASE_URL="$DIRECT" DATABASE_READ_URL="$STANDBY" DRAIN_DELAY_MS=5000 \
      RUST_LOG=warn BIND_ADDR="127.0.0.1:$port" "$@" "$BIN" >> "$WORK/pgbridge-$port.log" 2>&1 &
  REPLICA_PID[$port]=$!
  BENCH_PIDS+=($!)
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  echo "pgbridge on $port did not become ready" >&2; tail "$WORK/pgbridge-$port.log" >&2; exit 1
}
stop_replica() {
  local port=$1
  kill -TERM "${REPLICA_PID[$port]}"; wait "${REPLICA_PID[$port]}" 2>/dev/null || true
}

# start_nginx NAME PORT... : nginx running deploy/nginx.conf in front of those replicas.
start_nginx() {
  local name=$1; shift
  local dir="$WORK/nginx-$name" port; port=$(free_port)
  mkdir -p "$dir"
  python3 - "$dir" "$port" "$@" > "$dir/nginx.conf" <<'PY'
import sys
d, port, replicas = sys.argv[1], sys.argv[2], sys.argv[3:]
out, done = [], False
for line in open("deploy/nginx.conf"):
    if "# replica" in line:
        if not done:
            out += [f"        server 127.0.0.1:{r} max_fails=1 fail_timeout=3s;\n" for r in replicas]
            done = True
    elif "# listen" in line: out.append(f"        listen 127.0.0.1:{port};\n")
    elif "# pid" in line: out.append(f"pid {d}/nginx.pid;\n")
    elif "# error_log" in line: out.append(f"error_log {d}/error.log warn;\n")
    elif line.startswith("worker_processes"): out.append("worker_processes 1;\n")
    elif line.strip() == "http {":
        out.append(line)
        out += [f"    {k} {d}/{k.split('_')[0]};\n" for k in
                ["client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"]]
    else: out.append(line)
print("".join(out), end="")
PY
  /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
  BENCH_PIDS+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  NGINX_PORT=$port
}

# run_wrk LABEL URL [wrk args...]: one round; prints "req/s p99".
run_wrk() {
  local label=$1 url=$2; shift 2
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url")
  echo "$out" > "$WORK/wrk-$label.txt"
  { echo "=== wrk $label"; echo "$out"; } >> "$RAW"
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $p99"
}

P1=$(free_port); P2=$(free_port); P3=$(free_port)
echo "== three replicas through PgBouncer, reads from the standby"
start_replica "$P1"; start_replica "$P2"; start_replica "$P3"
# /notes needs a bearer token: one account, logged in once; sessions live in the shared
# database, so the token works on every replica (and the Lua scripts read it from the env).
CREDENTIALS='{"username":"bench","password":"bench password"}'
curl -s -o /dev/null -X POST "http://127.0.0.1:$P1/accounts" -H 'Content-Type: application/json' -d "$CREDENTIALS"
PGBRIDGE_TOKEN=$(curl -s -X POST "http://127.0.0.1:$P1/sessions" -H 'Content-Type: application/json' -d "$CREDENTIALS" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
export PGBRIDGE_TOKEN
for i in $(seq $NOTES); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$P1/notes" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $PGBRIDGE_TOKEN" -d "{\"title\":\"note $i\"}"
done

echo "== proxy hop: GET /notes/{id} direct, through nginx to 1 replica, to 3"
READ_LUA="$WORK/read.lua"
cat > "$READ_LUA" <<LUA
local auth = { ["Authorization"] = "Bearer " .. os.getenv("PGBRIDGE_TOKEN") }
request = function() return wrk.format("GET", "/notes/" .. math.random(1, $NOTES), auth) end
LUA
read -r DIRECT_RPS DIRECT_P99 <<< "$(run_wrk direct "http://127.0.0.1:$P1" -s "$READ_LUA")"
start_nginx one "$P1"
read -r ONE_RPS ONE_P99 <<< "$(run_wrk nginx1 "http://127.0.0.1:$NGINX_PORT" -s "$READ_LUA")"
start_nginx three "$P1" "$P2" "$P3"
THREE=$NGINX_PORT
read -r THREE_RPS THREE_P99 <<< "$(run_wrk nginx3 "http://127.0.0.1:$THREE" -s "$READ_LUA")"

echo "== a read on the primary: direct with named prepared statements, direct unnamed, PgBouncer unnamed"
Q1=$(free_port); Q2=$(free_port); Q3=$(free_port)
start_replica "$Q1" DATABASE_URL="$DIRECT" DB_POOL_MODE=session DATABASE_READ_URL=
start_replica "$Q2" DATABASE_URL="$DIRECT" DB_POOL_MODE=transaction DATABASE_READ_URL= \
  EVENTS_DATABASE_URL="$DIRECT?application_name=listener" MIGRATE=false
start_replica "$Q3" DATABASE_READ_URL=
read -r NAMED_RPS NAMED_P99 <<< "$(run_wrk named "http://127.0.0.1:$Q1" -s "$READ_LUA")"
stop_replica "$Q1"
read -r UNNAMED_RPS UNNAMED_P99 <<< "$(run_wrk unnamed "http://127.0.0.1:$Q2" -s "$READ_LUA")"
stop_replica "$Q2"
read -r POOLED_RPS POOLED_P99 <<< "$(run_wrk pooled "http://127.0.0.1:$Q3" -s "$READ_LUA")"
stop_replica "$Q3"

echo "== mixed load through nginx (1 write in 10, reads with the writer's token)"
read -r MIXED_RPS MIXED_P99 <<< "$(run_wrk mixed "http://127.0.0.1:$THREE" -s bench/scale_mixed.lua)"
SERVED=$(grep SERVED "$WORK/wrk-mixed.txt")
SB=$(echo "$SERVED" | sed 's/.*standby=\([0-9]*\).*/\1/'); PR=$(echo "$SERVED" | sed 's/.*primary=\([0-9]*\).*/\1/')
SHARE=$(python3 -c "print(f'{100*$SB/max(1,$SB+$PR):.1f}')")

echo "== rolling restart under the mixed load (each replica SIGTERMed and restarted in turn)"
ROLL_SECS=$((3 * 8 + 4))
wrk -t2 -c16 -d"${ROLL_SECS}s" -s bench/scale_mixed.lua "http://127.0.0.1:$THREE" > "$WORK/wrk-roll.txt" &
WRK_PID=$!
sleep 2
for port in "$P1" "$P2" "$P3"; do
  stop_replica "$port"
  start_replica "$port"
  sleep 1
done
wait "$WRK_PID"
ROLL_TOTAL=$(awk '/requests in/ {print $1}' "$WORK/wrk-roll.txt")
ROLL_NON2XX=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-roll.txt"); ROLL_NON2XX=${ROLL_NON2XX:-0}
ROLL_SOCKET=$(grep -o 'Socket errors:.*' "$WORK/wrk-roll.txt" || echo "Socket errors: none")
{ echo "=== wrk rolling restart"; cat "$WORK/wrk-roll.txt"; } >> "$RAW"
raw_end

section=$(cat <<MD
## Scaling out (bench/scale.sh)

Command: \`$RAW_COMMAND\` — one round each,
\`wrk -t2 -c$CONNECTIONS -d${DURATION}s\`, everything on loopback on one machine,
$(date -u +%Y-%m-%d): $(machine); nginx $(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2), PgBouncer $(/usr/sbin/pgbouncer --version | head -1 | awk '{print $2}'); $(run_facts).
One round each: treat differences under ~15 % as noise. Topology: primary + streaming standby, PgBouncer (transaction mode,
\`default_pool_size = 16\`), three pgbridge replicas (\`DB_POOL_MODE=transaction\`,
\`DATABASE_READ_URL\` = the standby), nginx with \`deploy/nginx.conf\`.

| GET /notes/{id} (read, from the standby) | req/s | p99 |
| --- | ---: | ---: |
| one replica, direct | $DIRECT_RPS | $DIRECT_P99 |
| through nginx, 1 replica | $ONE_RPS | $ONE_P99 |
| through nginx, 3 replicas | $THREE_RPS | $THREE_P99 |

On 2 cores three replicas add no CPU: the rows show what the proxy hop costs.

| GET /notes/{id} on the primary | req/s | p99 |
| --- | ---: | ---: |
| direct, named statements prepared once per connection (\`DB_POOL_MODE=session\`) | $NAMED_RPS | $NAMED_P99 |
| direct, unnamed statements (\`DB_POOL_MODE=transaction\`) | $UNNAMED_RPS | $UNNAMED_P99 |
| through PgBouncer 1.18, unnamed statements | $POOLED_RPS | $POOLED_P99 |

Mixed load through nginx (1 POST in 10; every read presents the thread's last
\`Pgbridge-Commit-Lsn\`): $MIXED_RPS req/s, p99 $MIXED_P99; the standby served **$SHARE %** of
the reads ($SB of $((SB + PR))), the primary the rest (standby not yet at the token within
\`READ_LSN_WAIT_MS\`).

Rolling restart (each replica SIGTERMed, drained for \`DRAIN_DELAY_MS=5000\`, restarted,
in turn) under \`wrk -c16\` of the mixed load for ${ROLL_SECS} s: **$ROLL_TOTAL requests,
$ROLL_NON2XX non-2xx**, $ROLL_SOCKET.
MD
)
write_section scale "$section"
echo "$section"
