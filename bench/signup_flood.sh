#!/usr/bin/env bash
# An anonymous sign-up flood (POST /accounts: each one an Argon2id hash of 19 MiB) against
# the release binary on its embedded PostgreSQL, loopback only: the process's resident memory
# before, at the end, and its peak, and the answers by status. Bounded: CONC threads × PER
# sign-ups each. The raw output goes to bench/results/<time>-signup_flood.txt; the section
# "Anonymous sign-up flood" of bench/RESULTS.md is made from it.
#
#   bash bench/signup_flood.sh                      # 64 × 4, then 400 × 2
#   BIN=/path/to/other/pgbridge bash bench/signup_flood.sh   # another build, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin pgbridge 2>&1 | tail -1
  BIN=target/release/pgbridge
fi
# machine() names the PostgreSQL the embedded default runs.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PORT=$(free_port)
dir=$(mktemp -d /tmp/pgbridge-flood.XXXXXX)
chmod 755 "$dir"
PID=
trap '[ -n "$PID" ] && kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$dir"' EXIT
RAW_COMMAND="${BIN:+BIN=$BIN }bash bench/signup_flood.sh"
raw_results signup_flood
mb() { awk -v k="$1" '$1 == k":" {printf "%d", $2/1024}' "/proc/$PID/status"; }
ROWS=()
run() {
  local conc=$1 per=$2
  # Every client comes from 127.0.0.1: without the per-address cap (256 connections) the flood
  # stands for one from many addresses.
  EMBEDDED_PG_DIR="$dir/pg-$conc" BIND_ADDR=127.0.0.1:$PORT RUST_LOG=warn MAX_CONNECTIONS_PER_ADDRESS=0 "$BIN" > "$dir/log" 2>&1 &
  PID=$!
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
  local idle; idle=$(mb VmRSS)
  local answers; answers=$(python3 bench/signup_flood.py "http://127.0.0.1:$PORT" "$conc" "$per")
  local after peak; after=$(mb VmRSS); peak=$(mb VmHWM)
  sleep 5
  local later; later=$(mb VmRSS)
  {
    echo "== $conc clients x $per sign-ups"
    echo "idle: VmRSS $idle MB"
    echo "$answers"
    echo "after: VmRSS $after MB, VmHWM $peak MB"
    echo "5 s later: VmRSS $later MB"
  } | tee -a "$RAW"
  kill -TERM $PID; wait $PID || true
  PID=
  # "64x4 sign-ups in 2.1s: {201: 256}" -> "2.1 s", "201 × 256"
  local secs codes
  secs=$(echo "$answers" | sed -n 's/.* in \([0-9.]*\)s:.*/\1/p')
  codes=$(echo "$answers" | sed -n 's/.*: {\(.*\)}/\1/p' | sed "s/'//g; s/: / × /g")
  ROWS+=("| $conc × $per | $secs s | $codes | $idle MB | $after MB | $peak MB | $later MB |")
}
echo "== $BIN" | tee -a "$RAW"
run 64 4
run 400 2
raw_end

SECTION=$(cat <<MD
## Anonymous sign-up flood: \`POST /accounts\` (Argon2id) from many clients at once

\`$RAW_COMMAND\`, $(date -u +%Y-%m-%d): $(machine); $(run_facts).
The release binary on its embedded PostgreSQL, loopback, with \`MAX_CONNECTIONS_PER_ADDRESS=0\`
(every client comes from 127.0.0.1; the flood stands for one from many addresses). Each sign-up
is one Argon2id hash (m = 19 MiB, t = 2, p = 1) and needs no account. The client is
\`bench/signup_flood.py\` (one thread per client). Answers: 201 signed up; 503 (with
\`Retry-After: 1\`) the hashing queue is full; 429 a per-address limit.

| clients × sign-ups each | time | answers (status × count) | RSS idle | RSS at the end | peak RSS (VmHWM) | RSS 5 s later |
| --- | ---: | --- | ---: | ---: | ---: | ---: |
$(printf '%s\n' "${ROWS[@]}")

Hashing is CPU-bound work on one thread per core, each reusing one 19 MiB block buffer, so at
most one working set per core stays resident, whatever the number of clients. (Before that design, hashing ran on tokio's blocking pool: a thread and a
19 MiB working set per concurrent hash, which glibc's per-thread arenas kept after the flood.)
MD
)
write_section signup_flood "$SECTION"
echo "== wrote bench/RESULTS.md"
