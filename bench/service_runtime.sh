#!/usr/bin/env bash
# The service itself (the pgbridge binary) on one multi-threaded runtime (RUNTIME=multi, the
# default: tokio's worker per core), on that runtime with one worker more than the cores
# (multi-plus1: TOKIO_WORKER_THREADS=cores+1), and on one current-thread runtime per core (RUNTIME=percore), interleaved route by route, each under wrk -t1 and -t2
# (nothing pinned): GET /healthz (no database) and
# GET /notes/{id} (a bearer token checked, the note read under its account's scope), with the
# server's CPU per request (utime+stime from /proc/PID/stat around each run ÷ requests) and
# each serving thread's run time (/proc/PID/task/TID/schedstat), by which percore's runs are
# grouped: both cores serving, or one core serving nearly every client. Raw
# output: bench/results/<time>-service_runtime.txt; writes its section of bench/RESULTS.md.
# Loopback only.
#
#   bash bench/service_runtime.sh                   # 3 rounds of 5 s
#   DURATION=3 ROUNDS=1 bash bench/service_runtime.sh
#   BIN=target/release/pgbridge bash bench/service_runtime.sh   # a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1 2}
RAW_COMMAND="DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS THREADS='$THREADS' bash bench/service_runtime.sh"
[ -z "${BIN:-}" ] || RAW_COMMAND="BIN=$BIN $RAW_COMMAND"
source bench/lib.sh
need wrk wrk
start_postgres fsync=off synchronous_commit=off shared_buffers=128MB
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --bin pgbridge 2>&1 | tail -1
  BIN=./target/release/pgbridge
fi
raw_results service_runtime
declare -A URL_OF PID_OF
VARIANTS="multi multi-plus1 percore"
# settings_of VARIANT: its environment.
settings_of() {
  case $1 in
    multi) echo "RUNTIME=multi" ;;
    multi-plus1) echo "RUNTIME=multi TOKIO_WORKER_THREADS=$(($(nproc) + 1))" ;;
    percore) echo "RUNTIME=percore" ;;
  esac
}
for runtime in $VARIANTS; do
  port=$(free_port)
  env DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$port" $(settings_of "$runtime") RUST_LOG=warn \
    "$BIN" > "$WORK/$runtime.log" 2>&1 &
  BENCH_PIDS+=("$!")
  PID_OF[$runtime]=$!
  URL_OF[$runtime]="http://127.0.0.1:$port"
  ready=no
  for _ in $(seq 300); do curl -sf "${URL_OF[$runtime]}/readyz" >/dev/null && { ready=yes; break; }; sleep 0.1; done
  [ "$ready" = yes ] || { echo "pgbridge ($runtime) did not become ready; its log:" >&2; cat "$WORK/$runtime.log" >&2; exit 1; }
done
BASE=${URL_OF[multi]}
curl -sf -H 'Content-Type: application/json' -d '{"username":"bench","password":"bench password"}' "$BASE/accounts" >/dev/null
TOKEN=$(curl -sf -H 'Content-Type: application/json' -d '{"username":"bench","password":"bench password"}' "$BASE/sessions" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
NOTE=$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"title":"bench"}' "$BASE/notes" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
for runtime in $VARIANTS; do
  curl -sf -H "Authorization: Bearer $TOKEN" "${URL_OF[$runtime]}/notes/$NOTE" | grep -q '"title":"bench"' \
    || { echo "FAIL: GET /notes/$NOTE on $runtime" >&2; exit 1; }
done

# core_times PID: "tid name ran_ns waited_ns" for each of the process's request-serving threads
# (the per-core servers' pgbridge-core-N, the multi-threaded runtime's tokio-rt-worker).
core_times() { thread_times "$1" | awk '$2 ~ /^(pgbridge-core-|tokio-rt-worker$)/'; }
# core_split BEFORE AFTER: each serving thread's run time across the run ("name=ms ...") and,
# last, the busiest one's share of their total in percent. Connections stay on the core
# that accepted them (percore), so a share near 100 means one core served every client.
core_split() {
  awk 'NR == FNR { ran[$1] = $3; next }
       { d = ($3 - ran[$1]) / 1e6; if (d < 0) d = 0; total += d; if (d > top) top = d
         printf "%s=%d ", $2, d }
       END { printf "busiest=%d\n", (total > 0 ? 100 * top / total : 0) }' <(echo "$1") <(echo "$2")
}
HZ=$(getconf CLK_TCK)
RESULTS=$WORK/results.tsv; : > "$RESULTS"
ROUND=0
for runtime in $VARIANTS; do
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $TOKEN" "${URL_OF[$runtime]}/notes/$NOTE" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  ROUND=$round
  echo "== round $round of $ROUNDS"
  for route in /healthz "/notes/$NOTE"; do
    label=$route; [ "$route" = /healthz ] || label="/notes/{id}"
    for threads in $THREADS; do
      for runtime in $(rotate $((round - 1)) $VARIANTS); do
        before=$(cpu_ticks "${PID_OF[$runtime]}"); threads_before=$(core_times "${PID_OF[$runtime]}")
        out=$(wrk -t"$threads" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "${URL_OF[$runtime]}$route")
        after=$(cpu_ticks "${PID_OF[$runtime]}"); split=$(core_split "$threads_before" "$(core_times "${PID_OF[$runtime]}")")
        busiest=${split##*busiest=}
        requests=$(echo "$out" | awk '/ requests in / { print $1 }')
        cpu=$(awk -v d=$((after - before)) -v n="${requests:-0}" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / hz / n; else print "n/a" }')
        { printf '=== wrk route=%s variant=%s threads=%s connections=%s round=%s\n' "$label" "$runtime" "$threads" "$CONNECTIONS" "$round"; echo "$out"; echo "server CPU: $((after - before)) ticks of 1/$HZ s, $cpu us/request"; echo "serving threads, ms run: $split"; } >> "$RAW"
        rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
        p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
        bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$runtime" "$threads" "$rps" "$p99" "${bad:-0}" "$cpu" "$busiest" >> "$RESULTS"
        printf '  %-14s %-11s -t%s %10s req/s  p99 %8s ms  server CPU %6s us/request  busiest thread %3s%%%s\n' "$label" "$runtime" "$threads" "$rps" "$p99" "$cpu" "$busiest" "${bad:+  non-2xx $bad}"
      done
    done
  done
done
raw_end
stat() { awk -F'\t' -v l="$1" -v v="$2" -v t="$3" -v col="$4" '$1 == l && $2 == v && $3 == t { print $col }' "$RESULTS" | median; }
TABLE="| route | wrk | variant | req/s | × multi | server CPU µs/req | p99 ms | non-2xx |
| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
for label in /healthz "/notes/{id}"; do
  for t in $THREADS; do
    m=$(stat "$label" multi "$t" 4)
    for runtime in $VARIANTS; do
      r=$(stat "$label" "$runtime" "$t" 4)
      TABLE="$TABLE
| \`$label\` | \`-t$t\` | $runtime | $r | $(ratio "$r" "$m") | $(stat "$label" "$runtime" "$t" 7) | $(stat "$label" "$runtime" "$t" 5) | $(awk -F'\t' -v l="$label" -v t="$t" -v v="$runtime" '$1 == l && $3 == t && $2 == v { s += $6 } END { printf "%d", s }' "$RESULTS") |"
    done
  done
done
# percore's runs by how the clients split between its cores: the cores serve the connections
# they accepted, and which core accepts a connection is up to the scheduler (every core waits
# on the one socket), so a run's split is chance, and it matters (see the text below).
ONE_CORE=90
SPLIT="| route | wrk | percore runs with both cores serving: req/s (runs) | with one core serving ≥ $ONE_CORE %: req/s (runs) | multi, all runs: req/s |
| --- | --- | ---: | ---: | ---: |"
for label in /healthz "/notes/{id}"; do
  for t in $THREADS; do
    split_stat() { awk -F'\t' -v l="$label" -v t="$t" -v one="$ONE_CORE" -v want="$1" \
      '$1 == l && $2 == "percore" && $3 == t && (($8 + 0 >= one) == want) { print $4 }' "$RESULTS"; }
    both=$(split_stat 0); alone=$(split_stat 1)
    cell() { if [ -z "$1" ]; then echo "— (0)"; else echo "$(echo "$1" | median) ($(echo "$1" | wc -l))"; fi; }
    SPLIT="$SPLIT
| \`$label\` | \`-t$t\` | $(cell "$both") | $(cell "$alone") | $(stat "$label" multi "$t" 4) |"
  done
done
SECTION="## The service's threads: one multi-threaded runtime (a worker per core, or one more) or one runtime per core (issue 21)

\`$RAW_COMMAND\`, $(date -u +%Y-%m-%d): $(machine); $(run_facts).
Three \`pgbridge\` processes on one Postgres: **multi**, \`RUNTIME=multi\` (the default: one
multi-threaded runtime, tokio's worker per core); **multi-plus1**, the same with one worker more
than the $(nproc) cores (\`TOKIO_WORKER_THREADS=$(($(nproc) + 1))\`); **percore**,
\`RUNTIME=percore\` (src/server/percore.rs: a current-thread runtime per core, every core
accepting on the one socket, each with its own \`Db\`); interleaved route by route in each round (each
round starting the variants' order one further on), under
\`wrk -tT -c$CONNECTIONS -d${DURATION}s\` for T in $THREADS (nothing pinned); medians of the rounds.
\`/notes/{id}\` checks a bearer token and reads the note under its account's scope. Server CPU
per request: the process's utime+stime (\`/proc/PID/stat\`) across the run ÷ its requests.

$TABLE

**percore, run by run.** Each core serves the connections it accepted, and every core waits on
the one socket, so how wrk's $CONNECTIONS connections split between the cores is decided by which
core thread the scheduler runs first when they arrive: sometimes both cores take a share,
sometimes one core takes them all. The raw file gives each serving thread's run time in every
run (\`serving threads, ms run\`, from \`/proc/PID/task/TID/schedstat\`); here percore's runs
are grouped by it (one core serving: the busiest thread ran ≥ $ONE_CORE % of the serving threads'
time).

$SPLIT"
write_section service-runtime "$SECTION"
echo "== wrote bench/RESULTS.md"
