#!/usr/bin/env bash
# Fuzzes the live service against its own OpenAPI document with schemathesis, all checks on,
# bounded in time: a private PostgreSQL on loopback (bench/lib.sh), the pgbridge binary on a
# free port, schemathesis against http://127.0.0.1:PORT/openapi.json, then everything stops.
#
#   bash .ci/schemathesis.sh            # builds the debug binary if needed
#   PGBRIDGE_BIN=target/release/pgbridge bash .ci/schemathesis.sh
#
# Two runs: every operation but the slow seed routes with many examples, then the seed
# routes (they sleep up to 10 and 30 s on purpose) with a few. Every resource's feed
# (`/notes/events`, `/…/events`) is left out: a stream that never ends has no response to
# check (tests/api/events.rs and the resources' own tests cover them).
# Requests authenticate as an account the script signs up (see .ci/schemathesis_hooks.py).
# SCHEMATHESIS_ARGS adds options to both runs (e.g. "--generation-allow-x00 false").
# Needs: schemathesis and redbot (pip install schemathesis==4.32.5 redbot==2.7.1, as .ci/run does), PostgreSQL server
# binaries. Exit status: schemathesis's (0 = zero failures).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

EXAMPLES=${SCHEMATHESIS_EXAMPLES:-40}
SLOW_EXAMPLES=${SCHEMATHESIS_SLOW_EXAMPLES:-4}
SEED=${SCHEMATHESIS_SEED:-14}

command -v schemathesis >/dev/null || { echo "schemathesis not installed (pip install schemathesis)" >&2; exit 1; }
BIN=${PGBRIDGE_BIN:-target/debug/pgbridge}
if [ -z "${PGBRIDGE_BIN:-}" ]; then cargo build --quiet --bin pgbridge; fi

start_postgres
PORT=$(free_port)
# Every request comes from 127.0.0.1, so the per-address login limit would soon turn every
# login into 429, the hooks' own with them: raise it (the per-account limit stays).
DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG="${RUST_LOG:-warn}" \
  LOGIN_MAX_FAILURES_PER_ADDRESS=1000000 VALIDATE_APPS=true "$BIN" >"$WORK/pgbridge.log" 2>&1 &
SERVER_PID=$!
BENCH_PIDS+=("$SERVER_PID")
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/pgbridge.log" >&2; exit 1; }
echo "== pgbridge on 127.0.0.1:$PORT; schemathesis $(schemathesis --version | awk '{print $NF}')"

# The run's account: sign up, log in; the hooks send its token on every request. A second
# account is for DELETE /sessions/current: the hooks log it in afresh for each one, so
# logging out does not revoke the first token.
export PGBRIDGE_URL="http://127.0.0.1:$PORT" PGBRIDGE_USER=schemathesis PGBRIDGE_LOGOUT_USER=schemathesis-logout
PGBRIDGE_PASSWORD="schemathesis $(date +%s%N)"
export PGBRIDGE_PASSWORD
for user in "$PGBRIDGE_LOGOUT_USER" "$PGBRIDGE_USER"; do
  credentials=$(printf '{"username":"%s","password":"%s"}' "$user" "$PGBRIDGE_PASSWORD")
  curl -fsS -H 'Content-Type: application/json' -d "$credentials" "$PGBRIDGE_URL/accounts" >/dev/null
done
PGBRIDGE_TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "$credentials" "$PGBRIDGE_URL/sessions" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
export PGBRIDGE_TOKEN
curl -fsS -H "Authorization: Bearer $PGBRIDGE_TOKEN" "$PGBRIDGE_URL/accounts/me" >/dev/null

run() {
  SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=".ci${PYTHONPATH:+:$PYTHONPATH}" \
    schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all --mode all --seed "$SEED" --generation-deterministic \
    --request-timeout 40 ${SCHEMATHESIS_ARGS:-} "$@"
}

status=0
echo "== every operation but the seed routes and the event stream ($EXAMPLES examples each)"
run --max-examples "$EXAMPLES" --max-time "${SCHEMATHESIS_MAX_TIME:-150}" \
  --exclude-path-regex '^/seed/|/events$' || status=$?
echo "== the seed routes ($SLOW_EXAMPLES examples each)"
run --max-examples "$SLOW_EXAMPLES" --max-time "${SCHEMATHESIS_SLOW_MAX_TIME:-60}" \
  --phases examples,coverage,fuzzing --include-path-regex '^/seed/' || status=$?
# REDbot (HTTP caching and validators) on the routes a cache could get wrong: no caching
# warning allowed. A note of the token's owner gives /notes/{id} something to show.
echo "== REDbot: caching of /notes, /notes/{id}, /healthz, /readyz"
note_id=$(curl -fsS -H "Authorization: Bearer $PGBRIDGE_TOKEN" -H 'Content-Type: application/json' \
  -d '{"title":"redbot"}' "$PGBRIDGE_URL/notes" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for path in /notes "/notes/$note_id" /healthz /readyz; do
  if python3 .ci/redbot_check.py "$PGBRIDGE_URL$path" -H "Authorization: Bearer $PGBRIDGE_TOKEN" \
    > "$WORK/redbot.txt" 2>&1; then
    echo "   $path: no caching warning"
  else
    echo "   $path: REDbot found a caching problem:"
    cat "$WORK/redbot.txt"
    status=1
  fi
done
if [ "$status" != 0 ]; then
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" && code=0 || code=$?
    echo "== pgbridge is gone (exit status $code)"
  fi
  echo "== service log: panics, then the last 50 lines"
  grep -n -A5 "panicked" "$WORK/pgbridge.log" | head -40 || true
  tail -50 "$WORK/pgbridge.log"
fi
exit "$status"
