#!/usr/bin/env bash
# Issue 10, item 4: does one current-thread runtime per core (SO_REUSEPORT listeners, one Db
# each) beat the multi-threaded runtime for the service? examples/techempower/ run both
# ways, beside the per-core reference program, interleaved route by route. Writes its section
# of bench/RESULTS.md. Loopback only.
#
#   bash bench/runtime.sh                    # 3 rounds of 5 s per route and variant
#   DURATION=3 ROUNDS=1 bash bench/runtime.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
source bench/lib.sh
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB
psql -q -v ON_ERROR_STOP=1 "$PG_URL" -f bench/techempower.sql 2>/dev/null
cargo build --release --example techempower --example reference_percore 2>&1 | tail -1
declare -A URL_OF
start_server() { # start_server LABEL BINARY ENV...
  local label=$1 binary=$2 port; shift 2
  port=$(free_port)
  env DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$port" "$@" "./target/release/examples/$binary" > "$WORK/$label.log" 2>&1 &
  BENCH_PIDS+=("$!")
  URL_OF[$label]="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "${URL_OF[$label]}/plaintext" >/dev/null && break; sleep 0.1; done
}
start_server multi techempower
start_server percore techempower RUNTIME=percore
start_server reference reference_percore
RESULTS=$WORK/results.tsv; : > "$RESULTS"
for v in multi percore reference; do wrk -t2 -c"$CONNECTIONS" -d2s "${URL_OF[$v]}/db" >/dev/null; done
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  for route in db "queries?queries=20" fortunes; do
    for v in multi percore reference; do
      rps=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "${URL_OF[$v]}/$route" | awk '/^Requests\/sec:/ { print $2 }')
      printf '/%s\t%s\t%s\n' "$route" "$v" "$rps" >> "$RESULTS"
      printf '  %-22s %-10s %10s req/s\n' "/$route" "$v" "$rps"
    done
  done
done
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
stat() { awk -F'\t' -v l="$1" -v v="$2" '$1 == l && $2 == v { print $3 }' "$RESULTS" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
TABLE="| route | layer, multi-threaded | layer, per-core | per-core reference | per-core / multi | layer per-core / reference |
| --- | ---: | ---: | ---: | ---: | ---: |"
for route in /db "/queries?queries=20" /fortunes; do
  m=$(stat "$route" multi); p=$(stat "$route" percore); r=$(stat "$route" reference)
  TABLE="$TABLE
| \`$route\` | $m | $p | $r | $(ratio "$p" "$m") | $(ratio "$p" "$r") |"
done
SECTION="## One runtime per core or one multi-threaded runtime, for the service (issue 10, item 4)

\`bash bench/runtime.sh\` (DURATION=${DURATION}s ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS), $(date -u +%Y-%m-%d): $(machine).
\`examples/techempower/\` through the layer on one multi-threaded runtime (default) and with
\`RUNTIME=percore\` (one current-thread runtime per core, each with a \`SO_REUSEPORT\` listener and
its own \`Db\`: one shared connection, the pool divided), beside \`examples/reference_percore.rs\`;
interleaved route by route, medians of the rounds, req/s. The machine was shared with other
engineers' builds and tests while this ran.

$TABLE"
write_section runtime "$SECTION"
echo "== wrote bench/RESULTS.md"
