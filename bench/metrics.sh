#!/usr/bin/env bash
# /metrics before and after prometheus-client: two builds of the service against one
# private Postgres on loopback, scraped by wrk in interleaved rounds (A B A B ...), so
# both see the same machine load.
#
#   bench/metrics.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS] [PATH]
#
# PATH (default /metrics): /healthz measures what every request pays (counting and timing).
#
# Build OLD_BINARY from the commit before (e.g. `git archive 7bc98bd | tar -x -C /tmp/old`,
# then `cargo build --release --bin pgbridge` there) and NEW_BINARY from this tree. The raw
# output goes to bench/results/<time>-metrics.txt (with the commit, cores and load average).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need wrk wrk
old=$1 new=$2 rounds=${3:-3} secs=${4:-5} path=${5:-/metrics}
start_postgres
RAW_COMMAND="bash bench/metrics.sh $old $new $rounds $secs $path"
raw_results metrics
exec > >(tee -a "$RAW")

serve() { # serve LABEL BINARY -> prints the port
  local port; port=$(free_port)
  env DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$port" RUST_LOG=warn "$2" > "$WORK/$1.log" 2>&1 &
  BENCH_PIDS+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && { echo "$port"; return; }
    sleep 0.2
  done
  echo "$1 did not start: $(cat "$WORK/$1.log")" >&2; exit 1
}
old_port=$(serve old "$old")
new_port=$(serve new "$new")
echo "== $(machine)"
echo "== /metrics bytes: old $(curl -s "http://127.0.0.1:$old_port/metrics" | wc -c), new $(curl -s "http://127.0.0.1:$new_port/metrics" | wc -c)"
for round in $(seq "$rounds"); do
  for side in old new; do
    port=$([ "$side" = old ] && echo "$old_port" || echo "$new_port")
    rps=$(wrk -t1 -c8 -d"${secs}s" --latency "http://127.0.0.1:$port$path" \
      | awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r " req/s, p99 " p}')
    echo "round $round $side $path: $rps"
  done
done
raw_end
