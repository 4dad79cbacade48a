#!/usr/bin/env bash
# Why a server with a runtime per core has a long tail at 256 clients: for each server, one
# wrk -c256 run per round and wrk -t, with the latency distribution and, per server thread
# (one per core), the connections it accepted, the responses it wrote (writev calls), and the time it ran
# and waited runnable for a CPU (/proc/<pid>/task/<tid>/schedstat). Accepts and responses are
# counted with `perf stat` on the accept4 (successful only) and writev syscalls; without perf
# those columns read "-". Servers (by default): the TechEmpower example with the pool divided
# between cores, each core on its own share (POOL_LAYOUT=percore) or borrowing from the others'
# (POOL_LAYOUT=steal, its default), and with one process-wide pool (POOL_LAYOUT=process), and
# the per-core reference program. Raw output:
# bench/results/<time>-percore_split.txt. Loopback only; writes no section.
#
# SERVERS lists the servers as LABEL:BINARY[:VAR=value,...] (a binary of target/release/examples,
# say an older build copied there), CONNECTIONS wrk's connections.
#
#   bash bench/percore_split.sh                          # /queries?queries=20, 3 rounds of 3 s
#   ROUTE=fortunes ROUNDS=1 bash bench/percore_split.sh
#   SERVERS='steal:techempower:POOL_LAYOUT=steal percore:techempower:POOL_LAYOUT=percore' bash bench/percore_split.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1 2}
ROUTE=${ROUTE:-queries?queries=20}
CONNECTIONS=${CONNECTIONS:-256}
SERVERS=${SERVERS:-pool-percore:techempower:POOL_LAYOUT=percore pool-steal:techempower:POOL_LAYOUT=steal pool-process:techempower:POOL_LAYOUT=process reference:reference_percore}
RAW_COMMAND="ROUTE='$ROUTE' DURATION=$DURATION ROUNDS=$ROUNDS THREADS='$THREADS' CONNECTIONS=$CONNECTIONS SERVERS='$SERVERS' bash bench/percore_split.sh"
source bench/lib.sh
need wrk wrk
need psql postgresql-client
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB max_connections=400
psql -q -v ON_ERROR_STOP=1 "$PG_URL" -f bench/techempower.sql 2>/dev/null
cargo build --release --example techempower --example reference_percore 2>&1 | tail -1
raw_results percore_split
PERF=$(command -v perf || true)
declare -A URL_OF PID_OF
start_server() { # start_server LABEL BINARY ENV...: started (bench/lib.sh) and warmed up
  start_example "$@"
  wrk -t2 -c64 -d1s "${URL_OF[$1]}/$ROUTE" >/dev/null
}
LABELS=()
for server in $SERVERS; do
  IFS=: read -r label binary vars <<< "$server"
  IFS=, read -r -a vars <<< "$vars"
  start_server "$label" "$binary" "${vars[@]}"
  LABELS+=("$label")
done

# per_thread PID: "tid run-ms runq-wait-ms" for each thread but the main one.
per_thread() { thread_times "$1" | awk '{ printf "%s %d %d\n", $1, $3 / 1e6, $4 / 1e6 }'; }
for round in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    for label in "${LABELS[@]}"; do
      pid=${PID_OF[$label]}
      before=$(per_thread "$pid")
      counts=$WORK/counts.txt
      : > "$counts"
      if [ -n "$PERF" ]; then
        "$PERF" stat -e syscalls:sys_exit_accept4 --filter 'ret >= 0' -e syscalls:sys_enter_writev \
          --per-thread -p "$pid" -o "$counts" -- sleep "$((DURATION + 1))" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.3
      fi
      out=$(wrk -t"$t" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${URL_OF[$label]}/$ROUTE")
      [ -z "$PERF" ] || wait "$perf_pid" || true
      after=$(per_thread "$pid")
      {
        printf '=== wrk route=/%s variant=%s threads=%s connections=%s round=%s\n' "$ROUTE" "$label" "$t" "$CONNECTIONS" "$round"
        echo "$out"
      } >> "$RAW"
      summary=$(echo "$out" | awk '$1 == "50%" || $1 == "90%" || $1 == "99%" { printf "%s %s  ", $1, $2 } /^Requests\/sec/ { printf "%.0f req/s", $2 }')
      printf '%-13s -t%s round %s: %s\n' "$label" "$t" "$round" "$summary" | tee -a "$RAW"
      join <(echo "$before" | sort) <(echo "$after" | sort) | while read -r tid r0 w0 r1 w1; do
        accepts=$(awk -v t="-$tid" 'index($1, t) && /accept4/ { print $2 }' "$counts")
        writes=$(awk -v t="-$tid" 'index($1, t) && /writev/ { print $2 }' "$counts")
        printf '    thread %s: %4s connections accepted, %6s writev calls (about one a response), ran %5d ms, waited for a CPU %5d ms\n' \
          "$tid" "${accepts:--}" "${writes:--}" $((r1 - r0)) $((w1 - w0))
      done | tee -a "$RAW"
    done
  done
done
raw_end
echo "== raw output: $RAW"
