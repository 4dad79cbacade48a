#!/usr/bin/env bash
# TechEmpower database tests through the contract's layer and as native axum twins, against
# two reference programs run in the same interleaved rounds — the per-core pipelined technique
# (examples/reference_percore.rs) and plain axum + deadpool (examples/reference_deadpool.rs) —
# the layer's example on one multi-threaded runtime (RUNTIME=multi), and the database's own
# ceiling (pgbench); and `/db` through a second server whose connections use TLS
# (sslmode=verify-full), to price it. Every wrk run is made twice, `wrk -t1` and `wrk -t2`
# (nothing is pinned): a client on one thread leaves a core to the servers, one on two
# threads contends with them. The raw output goes to bench/results/<time>-run.txt; the
# tables, the plot (bench/techempower.svg, by bench/plot.sh) and the README's table are made
# from it. Loopback only.
#
#   bash bench/run.sh                        # 3 rounds of 5 s per route, variant and wrk -t (~20 minutes)
#   DURATION=3 ROUNDS=1 bash bench/run.sh    # a quick smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1 2}
RAW_COMMAND="DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS THREADS='$THREADS' bash bench/run.sh"

source bench/lib.sh
need wrk wrk
need pgbench postgresql-client
need openssl openssl
need gnuplot gnuplot-nox   # bench/plot.sh, at the end
# fsync off: this measures the service and its driver, not the disk. 400 connections: the
# servers' pools once full (about 200 backends with layer-poolprocess's and layer-poolpercore's) plus pgbench's 64
# pass the default 200, and pgbench then failed at the start of the second round.
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB max_connections=400
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
raw_results run
# Each server in plain text unless its ENV says otherwise (start_example in bench/lib.sh): ssl
# is on in this cluster (for layer-tls), and libpq's default sslmode=prefer would take it.
declare -A URL_OF PID_OF
start_example layer techempower
SERVER_PID=${PID_OF[layer]}
BASE=${URL_OF[layer]}
start_example percore reference_percore
start_example deadpool reference_deadpool
start_example layer-multi techempower RUNTIME=multi
start_example layer-poolprocess techempower POOL_LAYOUT=process
start_example layer-poolpercore techempower POOL_LAYOUT=percore
# The layer's server again, its shared connections and pool connecting over TLS.
start_example layer-tls techempower DATABASE_URL="$PG_TLS_URL"
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
for path in sequential shared pooled; do
  [ "$(curl -s "$BASE/$path/queries?queries=20" | grep -o '"id"' | wc -l)" = 20 ] || { echo "FAIL $path" >&2; exit 1; }
done
for ref in percore deadpool layer-multi; do
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

RESULTS=$WORK/results.tsv
: > "$RESULTS"
ROUND=0
# run_wrk LABEL VARIANT URL THREADS [CONNECTIONS]: one wrk run, its output kept whole in $RAW
# after a line naming it (bench/plot.sh reads those lines), its figures in $RESULTS.
run_wrk() {
  local conns=${5:-$CONNECTIONS} out rps p99 bad log
  out=$(wrk -t"$4" -c"$conns" -d"${DURATION}s" --latency "$3")
  { printf '=== wrk route=%s variant=%s threads=%s connections=%s round=%s url=%s\n' "$1" "$2" "$4" "$conns" "$ROUND" "$3"; echo "$out"; } >> "$RAW"
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  if [ -n "$bad" ]; then
    # Recorded and reported, not fatal: one stray error must not lose a long run.
    echo "  WARNING $3: $bad non-2xx answers; server log tail:" >&2
    log=$WORK/$2.log; [ -f "$log" ] || log=$WORK/layer.log
    tail -n 5 "$log" >&2 || true
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$4" "$conns" "$bad" >> "$WORK/errors.tsv"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$4" "$conns" "$rps" "$p99" "${bad:-0}" "$ROUND" >> "$RESULTS"
  printf '  %-22s %-14s -t%s -c%-4s %10s req/s  p99 %8s ms%s\n' "$1" "$2" "$4" "$conns" "$rps" "$p99" "${bad:+  non-2xx $bad}"
}
run_pgbench() {
  local script=$WORK/select.sql out tps
  printf '\\set id random(1, 10000)\nSELECT id, randomnumber FROM world WHERE id = :id;\n' > "$script"
  out=$(pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" -f "$script" "$PG_URL" 2>&1) \
    || { echo "FAIL pgbench: $out" >&2; exit 1; }
  { echo "=== pgbench round=$ROUND"; echo "$out"; } >> "$RAW"
  tps=$(echo "$out" | awk '/^tps = / { printf "%.0f", $3; exit }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "pgbench ceiling" pgbench 0 "$CONNECTIONS" "$tps" "" 0 "$ROUND" >> "$RESULTS"
  printf '  %-22s %-14s %10s tx/s\n' "pgbench ceiling" pgbench "$tps"
}

echo "== warm-up"
for path in /db /native/db /queries?queries=20 /fortunes /native/fortunes; do
  wrk -t2 -c"$CONNECTIONS" -d2s "$BASE$path" >/dev/null
done
for ref in percore deadpool layer-multi layer-tls; do
  wrk -t2 -c"$CONNECTIONS" -d2s "${URL_OF[$ref]}/db" >/dev/null
done
for ref in layer-poolprocess layer-poolpercore; do
  wrk -t2 -c"$CONNECTIONS" -d2s "${URL_OF[$ref]}/queries?queries=20" >/dev/null
done

# The variants each route is measured on (every one under each wrk -t in $THREADS).
variants_of() {
  case $1 in
    db) echo "layer native percore deadpool layer-multi layer-tls" ;;
    "queries?queries=20") echo "layer native shared pooled percore deadpool layer-multi sequential" ;;
    fortunes) echo "layer native percore deadpool layer-multi" ;;
    *) echo "layer native" ;;
  esac
}
url_of() { # url_of VARIANT ROUTE
  case $1 in
    layer) echo "$BASE/$2" ;;
    native) echo "$BASE/native/$2" ;;
    sequential|shared|pooled) echo "$BASE/$1/$2" ;;
    *) echo "${URL_OF[$1]}/$2" ;;
  esac
}
ROUTES=(plaintext json db "queries?queries=20" fortunes "updates?queries=20")
for round in $(seq "$ROUNDS"); do
  ROUND=$round
  echo "== round $round of $ROUNDS"
  run_pgbench
  for route in "${ROUTES[@]}"; do
    for threads in $THREADS; do
      # Each round starts the variants' order one further on (bench/lib.sh's rotate).
      for variant in $(rotate $((round - 1)) $(variants_of "$route")); do
        run_wrk "/$route" "$variant" "$(url_of "$variant" "$route")" "$threads"
      done
    done
  done
  # 256 clients: the pipelined path's bounds against the pool and the per-core program.
  # Non-2xx answers are counted: past the shared path's queue bound the service answers 503
  # at once, and those must not read as throughput.
  for route in db "queries?queries=20" fortunes; do
    for threads in $THREADS; do
      variants="layer percore deadpool"
      [ "$route" = db ] || [ "$route" = fortunes ] || variants="layer layer-poolprocess layer-poolpercore shared pooled percore deadpool"
      for variant in $(rotate $((round - 1)) $variants); do
        run_wrk "/$route" "$variant" "$(url_of "$variant" "$route")" "$threads" 256
      done
    done
  done
done
PEAK_RSS_MB=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")
echo "peak RSS of the layer's server: $PEAK_RSS_MB MB" | tee -a "$RAW"

# Where the 2 cores go under /db: CPU ticks of the server, of Postgres (postmaster and its
# backends), and of everything busy on the machine (the rest is wrk), over one more run.
echo "== CPU split during /db (wrk -t2)"
pg_ticks() {
  local pm
  pm=$(head -1 "$WORK/data/postmaster.pid")
  cpu_ticks "$pm" $(pgrep -P "$pm")
}
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
S0=$(cpu_ticks "$SERVER_PID"); P0=$(pg_ticks); B0=$(busy_ticks); T0=$(date +%s.%N)
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$BASE/db" > /dev/null
S1=$(cpu_ticks "$SERVER_PID"); P1=$(pg_ticks); B1=$(busy_ticks); T1=$(date +%s.%N)
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }
CPU_SERVER=$(share $((S1 - S0)) $((B1 - B0)))
CPU_PG=$(share $((P1 - P0)) $((B1 - B0)))
CPU_REST=$(share $((B1 - B0 - (S1 - S0) - (P1 - P0))) $((B1 - B0)))
CPU_BUSY=$(awk -v b=$((B1 - B0)) -v d="$(awk -v a="$T0" -v b="$T1" 'BEGIN { print b - a }')" -v n="$(nproc)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f%%", b / (d * hz * n) * 100 }')
echo "cpu split /db: server $CPU_SERVER, postgres $CPU_PG, rest $CPU_REST, machine busy $CPU_BUSY" | tee -a "$RAW"
raw_end

# Medians over the rounds.
# stat ROUTE VARIANT THREADS COLUMN [CONNECTIONS]: 5 = req/s, 6 = p99 ms, 7 = non-2xx
stat() { awk -F'\t' -v l="$1" -v v="$2" -v t="$3" -v c="${5:-$CONNECTIONS}" -v col="$4" '$1 == l && $2 == v && $3 == t && $4 == c { print $col }' "$RESULTS" | median; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf "%\047.0f", v }'; }
verdict() { awk -v r="$1" -v t="$2" -v dir="$3" 'BEGIN { if (r == "n/a") { print "n/a"; exit } ok = (dir == "ge") ? (r + 0 >= t + 0) : (r + 0 <= t + 0); print ok ? "met" : "missed" }'; }
vs() { ratio "$(stat "$1" "$2" "$4" 5)" "$(stat "$1" "$3" "$4" 5)"; } # vs ROUTE A B THREADS
# spread ROUTE A B THREADS [CONNECTIONS] [COLUMN]: the range of A / B over the rounds, each
# round's A against the same round's B (nothing with one round): how far a median can swing.
spread() {
  awk -F'\t' -v l="$1" -v a="$2" -v b="$3" -v t="$4" -v c="${5:-$CONNECTIONS}" -v col="${6:-5}" '
    $1 == l && $3 == t && $4 == c && $2 == a { A[$8] = $col }
    $1 == l && $3 == t && $4 == c && $2 == b { B[$8] = $col }
    END {
      n = 0
      for (r in A) if ((r in B) && B[r] > 0) {
        x = A[r] / B[r]
        if (n == 0 || x < lo) lo = x
        if (n == 0 || x > hi) hi = x
        n++
      }
      if (n > 1) printf " (rounds %.2f–%.2f)", lo, hi
    }' "$RESULTS"
}

HEAD="| route | variant |"; RULE="| --- | --- |"
for t in $THREADS; do HEAD="$HEAD req/s, \`-t$t\` | p99 ms, \`-t$t\` |"; RULE="$RULE ---: | ---: |"; done
TABLE="$HEAD
$RULE
| pgbench: \`SELECT\` one \`world\` row | ceiling (tx/s) |$(for t in $THREADS; do printf ' %s | |' "$(fmt "$(stat "pgbench ceiling" pgbench 0 5)")"; done)"
for route in "${ROUTES[@]}"; do
  for variant in $(variants_of "$route"); do
    TABLE="$TABLE
| \`/$route\` | $variant |$(for t in $THREADS; do printf ' %s | %s |' "$(fmt "$(stat "/$route" "$variant" "$t" 5)")" "$(stat "/$route" "$variant" "$t" 6)"; done)"
  done
done
for route in db "queries?queries=20" fortunes; do
  variants="layer percore deadpool"
  [ "$route" = db ] || [ "$route" = fortunes ] || variants="layer layer-poolprocess layer-poolpercore shared pooled percore deadpool"
  for variant in $variants; do
    TABLE="$TABLE
| \`/$route\`, 256 clients | $variant |$(for t in $THREADS; do
      bad=$(stat "/$route" "$variant" "$t" 7 256)
      bad=$(awk -v b="$bad" 'BEGIN { if (b != "n/a" && b + 0 > 0) printf " (%.0f non-2xx)", b }')
      printf ' %s%s | %s |' "$(fmt "$(stat "/$route" "$variant" "$t" 5 256)")" "$bad" "$(stat "/$route" "$variant" "$t" 6 256)"
    done)"
  done
done

TARGETS="| target | $(for t in $THREADS; do printf '`wrk -t%s` | ' "$t"; done)
| --- |$(for t in $THREADS; do printf ' --- |'; done)"
row() { # row TEXT ROUTE A B THRESHOLD [le]; THRESHOLD 0: a ratio to read, no target
  local line="| $1 |" r t
  for t in $THREADS; do
    r=$(vs "$2" "$3" "$4" "$t")
    if [ "$5" = 0 ]; then line="$line $r |"; else line="$line $r$(spread "$2" "$3" "$4" "$t"): $(verdict "$r" "$5" "${6:-ge}") |"; fi
  done
  TARGETS="$TARGETS
$line"
}
row "layer / per-core program, \`/db\` (≥ 0.9)" /db layer percore 0.9
row "layer / per-core program, \`/fortunes\` (≥ 0.9)" /fortunes layer percore 0.9
row "layer / per-core program, \`/queries?queries=20\` (≥ 1.0)" "/queries?queries=20" layer percore 1.0
row "layer / axum + deadpool, \`/db\` (≥ 2)" /db layer deadpool 2
for route in /plaintext /db /fortunes; do row "layer / native, \`$route\` (≥ 0.95)" "$route" layer native 0.95; done
row "layer, one multi-threaded runtime / per-core program, \`/db\`" /db layer-multi percore 0
row "layer, one multi-threaded runtime / layer, \`/db\`" /db layer-multi layer 0
row "layer, one multi-threaded runtime / layer, \`/fortunes\`" /fortunes layer-multi layer 0
row "layer, one multi-threaded runtime / layer, \`/queries?queries=20\`" "/queries?queries=20" layer-multi layer 0
row "\`/queries?queries=20\` pipelined / sequential" "/queries?queries=20" layer sequential 1.5
row "\`/db\` over TLS / plain" /db layer-tls layer 0
p99row() { # p99row ROUTE: layer p99 against the per-core program's at 256 clients
  local line="| p99 at 256 clients, layer / per-core program, \`$1\` (≤ 1) |" t r
  for t in $THREADS; do
    r=$(ratio "$(stat "$1" layer "$t" 6 256)" "$(stat "$1" percore "$t" 6 256)")
    line="$line $r$(spread "$1" layer percore "$t" 256 6): $(verdict "$r" 1 le) |"
  done
  TARGETS="$TARGETS
$line"
}
p99row /db; p99row "/queries?queries=20"; p99row /fortunes
q256() {
  local line="| \`/queries?queries=20\`, 256 clients: layer / axum + deadpool (≥ 1) |" t r
  for t in $THREADS; do
    r=$(ratio "$(stat "/queries?queries=20" layer "$t" 5 256)" "$(stat "/queries?queries=20" deadpool "$t" 5 256)")
    line="$line $r$(spread "/queries?queries=20" layer deadpool "$t" 256): $(verdict "$r" 1 ge) |"
  done
  TARGETS="$TARGETS
$line"
}
q256
row "\`/queries?queries=20\`, 64 clients: layer / axum + deadpool (≥ 1)" "/queries?queries=20" layer deadpool 1
row "\`/queries?queries=20\`, 64 clients: pooled / shared" "/queries?queries=20" pooled shared 0
TARGETS="$TARGETS
| layer's server, peak RSS (< 50 MB, after the 256-client runs; one figure for the run) | $PEAK_RSS_MB MB: $(verdict "$PEAK_RSS_MB" 50 le) |$(for t in $THREADS; do :; done | sed 1d)"
ERRORS=""
if [ -s "$WORK/errors.tsv" ]; then
  ERRORS="
Non-2xx answers during the timed runs (route, variant, wrk -t, clients, count): $(awk -F'\t' '{ printf "%s %s -t%s -c%s: %s; ", $1, $2, $3, $4, $5 }' "$WORK/errors.tsv")
"
fi

echo "== plot"
bash bench/plot.sh "$RAW" bench/techempower.svg

SECTION="## TechEmpower database tests (issues 5, 10 and 21)

\`$RAW_COMMAND\`, $(date -u +%Y-%m-%d): $(machine); $(run_facts).
Each figure is the median over the rounds of \`wrk -tT -c$CONNECTIONS -d${DURATION}s --latency\`,
for T in $THREADS (nothing pinned), with wrk, the servers and Postgres (fsync off) on the same
machine; every variant runs in every round, route by route, so the ratios compare runs made
minutes apart, and each round starts the variants' order one further on, so that no variant
always runs first (the first after another route's runs measured slower). Variants: **layer** and **native** are \`examples/techempower/\` (through the
contract and as native axum handlers over the same data functions, on one current-thread runtime
per core, each with a \`SO_REUSEPORT\` listener and its own \`Db\`: single statements on
\`db.shared()\`, one pipelined connection per core; the pool of 32 divided between cores for the rest,
a core taking a connection from another's share when its own has none idle or has kept it
waiting 10 ms, \`POOL_LAYOUT=steal\`);
**layer-poolprocess** is the same with one pool of 32 (one queue) that every core takes its
connections from (\`POOL_LAYOUT=process\`, 256 clients on \`/queries\` only);
**layer-poolpercore** is the same with each core on its own share only
(\`POOL_LAYOUT=percore\`, 256 clients on \`/queries\` only);
**layer-multi** is the same example with \`RUNTIME=multi\` (one multi-threaded runtime, one
listener, one \`Db\`: a shared connection per core, pool of 32); every server but layer-tls
talks plain text to Postgres (\`sslmode=disable\`), as the reference programs do; **percore** is \`examples/reference_percore.rs\`
(one current-thread runtime, \`SO_REUSEPORT\` listener and tokio-postgres connection per core,
statements prepared at connect); **deadpool** is \`examples/reference_deadpool.rs\` (plain axum +
deadpool, pool of 32); **layer-tls** is a second layer server whose connections use
\`sslmode=verify-full\` (rustls); **sequential** awaits the 20 statements one by one on a pooled
connection; for \`/queries\`, **shared** pipelines them always on the shared connections,
**pooled** always on one pooled connection, and **layer** chooses (\`FANOUT_TO_POOL\`, default
8: at least 8 statements go to the pool). The ceiling is \`pgbench -n -M prepared -c $CONNECTIONS -j 2 -T $DURATION\` on the same
single-row \`SELECT\`.

![req/s and p99 per route and variant, wrk -t1 and -t2](techempower.svg)

$TABLE

A target's ratio is the ratio of the two medians; in brackets, the lowest and highest ratio
of the two measured in the same round, where a run has more than one: a verdict whose range
straddles its threshold is within this machine's round-to-round swing.

$TARGETS
$ERRORS
Where the time goes under \`/db\` (one more ${DURATION}-s \`wrk -t2\` run of the layer, CPU ticks
from \`/proc\`): the machine is $CPU_BUSY busy; of that, the server takes $CPU_SERVER, Postgres
$CPU_PG, and wrk with the rest $CPU_REST."
write_section techempower "$SECTION"

README_TABLE="| route | wrk | through the layer (a runtime per core) | native axum (same server) | per-core program | axum + deadpool (pool 32) |
| --- | --- | ---: | ---: | ---: | ---: |"
for route in plaintext db "queries?queries=20" fortunes; do
  for t in $THREADS; do
    README_TABLE="$README_TABLE
| \`/$route\` | \`-t$t\` | $(fmt "$(stat "/$route" layer "$t" 5)") | $(fmt "$(stat "/$route" native "$t" 5)") | $(fmt "$(stat "/$route" percore "$t" 5)") | $(fmt "$(stat "/$route" deadpool "$t" 5)") |"
  done
done
README_SECTION="Written by \`bash bench/run.sh\` ($RAW_COMMAND; $(run_facts)): req/s,
medians of interleaved \`wrk -c$CONNECTIONS\` rounds with the load generator, the servers and
Postgres on the same $(nproc) cores, so only the ratios within one run carry over to other
machines. \`bench/RESULTS.md\` has p99, the targets and the rest of the variants.

![req/s and p99 per route and variant, wrk -t1 and -t2](bench/techempower.svg)

$README_TABLE"
write_section perf "$README_SECTION" README.md
echo "== wrote bench/RESULTS.md, README.md and bench/techempower.svg"
