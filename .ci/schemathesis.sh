#!/usr/bin/env bash
# Fuzzes the live service against its own OpenAPI document with schemathesis, all checks on,
# bounded in time: a private PostgreSQL on loopback (bench/lib.sh), the pgbridge binary on a
# free port, schemathesis against http://127.0.0.1:PORT/openapi.json, then everything stops.
#
#   bash .ci/schemathesis.sh            # builds the debug binary if needed
#   PGBRIDGE_BIN=target/release/pgbridge bash .ci/schemathesis.sh
#
# Two runs: every operation but the slow seed routes with many examples, then the seed
# routes (they sleep up to 10 and 30 s on purpose) with a few. `/notes/events` is left out:
# a stream that never ends has no response to check (tests/events.rs covers it).
# SCHEMATHESIS_ARGS adds options to both runs (e.g. "--generation-allow-x00 false").
# Needs: schemathesis (pip install schemathesis==4.32.5, as .ci/run does), PostgreSQL server
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
DATABASE_URL="$PG_URL" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG="${RUST_LOG:-warn}" \
  VALIDATE_APPS=true "$BIN" >"$WORK/pgbridge.log" 2>&1 &
BENCH_PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/pgbridge.log" >&2; exit 1; }
echo "== pgbridge on 127.0.0.1:$PORT; schemathesis $(schemathesis --version | awk '{print $NF}')"

run() {
  SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=".ci${PYTHONPATH:+:$PYTHONPATH}" \
    schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all --mode all --seed "$SEED" --generation-deterministic \
    --request-timeout 40 ${SCHEMATHESIS_ARGS:-} "$@"
}

status=0
echo "== every operation but the seed routes and the event stream ($EXAMPLES examples each)"
run --max-examples "$EXAMPLES" --max-time "${SCHEMATHESIS_MAX_TIME:-150}" \
  --exclude-path /notes/events --exclude-path-regex '^/seed/' || status=$?
echo "== the seed routes ($SLOW_EXAMPLES examples each)"
run --max-examples "$SLOW_EXAMPLES" --max-time "${SCHEMATHESIS_SLOW_MAX_TIME:-60}" \
  --phases examples,coverage,fuzzing --include-path-regex '^/seed/' || status=$?
if [ "$status" != 0 ]; then
  echo "== service log (last 50 lines)"; tail -50 "$WORK/pgbridge.log"
fi
exit "$status"
