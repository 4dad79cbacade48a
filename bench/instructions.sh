#!/usr/bin/env bash
# Instructions per request (userland), counted by valgrind's callgrind while wrk loads one
# route: deterministic to a fraction of a percent where CPU time per request swings by ten on
# a shared machine, so small differences (the layer against its native twin, old binary
# against new) show. Each server runs under callgrind with instrumentation off until its
# warm-up is done; the count covers only the measured wrk run. The kernel's share (the
# sockets) is not counted: `strace -c -f` shows it the same for every variant. Raw output,
# with the top functions by self cost: bench/results/<time>-instructions.txt. Loopback only.
#
#   bash bench/instructions.sh                               # the example and reference_percore
#   SERVERS="old=/tmp/old/techempower new=./target/release/examples/techempower" \
#     ROUTES="/fortunes /native/fortunes" bash bench/instructions.sh
#   SERVERS="old=/tmp/pgbridge-old new=./target/release/pgbridge" ROUTES=/healthz \
#     bash bench/instructions.sh                             # the service itself, two builds
#   GLIBC_TUNABLES=glibc.malloc.tcache_count=100 bash bench/instructions.sh   # glibc's per-thread
#     cache 100 chunks per size instead of 7 (recorded in the raw file's command line)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-16}
ROUTES=${ROUTES:-/plaintext /native/plaintext /db /native/db /fortunes /native/fortunes}
SERVERS=${SERVERS:-layer=./target/release/examples/techempower ref=./target/release/examples/reference_percore}
RAW_COMMAND="${GLIBC_TUNABLES:+GLIBC_TUNABLES=$GLIBC_TUNABLES }DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUTES='$ROUTES' SERVERS='$SERVERS' bash bench/instructions.sh"
source bench/lib.sh
need valgrind valgrind
need wrk wrk
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB
psql -q -v ON_ERROR_STOP=1 "$PG_URL" -f bench/techempower.sql
if [[ " $SERVERS " == *"=./target/release/examples/"* ]]; then
  cargo build --release --example techempower --example reference_percore 2>&1 | tail -1
fi
raw_results instructions
for spec in $SERVERS; do
  name=${spec%%=*}; bin=${spec#*=}
  for route in $ROUTES; do
    # The reference programs have no native twin: /native/X is their /X.
    case $bin in *reference_*) route=${route#/native} ;; esac
    out_file=$WORK/$name-$(echo "$route" | tr '/?=' '___').cg
    port=$(free_port)
    env DATABASE_URL="$PG_URL?sslmode=disable" BIND_ADDR="127.0.0.1:$port" \
      valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out_file" "$bin" \
      > "$WORK/$name.log" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port$route" >/dev/null && break; sleep 0.2; done
    wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port$route" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port$route")
    callgrind_control -i off "$pid" >/dev/null 2>&1
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    total=$(callgrind_annotate "$out_file" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    per=$(awk -v i="$total" -v n="$requests" 'BEGIN { printf "%.0f", i / n }')
    {
      echo "=== instructions server=$name route=$route requests=$requests total=$total per_request=$per"
      callgrind_annotate --threshold=90 "$out_file" 2>/dev/null \
        | awk '/^-+$/ { n++ } n >= 4 && /\(/ && shown++ < 25'
    } >> "$RAW"
    printf '  %-8s %-20s %8s instructions per request (%s requests)\n' "$name" "$route" "$per" "$requests"
  done
done
raw_end
echo "== wrote $RAW"
