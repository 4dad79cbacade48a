#!/usr/bin/env bash
# Hostile clients, cases 3-6 (issue 17), against the release binary, loopback only, bounded
# in count and time. bench/hostile.sh runs it after its own cases; it also runs alone.
#   3. 128 clients looping correct-password log-ins to one self-made account: another
#      account's GET /notes p50/p99 meanwhile, against the same client with no log-ins
#      (same run); the looping account's session rows after.
#   4. 100 wrong guesses from 127.0.0.1, then the owner's log-in from 127.0.0.2; 200
#      concurrent guesses on one account: passwords checked (pgbridge_login_password_checks_total)
#      against LOGIN_MAX_FAILURES_PER_ACCOUNT.
#   5. Opening an event stream for an account with no events among 1,000,000 other events:
#      this build's policies against the old OR'ed ones (the same data, a copy of the
#      database with the old policies restored), interleaved; and EXPLAIN ANALYZE of the
#      stream's start query as the scoped role in both.
#   6. RUST_LOG=trace over sign-up, log-in, a note written and read, log-out: occurrences of
#      the password, its hash, the token, the token's hash and the note's text in the log;
#      and of the database password in start-up errors for malformed DATABASE_URLs.
# Raw output goes to bench/results/hostile-login-<time>.txt; the table to bench/RESULTS.md.
#
#   bash bench/hostile_login.sh            # about 3 minutes
#   EVENTS=200000 bash bench/hostile_login.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LOOPERS=${LOOPERS:-128}
LOOP_SECS=${LOOP_SECS:-20}
EVENTS=${EVENTS:-1000000}
ROUNDS=${ROUNDS:-5}

source bench/lib.sh
start_postgres
if [ -z "${BIN:-}" ]; then
  echo "== build (release)"
  cargo build --release --bin pgbridge 2>&1 | tail -1
  BIN=./target/release/pgbridge
fi
mkdir -p bench/results
RAW=bench/results/hostile-login-$(date -u +%Y%m%dT%H%M%SZ).txt
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# bench/hostile_login.sh $(date -u +%FT%TZ)"
  echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src migrations || echo ' (+ uncommitted changes)')"
  echo "# $(nproc) cores; load average $LOAD_START"
  echo "# $(machine)"
} > "$RAW"
raw() { echo "$*" | tee -a "$RAW"; }
PSQL=("$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres)
py() { python3 bench/hostile_login.py "$@"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$@"; }

# start_server DB [VAR=value...]: sets SERVER_PID, PORT, BASE
start_server() {
  local db=$1; shift
  PORT=$(free_port)
  env DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db" BIND_ADDR=127.0.0.1:$PORT \
    RUST_LOG=${SERVER_LOG:-warn} "$@" "$BIN" > "$WORK/server-$PORT.log" 2>&1 &
  SERVER_PID=$!
  BENCH_PIDS+=("$SERVER_PID")
  BASE="http://127.0.0.1:$PORT"
  for _ in $(seq 300); do curl -sf "$BASE/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/server-$PORT.log" >&2; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
# token USER PASSWORD: signs up (if needed) and logs in
token() {
  local credentials="{\"username\":\"$1\",\"password\":\"$2\"}"
  curl -s -o /dev/null -H 'Content-Type: application/json' -d "$credentials" "$BASE/accounts"
  curl -fsS -H 'Content-Type: application/json' -d "$credentials" "$BASE/sessions" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
metric() { curl -s -m 30 "$BASE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

"${PSQL[@]}" -c "CREATE DATABASE login_bench" postgres

echo "== 3. $LOOPERS looping log-ins"
start_server login_bench
NORMAL=$(token bench-normal bench-normal-password)
token looper looper-password > /dev/null
for _ in $(seq 20); do
  curl -s -o /dev/null -H "Authorization: Bearer $NORMAL" -H 'Content-Type: application/json' \
    -d '{"title":"a note"}' "$BASE/notes"
done
QUIET=$(py probe 127.0.0.1 "$PORT" 10 "$NORMAL")
raw "3. no log-ins:  $QUIET"
py loop 127.0.0.1 "$PORT" "$LOOPERS" "$LOOP_SECS" looper looper-password > "$WORK/loop.json" &
LOOP=$!; BENCH_PIDS+=("$LOOP")
sleep 3
LOUD=$(py probe 127.0.0.1 "$PORT" $(( LOOP_SECS - 5 )) "$NORMAL")
wait "$LOOP"
raw "3. during:      $LOUD"
raw "3. log-ins:     $(cat "$WORK/loop.json")"
SESSIONS=$("${PSQL[@]}" -d login_bench -c "SELECT count(*) FILTER (WHERE revoked_at IS NULL) || ' live / ' || count(*) || ' rows' FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE a.username = 'looper'")
raw "3. looper's sessions: $SESSIONS"
stop_server

echo "== 4. guesses"
start_server login_bench
token owner owner-password > /dev/null
token owner2 owner2-password > /dev/null
SEQ=$(py guesses 127.0.0.1 "$PORT" 100 owner 127.0.0.1 sequential)
raw "4. 100 guesses: $SEQ"
OWNER=$(py login 127.0.0.1 "$PORT" owner owner-password 127.0.0.2)
raw "4. the owner from 127.0.0.2: $OWNER"
GUESSER=$(py login 127.0.0.1 "$PORT" owner owner-password 127.0.0.1)
raw "4. the right password from 127.0.0.1: $GUESSER"
BEFORE=$(metric pgbridge_login_password_checks_total)
CONC=$(py guesses 127.0.0.1 "$PORT" 200 owner2 127.0.0.3 concurrent)
AFTER=$(metric pgbridge_login_password_checks_total)
CHECKED=$(( ${AFTER%.*} - ${BEFORE%.*} ))
raw "4. 200 concurrent guesses: $CONC; passwords checked: $CHECKED (limit 5)"
stop_server

echo "== 5. stream opens among $EVENTS other events"
start_server login_bench
EMPTY=$(token empty-account empty-password)
stop_server
"${PSQL[@]}" -d login_bench -c "INSERT INTO note_events (note_id, kind, version, owner_id)
  SELECT g, 'created', 1, 1000000 + g % 1000 FROM generate_series(1, $EVENTS) g" -c "VACUUM ANALYZE note_events"
"${PSQL[@]}" -c "CREATE DATABASE login_bench_old TEMPLATE login_bench" postgres
# The old policies: for every role, so OR'ed with the owner's for the scoped role.
"${PSQL[@]}" -d login_bench_old -c "
  DROP POLICY note_events_prune_read ON note_events;
  CREATE POLICY note_events_prune_read ON note_events FOR SELECT USING (pgbridge_pruning());"
EMPTY_ID=$("${PSQL[@]}" -d login_bench -c "SELECT id FROM accounts WHERE username = 'empty-account'")
LATEST="SELECT greatest(pruned_through, (SELECT coalesce(max(id), 0) FROM note_events)) FROM note_events_horizon"
explain_ms() {
  "${PSQL[@]}" -d "$1" -c "BEGIN" -c "SET LOCAL ROLE pgbridge_rls" \
    -c "SELECT set_config('pgbridge.account_id', '$EMPTY_ID', true)" \
    -c "EXPLAIN (ANALYZE, BUFFERS) $LATEST" -c "ROLLBACK" > "$WORK/explain-$1.txt"
  awk '/Execution Time/ {print $3}' "$WORK/explain-$1.txt"
}
start_server login_bench EVENTS_PRUNE_INTERVAL_SECS=3600
NEW_BASE=$BASE; NEW_PID=$SERVER_PID; NEW_PORT=$PORT
start_server login_bench_old EVENTS_PRUNE_INTERVAL_SECS=3600
OLD_BASE=$BASE; OLD_PID=$SERVER_PID; OLD_PORT=$PORT
NEW_MS=(); OLD_MS=(); NEW_EX=(); OLD_EX=()
for round in $(seq "$ROUNDS"); do
  n=$(py streams 127.0.0.1 "$NEW_PORT" "$EMPTY" 20); o=$(py streams 127.0.0.1 "$OLD_PORT" "$EMPTY" 20)
  NEW_MS+=("$(field "$n" median_ms)"); OLD_MS+=("$(field "$o" median_ms)")
  NEW_EX+=("$(explain_ms login_bench)"); OLD_EX+=("$(explain_ms login_bench_old)")
  raw "5. round $round: this build $n; old policies $o; EXPLAIN ANALYZE ms: ${NEW_EX[-1]} vs ${OLD_EX[-1]}"
done
echo "--- this build's plan" >> "$RAW"; cat "$WORK/explain-login_bench.txt" >> "$RAW"
echo "--- the old policies' plan" >> "$RAW"; cat "$WORK/explain-login_bench_old.txt" >> "$RAW"
SERVER_PID=$NEW_PID; stop_server; SERVER_PID=$OLD_PID; stop_server
NEW_MED=$(printf '%s\n' "${NEW_MS[@]}" | median); OLD_MED=$(printf '%s\n' "${OLD_MS[@]}" | median)
NEW_EXM=$(printf '%s\n' "${NEW_EX[@]}" | median); OLD_EXM=$(printf '%s\n' "${OLD_EX[@]}" | median)
RATIO=$(awk -v a="$OLD_MED" -v b="$NEW_MED" 'BEGIN {printf "%.0f", a / b}')
EX_RATIO=$(awk -v a="$OLD_EXM" -v b="$NEW_EXM" 'BEGIN {printf "%.0f", a / b}')

echo "== 6. secrets in logs"
"${PSQL[@]}" -c "CREATE DATABASE login_bench_trace" postgres
SERVER_LOG=trace start_server login_bench_trace
SECRET_PASSWORD=Trace-Secret-Password-42
TRACE_TOKEN=$(token tracer "$SECRET_PASSWORD")
ID=$(curl -fsS -H "Authorization: Bearer $TRACE_TOKEN" -H 'Content-Type: application/json' \
  -d '{"title":"Trace-Secret-Title","body":"Trace-Secret-Body"}' "$BASE/notes" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -fsS -o /dev/null -H "Authorization: Bearer $TRACE_TOKEN" "$BASE/notes/$ID"
curl -s -o /dev/null -H 'Content-Type: application/json' \
  -d '{"username":"tracer","password":"Trace-Secret-Wrong"}' "$BASE/sessions"
curl -fsS -o /dev/null -X DELETE -H "Authorization: Bearer $TRACE_TOKEN" "$BASE/sessions/current"
TRACE_LOG="$WORK/server-$PORT.log"
stop_server
HASH=$("${PSQL[@]}" -d login_bench_trace -c "SELECT password_hash FROM accounts WHERE username = 'tracer'")
TOKEN_HEX=$(printf '%s' "$TRACE_TOKEN" | sha256sum | cut -d' ' -f1)
LINES=$(wc -l < "$TRACE_LOG")
DRIVER=$(grep -c 'tokio_postgres' "$TRACE_LOG" || true)
count() { grep -cF -- "$1" "$TRACE_LOG" || true; }
SECRETS="password $(count "$SECRET_PASSWORD"), wrong password $(count Trace-Secret-Wrong), password hash $(count "$HASH"), hash digest $(count "${HASH##*\$}"), token $(count "$TRACE_TOKEN"), token hash $(count "$TOKEN_HEX"), note title $(count Trace-Secret-Title), note body $(count Trace-Secret-Body)"
raw "6. trace log: $LINES lines ($DRIVER from tokio_postgres); occurrences: $SECRETS"
STARTUP=0; STARTUP_N=0
for url in "mysql://postgres:S3cret-Start@db/app" "postgres://postgres:S3cret-Start@db:port/app" \
  "postgres:S3cret-Start@db/app" "host=db password='S3cret-Start' port=x" \
  "postgres://postgres:S3cret-Start@db1,db2:x/app" "postgres://u:S3cret-Start@db/app?sslmode=bogus"; do
  out=$(DATABASE_URL=$url BIND_ADDR=127.0.0.1:$(free_port) timeout 20 "$BIN" 2>&1 || true)
  raw "6. DATABASE_URL=$url -> $(echo "$out" | tail -1 | cut -c1-300)"
  STARTUP=$(( STARTUP + $(echo "$out" | grep -c S3cret-Start || true) )); STARTUP_N=$(( STARTUP_N + 1 ))
done
raw "6. start-up errors: $STARTUP_N malformed URLs, occurrences of the password: $STARTUP"

SECTION="## Hostile clients, round two: log-ins, stream opens, secrets (issue 17, cases 3-6)

\`bash bench/hostile_login.sh\` (run by \`bench/hostile.sh\` after its own cases; release build,
loopback, settings default), $(date -u +%Y-%m-%d): $(machine); raw output \`$RAW\` (commit
$(git rev-parse --short HEAD), load average $LOAD_START at the start and $(cut -d' ' -f1-3 /proc/loadavg)
at the end). Absolute figures move from run to run; read the ratios of peers measured in the
same run.

| case | measured | target |
| --- | --- | --- |
| 3. another account's GET /notes, one client, no log-ins | p50 $(field "$QUIET" p50_ms) ms, p99 $(field "$QUIET" p99_ms) ms ($(field "$QUIET" requests) requests) | |
| 3. the same during $LOOPERS clients looping log-ins for ${LOOP_SECS} s | p50 $(field "$LOUD" p50_ms) ms, p99 $(field "$LOUD" p99_ms) ms ($(field "$LOUD" requests) requests, statuses $(field "$LOUD" statuses)); log-ins: $(field "$(cat "$WORK/loop.json")" per_second)/s, statuses $(field "$(cat "$WORK/loop.json")" statuses); the looping account's sessions after: $SESSIONS | p50 ≤ 20 ms |
| 4. 100 wrong guesses from 127.0.0.1, then the owner from 127.0.0.2 | guesses: $(field "$SEQ" statuses); owner: $(field "$OWNER" status) in $(field "$OWNER" ms) ms; the right password from 127.0.0.1: $(field "$GUESSER" status) | owner logs in at once |
| 4. 200 concurrent wrong guesses on one account | $(field "$CONC" statuses); **$CHECKED passwords checked** | ≤ 5 (the limit) |
| 5. stream open (time to response head), empty account among $EVENTS other events, median of $ROUNDS rounds × 20 | **$NEW_MED ms**; old OR'ed policies $OLD_MED ms (×$RATIO) | ≤ 5 ms |
| 5. the stream's start query, EXPLAIN ANALYZE as \`pgbridge_rls\` | **$NEW_EXM ms** (index-only scan on \`(owner_id, id)\`); old policies $OLD_EXM ms (×$EX_RATIO, the primary key walked) | |
| 6. RUST_LOG=trace, sign-up … log-out ($LINES lines, $DRIVER from tokio_postgres) | $SECRETS | 0 each |
| 6. start-up errors, $STARTUP_N malformed DATABASE_URLs | $STARTUP occurrences of the password | 0 |"
write_section hostile-login "$SECTION"
echo "== written to bench/RESULTS.md and $RAW"
