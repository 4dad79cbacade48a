#!/usr/bin/env bash
# TechEmpower database tests through the contract's layer and as native axum twins,
# against two reference programs run in the same interleaved rounds — the per-core
# pipelined technique (examples/reference_percore.rs, also run on one multi-threaded
# runtime as "percore-mt") and plain axum + deadpool (examples/reference_deadpool.rs) —
# and the database's own ceiling (pgbench), with wrk; and `/db` through a second server
# whose connections use TLS (sslmode=verify-full), to price it. Writes its sections of
# bench/RESULTS.md. Loopback only.
#
#   bash bench/run.sh              # 3 rounds of 10 s per route and variant (~10 minutes)
#   DURATION=3 ROUNDS=1 bash bench/run.sh   # a quick smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}

if ! command -v wrk >/dev/null || ! command -v pgbench >/dev/null || ! command -v openssl >/dev/null; then
  echo "== installing wrk and pgbench"
  apt-get update -q && apt-get install -y -q --no-install-recommends wrk postgresql-client openssl >/dev/null
fi

source bench/lib.sh
# fsync off: this measures the service and its driver, not the disk.
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB
psql -q -v ON_ERROR_STOP=1 "$PG_URL" -f bench/techempower.sql

echo "== TLS on the same server: a throwaway CA and a certificate for localhost"
(
  cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=pgbridge bench CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out server.crt -extfile ext.cnf 2>/dev/null
  chmod 600 server.key
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres server.key server.crt; fi
)
psql -q -v ON_ERROR_STOP=1 "$PG_URL" \
  -c "ALTER SYSTEM SET ssl_cert_file = '$WORK/server.crt'" \
  -c "ALTER SYSTEM SET ssl_key_file = '$WORK/server.key'" \
  -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
PG_TLS_URL="postgres://postgres@localhost:$PG_PORT/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=$WORK/ca.pem"

echo "== build (release)"
cargo build --release --example techempower --example reference_percore --example reference_deadpool 2>&1 | tail -1
# start_server NAME ENV... : starts ./target/release/examples/NAME on a free port; sets URL_OF[NAME].
declare -A URL_OF
start_server() {
  local label=$1 binary=$2 port; shift 2
  port=$(free_port)
  env DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$port" "$@" "./target/release/examples/$binary" > "$WORK/$label.log" 2>&1 &
  BENCH_PIDS+=("$!")
  URL_OF[$label]="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "${URL_OF[$label]}/plaintext" >/dev/null && break; sleep 0.1; done
}
start_server layer techempower
SERVER_PID=${BENCH_PIDS[-1]}
BASE=${URL_OF[layer]}
start_server percore reference_percore
start_server percore-mt reference_percore RUNTIME=multi
start_server deadpool reference_deadpool
# The layer's server again, its shared connections and pool connecting over TLS.
start_server layer-tls techempower DATABASE_URL="$PG_TLS_URL"
TLS_BASE=${URL_OF[layer-tls]}

echo "== checking every route answers correctly"
check() { # check PATH PATTERN
  local body; body=$(curl -sf "$BASE$1") || { echo "FAIL $1: no answer" >&2; exit 1; }
  echo "$body" | grep -q -- "$2" || { echo "FAIL $1: $body" >&2; exit 1; }
}
for prefix in "" "/native"; do
  check "$prefix/plaintext" '^Hello, World!$'
  check "$prefix/json" '"message":"Hello, World!"'
  check "$prefix/db" '"randomNumber":'
  [ "$(curl -s "$BASE$prefix/queries?queries=20" | grep -o '"id"' | wc -l)" = 20 ] || { echo "FAIL $prefix/queries" >&2; exit 1; }
  [ "$(curl -s "$BASE$prefix/queries?queries=foo" | grep -o '"id"' | wc -l)" = 1 ] || { echo "FAIL $prefix/queries?queries=foo" >&2; exit 1; }
  [ "$(curl -s "$BASE$prefix/queries?queries=501" | grep -o '"id"' | wc -l)" = 500 ] || { echo "FAIL $prefix/queries?queries=501" >&2; exit 1; }
  check "$prefix/fortunes" 'Additional fortune added at request time.'
  check "$prefix/fortunes" '&lt;script&gt;alert(&quot;This should not be displayed'
  check "$prefix/fortunes" 'フレームワークのベンチマーク'
  check "$prefix/updates?queries=5" '"randomNumber":'
done
[ "$(curl -s "$BASE/sequential/queries?queries=20" | grep -o '"id"' | wc -l)" = 20 ] || { echo "FAIL sequential" >&2; exit 1; }
for ref in percore percore-mt deadpool; do
  BASE=${URL_OF[$ref]}
  check /db '"randomNumber":'
  [ "$(curl -s "$BASE/queries?queries=20" | grep -o '"id"' | wc -l)" = 20 ] || { echo "FAIL $ref /queries" >&2; exit 1; }
  check /fortunes '&lt;script&gt;alert(&quot;This should not be displayed'
  check /fortunes 'フレームワークのベンチマーク'
done
BASE=${URL_OF[layer]}
before=$(psql -Atq "$PG_URL" -c "SELECT sum(randomnumber::bigint) FROM world")
curl -sf "$BASE/updates?queries=500" >/dev/null
after=$(psql -Atq "$PG_URL" -c "SELECT sum(randomnumber::bigint) FROM world")
[ "$before" != "$after" ] || { echo "FAIL /updates changed nothing" >&2; exit 1; }
body=$(curl -sf "$TLS_BASE/db") || { echo "FAIL /db over TLS: no answer" >&2; cat "$WORK/layer-tls.log" >&2; exit 1; }
echo "$body" | grep -q '"randomNumber":' || { echo "FAIL /db over TLS: $body" >&2; exit 1; }
# /db runs on the shared connections: those of the TLS server must be encrypted.
[ "$(psql -Atq "$PG_URL" -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'pgbridge-shared'")" -gt 0 ] \
  || { echo "FAIL: the TLS server's shared connections are not encrypted" >&2; exit 1; }
echo "all routes correct (and /db over TLS, its connections encrypted)"

# to_ms VALUE-WITH-UNIT
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
RESULTS=$WORK/results.tsv
: > "$RESULTS"
run_wrk() { # run_wrk LABEL VARIANT URL
  local out rps p99 bad log
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$3")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  if [ -n "$bad" ]; then
    # Recorded and reported, not fatal: one stray error must not lose a long run.
    echo "  WARNING $3: $bad non-2xx answers; server log tail:" >&2
    log=$WORK/$2.log; [ -f "$log" ] || log=$WORK/layer.log
    tail -n 5 "$log" >&2 || true
    printf '%s\t%s\t%s\n' "$1" "$2" "$bad" >> "$WORK/errors.tsv"
  fi
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$rps" "$p99" >> "$RESULTS"
  printf '  %-22s %-10s %10s req/s  p99 %8s ms\n' "$1" "$2" "$rps" "$p99"
}
run_pgbench() {
  local script=$WORK/select.sql out tps
  printf '\\set id random(1, 10000)\nSELECT id, randomnumber FROM world WHERE id = :id;\n' > "$script"
  out=$(pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" -f "$script" "$PG_URL" 2>&1)
  tps=$(echo "$out" | awk '/^tps = / { printf "%.0f", $3; exit }')
  printf '%s\t%s\t%s\t%s\n' "pgbench ceiling" "pgbench" "$tps" "" >> "$RESULTS"
  printf '  %-22s %-10s %10s tx/s\n' "pgbench ceiling" "pgbench" "$tps"
}

echo "== warm-up"
for path in /db /native/db /queries?queries=20 /fortunes /native/fortunes; do
  wrk -t2 -c"$CONNECTIONS" -d2s "$BASE$path" >/dev/null
done
for ref in percore percore-mt deadpool; do
  wrk -t2 -c"$CONNECTIONS" -d2s "${URL_OF[$ref]}/db" >/dev/null
done
wrk -t2 -c"$CONNECTIONS" -d2s "$TLS_BASE/db" >/dev/null

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  run_pgbench
  for route in plaintext json db "queries?queries=20" fortunes "updates?queries=20"; do
    label="/${route}"
    run_wrk "$label" layer "$BASE/$route"
    run_wrk "$label" native "$BASE/native/$route"
    case $route in
      db|queries*|fortunes)
        for ref in percore percore-mt deadpool; do run_wrk "$label" "$ref" "${URL_OF[$ref]}/$route"; done ;;
    esac
    if [ "$route" = db ]; then run_wrk "$label" "layer, TLS" "$TLS_BASE/db"; fi
  done
  run_wrk "/queries?queries=20" sequential "$BASE/sequential/queries?queries=20"
done
PEAK_RSS_64_MB=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")
echo "== 256 connections (peak RSS)"
for route in db "queries?queries=20" fortunes; do
  # Non-2xx answers are counted too: past the shared path's queue bound the service answers
  # 503 at once, and those would otherwise read as throughput.
  wrk -t2 -c256 -d"${DURATION}s" "$BASE/$route" | awk -v r="/$route" '
    /Non-2xx/ { bad = $NF }
    /^Requests\/sec:/ { rate = $2 }
    END { printf "  %-22s layer, 256 connections %10s req/s, non-2xx %s\n", r, rate, bad + 0 }'
done
PEAK_RSS_MB=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")

# Where the 2 cores go under /db: CPU ticks of the server, of Postgres (postmaster and its
# backends), and of everything busy on the machine (the rest is wrk), over one more run.
echo "== CPU split during /db"
proc_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
  local pm total=0 pid
  pm=$(head -1 "$WORK/data/postmaster.pid")
  for pid in "$pm" $(pgrep -P "$pm"); do total=$((total + $(proc_ticks "$pid"))); done
  echo "$total"
}
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
S0=$(proc_ticks "$SERVER_PID"); P0=$(pg_ticks); B0=$(busy_ticks)
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$BASE/db" > /dev/null
S1=$(proc_ticks "$SERVER_PID"); P1=$(pg_ticks); B1=$(busy_ticks)
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }
CPU_SERVER=$(share $((S1 - S0)) $((B1 - B0)))
CPU_PG=$(share $((P1 - P0)) $((B1 - B0)))
CPU_REST=$(share $((B1 - B0 - (S1 - S0) - (P1 - P0))) $((B1 - B0)))
CPU_BUSY=$(awk -v b=$((B1 - B0)) -v d="$DURATION" -v n="$(nproc)" 'BEGIN { printf "%.0f%%", b / (d * 100 * n) * 100 }')
echo "  server $CPU_SERVER, postgres $CPU_PG, wrk and the rest $CPU_REST (machine busy $CPU_BUSY)"

# Medians over the rounds.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
stat() { awk -F'\t' -v l="$1" -v v="$2" -v c="$3" '$1 == l && $2 == v { print $c }' "$RESULTS" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

TABLE="| route | variant | median req/s | median p99 (ms) |
| --- | --- | ---: | ---: |
| pgbench: \`SELECT\` one \`world\` row | ceiling | $(stat "pgbench ceiling" pgbench 3) tx/s | |"
for route in /plaintext /json /db "/queries?queries=20" /fortunes "/updates?queries=20"; do
  variants="layer native"
  case $route in /db|/queries*|/fortunes) variants="layer native percore percore-mt deadpool" ;; esac
  for variant in $variants; do
    TABLE="$TABLE
| \`$route\` | $variant | $(stat "$route" $variant 3) | $(stat "$route" $variant 4) |"
  done
  if [ "$route" = /db ]; then
    TABLE="$TABLE
| \`/db\` | layer, Postgres over TLS (verify-full) | $(stat /db "layer, TLS" 3) | $(stat /db "layer, TLS" 4) |"
  fi
done
TABLE="$TABLE
| \`/queries?queries=20\` | sequential | $(stat "/queries?queries=20" sequential 3) | $(stat "/queries?queries=20" sequential 4) |"

verdict() { awk -v r="$1" -v t="$2" -v dir="$3" 'BEGIN { ok = (dir == "ge") ? (r + 0 >= t + 0) : (r + 0 < t + 0); print ok ? "met" : "missed" }'; }
vs() { ratio "$(stat "$1" "$2" 3)" "$(stat "$1" "$3" 3)"; }
TARGETS="| target | measured | verdict |
| --- | --- | --- |"
for route in /db "/queries?queries=20" /fortunes; do
  r=$(vs "$route" layer percore)
  TARGETS="$TARGETS
| layer ≥ 0.9× the per-core reference on \`$route\` | layer/percore = $r | $(verdict "$r" 0.9 ge) |"
done
r=$(vs /db layer deadpool)
TARGETS="$TARGETS
| layer ≥ 2× axum + deadpool on \`/db\` | layer/deadpool = $r | $(verdict "$r" 2 ge) |"
for route in /plaintext /db "/queries?queries=20" /fortunes; do
  r=$(vs "$route" layer native)
  TARGETS="$TARGETS
| layer within 5% of native on \`$route\` | layer/native = $r | $(verdict "$r" 0.95 ge) |"
done
R_CEIL=$(ratio "$(stat /db layer 3)" "$(stat "pgbench ceiling" pgbench 3)")
R_PIPE=$(ratio "$(stat "/queries?queries=20" layer 3)" "$(stat "/queries?queries=20" sequential 3)")
R_TLS=$(ratio "$(stat /db "layer, TLS" 3)" "$(stat /db layer 3)")
TARGETS="$TARGETS
| \`/db\` at least 50% of the pgbench ceiling | $R_CEIL of the ceiling | $(verdict "$R_CEIL" 0.5 ge) |
| \`/queries?queries=20\` at least 1.5× sequential | $R_PIPE× | $(verdict "$R_PIPE" 1.5 ge) |
| server RSS under 50 MB at 256 connections | peak $PEAK_RSS_MB MB ($PEAK_RSS_64_MB MB after the 64-connection rounds) | $(verdict "$PEAK_RSS_MB" 50 lt) |"
ERRORS=""
if [ -s "$WORK/errors.tsv" ]; then
  ERRORS="
Non-2xx answers during the timed runs (route, variant, count): $(awk -F'\t' '{ printf "%s %s %s; ", $1, $2, $3 }' "$WORK/errors.tsv")
"
fi
MT=""
for route in /db "/queries?queries=20" /fortunes; do
  MT="$MT \`$route\` $(vs "$route" percore-mt percore)×;"
done

SECTION="## TechEmpower database tests (issues 5 and 10)

\`bash bench/run.sh\` (DURATION=${DURATION}s ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS), $(date -u +%Y-%m-%d): $(machine).
wrk (\`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency\`), the servers and Postgres (fsync off) share
the same 2 cores — and the machine was shared with other engineers' builds and tests while this
ran, so only the interleaved comparisons mean anything. Variants: **layer** and **native** are
\`examples/techempower/\` (single statements on \`db.shared()\`, one pipelined connection per core;
pool of 32 for the rest); **percore** is \`examples/reference_percore.rs\` (one current-thread
runtime, \`SO_REUSEPORT\` listener and tokio-postgres connection per core, statements prepared at
connect); **percore-mt** is the same program on one multi-threaded runtime; **deadpool** is
\`examples/reference_deadpool.rs\` (plain axum + deadpool, pool of 32). All run interleaved, route
by route, each round; the ceiling is \`pgbench -n -M prepared -c $CONNECTIONS -j 2 -T $DURATION\`
running the same single-row \`SELECT\`. \`/db\` over TLS is a second layer server whose shared
connections and pool connect with \`sslmode=verify-full\` (rustls, ECDSA P-256 certificate) to the
same Postgres, run right after the plain-TCP \`/db\` in each round: TLS/plain = $R_TLS. Medians over
the rounds.

$TABLE

$TARGETS
$ERRORS
Multi-threaded runtime against one current-thread runtime per core (the reference program,
percore-mt/percore):$MT

Where the time goes under \`/db\` (one more ${DURATION}-s run of the layer, CPU ticks from \`/proc\`):
the machine is $CPU_BUSY busy; of that, the server takes $CPU_SERVER, Postgres $CPU_PG, and wrk with
the rest $CPU_REST."
write_section techempower "$SECTION"

TLS_SECTION="## \`/db\` with Postgres over TLS (issue 13)

\`DURATION=$DURATION ROUNDS=$ROUNDS bash bench/run.sh\`, $(date -u +%Y-%m-%d): $(machine).
Two servers (\`examples/techempower/\`: \`/db\` on the shared, pipelined connections) on the same
Postgres, one connecting over plain TCP, the other with \`sslmode=verify-full\` (rustls, ECDSA P-256
certificate, TLS 1.3); \`/db\` on each, interleaved in every round (\`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency\`).
Medians over the rounds.

| \`/db\` | median req/s | median p99 (ms) |
| --- | ---: | ---: |
| layer, plain TCP | $(stat /db layer 3) | $(stat /db layer 4) |
| native, plain TCP | $(stat /db native 3) | $(stat /db native 4) |
| layer, TLS (verify-full) | $(stat /db "layer, TLS" 3) | $(stat /db "layer, TLS" 4) |

TLS/plain (layer) = $R_TLS."
write_section techempower-tls "$TLS_SECTION"
echo "== wrote bench/RESULTS.md"
